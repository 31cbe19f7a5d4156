// Every failure gets words a person can act on, and a retry where one helps: the banner, and the
// close codes of schemas/FRAMING.md in words.
import { $ } from "./dom.js";
import { CLAIMS, TOKEN } from "./params.js";
import { S } from "./stats.js";

export const CLOSE_TEXT = {  // FRAMING.md close codes, in words a person can act on
  4000: "The ingress is shutting down.",
  4001: "No token was given. Open the page from the link `wtpulsar up` prints, or add ?token=… to the URL.",
  4002: "The token is not valid (bad signature or claims). Run `wtpulsar token --room … --user … --role … --url` " +
        "in the folder where the pipeline runs (it signs with that pipeline's secret) and open the link it prints.",
  4003: "Your token has expired. Get a new one with `wtpulsar token --room … --user … --role …`.",
  4004: "This token is a viewer token: it may watch but not publish or chat.",
  4005: "A room, user, stream or rendition name was refused by the server.",
  4006: "The server refused the request parameters (mode or kinds).",
  4008: "Too many sessions from this address.",
  4009: "The server is busy (too many sessions). Retrying…",
  4010: "Protocol error: the server could not parse what this page sent.",
  4011: "A limit was exceeded (frame size, bitrate or backlog). Lower the bitrate.",
  4012: "The server could not store the stream (broker error). Retrying…",
  4013: "A stream id was reused for another kind.",
};
export const RETRYABLE = new Set([4000, 4009, 4012, 0]);
// Worth reconnecting to: the table's retryable codes plus WebSocket closes of a vanished server.
export const RECONNECT = (code) => RETRYABLE.has(code) || code === 1001 || code === 1006 || code === 1011;

export function closeMessage(code, reason) {
  return (CLOSE_TEXT[code] || `The connection closed${code ? " (code " + code + ")" : ""}.`) + (reason ? ` Server said: ${reason}` : "");
}

let retryAction = null, retryTimer = null;
export function showError(text, retry, autoRetryMs) {
  S.errors.push(text); if (S.errors.length > 100) S.errors.shift();
  $("banner").className = ""; $("banner").style.display = "block"; $("bannerText").textContent = text;
  retryAction = retry || null; $("bannerRetry").style.display = retry ? "" : "none";
  clearTimeout(retryTimer);
  if (retry && autoRetryMs) retryTimer = setTimeout(() => { hideBanner(); retry(); }, autoRetryMs);
}
export function showInfo(text) {
  S.notes.push(text); if (S.notes.length > 100) S.notes.shift();
  $("banner").className = "info"; $("banner").style.display = "block"; $("bannerText").textContent = text;
  $("bannerRetry").style.display = "none";
}
export function hideBanner() { $("banner").style.display = "none"; clearTimeout(retryTimer); }
$("bannerRetry").onclick = () => { const a = retryAction; hideBanner(); if (a) a(); };

// The token's own claims say whether a session can work at all; the banner says why not.
export function checkToken(publishing) {
  if (!TOKEN) { showError(CLOSE_TEXT[4001]); return false; }
  if (!CLAIMS) { showError(CLOSE_TEXT[4002]); return false; }
  if (CLAIMS.exp && CLAIMS.exp * 1000 < Date.now()) { showError(CLOSE_TEXT[4003]); return false; }
  if (publishing && CLAIMS.role !== "publisher") { showError(CLOSE_TEXT[4004]); return false; }
  return true;
}
