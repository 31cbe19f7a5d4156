// The page's entry module: loads every part (each binds its own controls) and starts what the token
// allows. Wire format: schemas/FRAMING.md (version 1); topics and properties: schemas/ENVELOPE.md.
// No external URLs, no build step. Modules, one job each:
//   framing.js  records (FRAMING.md)            fmp4.js     reading the chunk function's fMP4
//   params.js   query parameters, token claims  banner.js   failures in words, close codes, retry
//   clock.js    offset to the ingress's clock   session.js  WebTransport, else WebSocket
//   resend.js   resend buffer                   publisher.js capture, encode, send, reconnect
//   viewer.js   playback, skip policy, latency  chat.js     send, verdicts, the room's chat
//   charts.js   metrics panel and chart         stats.js    counters, also window.wtpulsar
import { CLOSE_TEXT, showError } from "./banner.js";
import { startChatView } from "./chat.js";
import "./charts.js";
import { $, setPill } from "./dom.js";
import { CLAIMS, params, TOKEN } from "./params.js";
import "./publisher.js";
import { fetchCertInfo } from "./session.js";
import { startViewing } from "./viewer.js";

function init() {
  if (CLAIMS) setPill("who", `${CLAIMS.sub} · ${CLAIMS.role} · room ${CLAIMS.room}`, "ok");
  $("room").value = params.get("room") || (CLAIMS && CLAIMS.room) || "";
  if (params.get("rendition")) $("rendition").value = params.get("rendition");
  if (params.get("playback")) $("playback").value = params.get("playback");
  if (typeof VideoDecoder === "undefined") $("playback").value = "mse";
  if (!window.isSecureContext) { showError("This page is not a secure context, so the browser hides the camera, WebCodecs and " +
      "WebTransport. Open it from http://localhost or http://127.0.0.1, or over https."); return; }
  if (!TOKEN) { showError(CLOSE_TEXT[4001]); return; }
  if (!CLAIMS) { showError(CLOSE_TEXT[4002]); return; }
  if (CLAIMS.exp && CLAIMS.exp * 1000 < Date.now()) { showError(CLOSE_TEXT[4003]); return; }
  if (CLAIMS.role !== "publisher") { $("startPub").disabled = true; $("chatSend").disabled = true;
    $("chatText").placeholder = "viewer token: chat is read-only";
    $("pubOverlay").textContent = "viewer token: publishing needs a publisher token (wtpulsar token --role publisher)"; }
  fetchCertInfo().then(() => {
    startChatView();
    if (params.get("mode") === "view" || CLAIMS.role === "viewer") startViewing();
  }, (e) => showError(e.message + " Retrying in 3 s.", () => location.reload(), 3000));
}
init();
