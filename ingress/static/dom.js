// Small DOM helpers shared by the panels.

export const $ = (id) => document.getElementById(id);

export function setPill(id, text, cls) { const e = $(id); e.textContent = text; e.className = "pill " + (cls || ""); }

export function esc(s) {  // text into HTML: a user's words are never markup
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
