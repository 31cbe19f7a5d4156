// Chat: sending (its own publish session, kept in its own resend buffer until acknowledged), what
// moderation decided about this user's messages (schemas/CHAT.md "Routing verdicts"), and the room's
// chat as delivered (its own view session, kinds=chat, so chat works whether or not video is watched).
import { checkToken, closeMessage, RECONNECT, RETRYABLE, showInfo } from "./banner.js";
import { serverNow } from "./clock.js";
import { $, esc } from "./dom.js";
import { CODEC, frameRecord, KIND, REC, td, te, VERDICT_ACTION } from "./framing.js";
import { CLAIMS, TOKEN } from "./params.js";
import { Outbox, RECONNECT_MAX_MS, resendAll, sleep } from "./resend.js";
import { Session } from "./session.js";
import { S } from "./stats.js";

export const chat = { session: null, seq: 0, sid: "chat", pending: new Map(), texts: new Map(), opening: null, reconnecting: false,
                      outbox: new Outbox(500, 8 * 1024 * 1024), track: { chain: Promise.resolve(), pending: 0 } };

function chatLine(html, cls) { if (cls === "note" && S.chatNotes.push(html) > 100) S.chatNotes.shift(); const d = document.createElement("div"); d.className = cls || "msg"; d.innerHTML = html;
  $("chatLog").appendChild(d); while ($("chatLog").childElementCount > 500) $("chatLog").firstElementChild.remove();
  $("chatLog").scrollTop = $("chatLog").scrollHeight; }

// What comes back on the chat's publish session: Acks, Verdicts and Notices (FRAMING.md).
export function onChatRecord(r) {
  if (r.type === REC.ACK) onChatAck(r);
  else if (r.type === REC.VERDICT) onChatVerdict(r);
  else if (r.type === REC.NOTICE) showInfo(`Server notice (${r.code}): ${r.reason}`);
}

async function chatSession() {
  if (chat.session && !chat.session.closed) return chat.session;
  if (!chat.opening) chat.opening = new Session("mode=publish", onChatRecord, (code, reason) => {
      chat.session = null;
      const resume = RECONNECT(code) && chat.outbox.kept.size > 0;
      chatLine(esc("Chat disconnected. " + closeMessage(code, reason) + (resume ? " Reconnecting…" : "")), "note");
      if (resume) reconnectChat(); })
    .open().then((s) => {
      chat.session = s; chat.track = { chain: Promise.resolve(), pending: 0 };
      const [n] = resendAll(s, chat.outbox, () => chat.track);  // unconfirmed messages first, in order
      if (n) { S.pub.resent += n; chatLine(esc(`Chat reconnected; sent ${n} unconfirmed message(s) again.`), "note"); }
      return s; }).finally(() => { chat.opening = null; });
  return chat.opening;
}
async function reconnectChat() {
  if (chat.reconnecting) return;
  chat.reconnecting = true; let delay = 250;
  while (chat.outbox.kept.size && !(chat.session && !chat.session.closed)) {
    await sleep(delay);
    try { await chatSession(); } catch (e) { delay = Math.min(RECONNECT_MAX_MS, delay * 2); }
  }
  chat.reconnecting = false;
}
async function sendChat(text) {
  if (!checkToken(true)) return;
  const msgId = `${CLAIMS.sub}.${Date.now()}.${chat.seq}`;
  const body = { v: 1, room: CLAIMS.room, user: CLAIMS.sub, msg_id: msgId, stream: chat.sid, text, sent_at: Date.now() };
  const seq = chat.seq++;
  const rec = frameRecord(KIND.chat, CODEC.json, false, seq, 0, serverNow(), 0, 0, chat.sid, te.encode(JSON.stringify(body)));
  const entry = { sid: chat.sid, seq, kind: KIND.chat, key: false, rec, channel: "chat" };
  if (!chat.outbox.add(entry)) {  // never dropped silently: say so and give the text back
    chatLine(esc(`Not sent: ${chat.outbox.kept.size} earlier messages still wait for the server. Try again shortly.`), "note");
    if (!$("chatText").value) $("chatText").value = text;
    return;
  }
  chat.pending.set(msgId, { text, seq, sent: Date.now() });
  chat.texts.set(msgId, text); if (chat.texts.size > 200) chat.texts.delete(chat.texts.keys().next().value);
  // The verdict (FRAMING.md "Verdict") normally settles the message within a second. Only when neither it
  // nor the message itself came back (verdict lost, chat pipeline down) say so, without guessing why.
  setTimeout(() => { if (chat.pending.delete(msgId)) chatLine(esc(`No moderation decision arrived for your message ` +
    `"${text}" within 8 s: the chat pipeline may be slow or down, so the room may not have seen it.`), "note"); }, 8000);
  let s;
  try { s = await chatSession(); } catch (e) {
    chatLine(esc("Chat is offline (" + e.message + "); your message is kept and will be sent when the connection is back."), "note");
    reconnectChat(); return;
  }
  if (entry.sentOn === s || !chat.outbox.kept.has(entry.sid + ":" + seq)) return;  // the reconnect already sent it
  entry.sentOn = s;
  const t = chat.track; t.pending++;
  t.chain = t.chain.then(() => s.send("chat", rec)).catch((e) => console.warn("chat send", e)).finally(() => { t.pending--; });
  await t.chain;
}
export function onChatVerdict(r) {  // only ever about this user's own messages: the ingress sends no one else's
  let v = {}; try { v = JSON.parse(td.decode(r.payload)); } catch (e) { /* the action byte still says what happened */ }
  const action = VERDICT_ACTION[r.action] || v.action;
  let id = v.msg_id, m = id ? chat.pending.get(id) : null;
  if (!m) for (const [k, p] of chat.pending) if (p.seq === r.seq) { id = k; m = p; break; }
  if (m) chat.pending.delete(id);
  S.verdicts.push({ msg_id: id || null, seq: r.seq, action, rules: v.rules || [], reason: v.reason || "" });
  if (S.verdicts.length > 200) S.verdicts.splice(0, 100);
  // The sender is told why whenever moderation changed something (CHAT.md "Routing verdicts"); the room
  // sees only the delivered (masked or flagged) text.
  const why = v.reason || (v.rules || []).join(", ") || "no reason given";
  const text = m ? m.text : chat.texts.get(id);
  const what = { drop: "was removed", mask: "was shown masked", flag: "was flagged for review" }[action];
  if (what) chatLine(esc(`Your message${text !== undefined ? ` "${text}"` : ""} ${what}: ${why}`), "note");
}
export function onChatAck(r) {
  const again = chat.outbox.ack(r);
  if (again && r.code === 4012) {  // the broker failed: send it again (a resend is acked by its own seq)
    setTimeout(() => { const s = chat.session; if (!s || s.closed || chat.outbox.kept.get(again.sid + ":" + again.seq) !== again) return;
      again.rejected = false; chat.track.chain = chat.track.chain.then(() => s.send("chat", again.rec)).catch(() => {}); }, 500);
    return;
  }
  if (again) chat.outbox._forget(again.sid + ":" + again.seq);  // refused for good (bad message): not resent
  if (r.status !== 0) {
    for (const [id, m] of chat.pending) if (m.seq === r.seq) { chat.pending.delete(id);
      chatLine(esc(`Your message "${m.text}" was refused: ${r.reason}`), "note"); }
  }
}
const seenChat = new Set();
export function onChatDelivery(r) {
  let m; try { m = JSON.parse(td.decode(r.payload)); } catch (e) { return; }
  if (seenChat.has(m.msg_id)) return; seenChat.add(m.msg_id);
  if (seenChat.size > 5000) seenChat.delete(seenChat.values().next().value);  // bounded: oldest first
  if (S.chat.length > 500) S.chat.splice(0, 100);
  chat.pending.delete(m.msg_id);
  const masked = m.masked || r.props.moderation === "mask", flagged = m.flagged || r.props.moderation === "flag";
  S.chat.push({ user: m.user, text: m.text, masked, flagged, msg_id: m.msg_id });
  chatLine(`<span class="who">${esc(m.user)}</span>${esc(m.text)}` + (masked ? '<span class="tag masked">masked</span>' : "") +
           (flagged ? '<span class="tag flagged">flagged for review</span>' : ""));
  // Send -> on this screen: the sender's sent_at (Date.now() when it pressed Send) to the line drawn here,
  // like the video's capture -> render; meaningful when both pages share a clock (one machine, or NTP).
  if (typeof m.sent_at === "number") { S.view.chatLatencies.push(Date.now() - m.sent_at);
    if (S.view.chatLatencies.length > 2000) S.view.chatLatencies.splice(0, 1000); }
}

let chatView = null;
export async function startChatView() {
  if (!TOKEN || !CLAIMS || (CLAIMS.exp && CLAIMS.exp * 1000 < Date.now())) return;
  try {
    chatView = await new Session("mode=view&kinds=chat", (r) => { if (r.type === REC.DELIVERY && r.kind === KIND.chat) onChatDelivery(r); },
      (code, reason) => { chatView = null;
        if (RETRYABLE.has(code)) setTimeout(startChatView, 3000);
        else chatLine(esc("Chat feed closed. " + closeMessage(code, reason)), "note"); }).open();
  } catch (e) { setTimeout(startChatView, 3000); }
}
$("chatForm").onsubmit = (ev) => { ev.preventDefault(); const t = $("chatText").value.trim(); if (!t) return;
  $("chatText").value = ""; sendChat(t); };
