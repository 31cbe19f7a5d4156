// Publishing: capture camera, microphone or screen, encode with WebCodecs, send each frame, keep it in
// the resend buffer until the ingress acknowledges it, and reconnect when the session drops.
import { checkToken, closeMessage, hideBanner, RECONNECT, RETRYABLE, showError, showInfo } from "./banner.js";
import { onChatAck, onChatVerdict } from "./chat.js";
import { captureAt, captureOn, clockCheck, clockSynced, now, whenStamped } from "./clock.js";
import { $, setPill } from "./dom.js";
import { CODEC, frameRecord, KIND, REC } from "./framing.js";
import { Outbox, RECONNECT_MAX_MS, resendAll, sleep } from "./resend.js";
import { retryWebTransport, Session } from "./session.js";
import { S } from "./stats.js";

const OUTBOX_MAX_FRAMES = 900, OUTBOX_MAX_BYTES = 48 * 1024 * 1024;
export const outbox = new Outbox(OUTBOX_MAX_FRAMES, OUTBOX_MAX_BYTES);
export const pub = { session: null, stream: null, venc: null, aenc: null, running: false, chatSession: null, reconnecting: false,
                     t0: null };  // t0: page time of the first captured frame, the origin of video and audio pts
export const tracks = {};  // stream id -> { seq, chain, pending }
function streamId(prefix) { return prefix + "-" + Math.random().toString(36).slice(2, 8); }

async function getMedia(source, w, h, fps) {
  try {
    if (source === "screen") return await navigator.mediaDevices.getDisplayMedia(
      { video: { frameRate: fps, width: { max: w }, height: { max: h } }, audio: false });
    return await navigator.mediaDevices.getUserMedia({ video: { width: w, height: h, frameRate: fps }, audio: source === "camera" });
  } catch (e) {
    if (e.name === "NotAllowedError") throw new Error(source === "screen" ? "Screen capture was not allowed." :
      "Camera/microphone permission was denied. Allow it in the address bar (camera icon) and retry.");
    if (e.name === "NotFoundError" || e.name === "OverconstrainedError") throw new Error("No camera or microphone matching the settings was found.");
    if (e.name === "NotReadableError") throw new Error("The camera is in use by another application.");
    throw new Error("Could not start capture: " + e.message);
  }
}

function sendFrame(sid, kind, codec, key, ptsUs, captureTs, w, h, payload, newGroup) {
  const t = tracks[sid] || (tracks[sid] = { seq: 0, chain: Promise.resolve(), pending: 0 });
  const seq = t.seq++;
  const rec = frameRecord(kind, codec, key, seq, ptsUs, captureTs, w, h, sid, payload);
  const channel = kind === KIND.audio ? "audio:" + sid : "group:" + sid;
  const before = S.pub.overflows, entry = { sid, seq, kind, key, rec, channel };
  outbox.add(entry);  // kept until acked; media only is ever dropped
  if (pub.session && !pub.session.closed) entry.sentOn = pub.session;  // else it first goes out on reconnect
  if (S.pub.overflows !== before) showInfo(`Resend buffer full while reconnecting: dropped ${S.pub.overflowDropped} old ` +
    "media frames so far (up to the next keyframe).");
  S.pub.bytes += rec.byteLength;
  transmit(t, channel, rec, newGroup);
}
function transmit(t, channel, rec, newGroup) {
  const s = pub.session;
  if (!s || s.closed) return;  // kept in the outbox: resent once the session is back
  t.pending++;
  t.chain = t.chain.then(() => s.send(channel, rec, newGroup)).catch((e) => console.warn("send", e))
    .finally(() => { t.pending--; });
}
async function reconnectPublisher(why) {
  if (pub.reconnecting) return;
  pub.reconnecting = S.pub.reconnecting = true;
  setPill("pubState", "publisher: reconnecting…", "warn");
  showInfo("Publishing connection lost: reconnecting… " + why);
  let delay = 250;
  while (pub.running) {
    await sleep(delay);
    if (!pub.running) break;
    if (S.transport === "webtransport") retryWebTransport();  // try the better transport again
    try {
      const s = await new Session("mode=publish", onPublisherRecord, onPublisherClosed).open();
      if (!pub.running) { s.close(); break; }
      pub.session = s; S.pub.reconnects++; pub.keyNow = true;
      for (const t of Object.values(tracks)) { t.chain = Promise.resolve(); t.pending = 0; }
      const [again, held] = resendAll(s, outbox, (e) => tracks[e.sid] || (tracks[e.sid] = { seq: e.seq + 1, chain: Promise.resolve(), pending: 0 }));
      S.pub.resent += again; S.pub.heldSent += held;
      setPill("pubState", "publisher: live", "ok");
      showInfo(`Reconnected; sent ${again + held} unacknowledged frames (${again} of them a second time, ` +
               `${held} captured while disconnected).`);
      break;
    } catch (e) { delay = Math.min(RECONNECT_MAX_MS, delay * 2); }
  }
  pub.reconnecting = S.pub.reconnecting = false;
}

export async function startPublishing() {
  hideBanner();
  if (!checkToken(true)) return;
  const source = $("source").value, codec = $("codec").value, [w, h] = $("resolution").value.split("x").map(Number);
  const fps = Number($("fps").value), bitrate = Number($("bitrate").value), keyMs = Number($("keyint").value);
  if (typeof VideoEncoder === "undefined" || typeof MediaStreamTrackProcessor === "undefined") {
    showError("This browser lacks WebCodecs (VideoEncoder / MediaStreamTrackProcessor); publishing needs Chrome or Edge 94+.");
    return;
  }
  $("startPub").disabled = true;
  try {
    pub.stream = await getMedia(source, w, h, fps);
  } catch (e) { showError(e.message, startPublishing); $("startPub").disabled = false; return; }
  $("preview").srcObject = pub.stream;
  try {
    pub.session = await new Session("mode=publish", onPublisherRecord, onPublisherClosed).open();
  } catch (e) {
    stopPublishing();
    showError(e.message + (e.retry ? " Retrying in 3 s." : ""), e.retry ? startPublishing : null, e.retry ? 3000 : 0);
    return;
  }
  await clockSynced(1000);  // capture times go out on the ingress's clock from the first frame
  pub.running = true; $("stopPub").disabled = false; setPill("pubState", "publisher: live", "ok");
  if (!pub.running || !pub.stream) return;
  const vtrack = pub.stream.getVideoTracks()[0];
  const kind = source === "screen" ? KIND.screen : KIND.video;
  const vsid = streamId(source === "screen" ? "screen" : "cam");
  runVideo(vtrack, kind, vsid, codec, fps, bitrate, keyMs);
  const atrack = pub.stream.getAudioTracks()[0];
  if (atrack && typeof AudioEncoder !== "undefined") runAudio(atrack, streamId("mic"));
}

function videoCodecString(name, w, h) {
  if (name !== "h264") return "vp8";
  // Constrained Baseline (42E0) at the lowest level whose frame-size limit fits (H.264 Table A-1).
  const mbs = Math.ceil(w / 16) * Math.ceil(h / 16);
  const level = [[1620, "1E"], [3600, "1F"], [5120, "20"], [8192, "28"], [8704, "2A"], [22080, "32"], [36864, "33"]]
    .find(([max]) => mbs <= max);
  return "avc1.42E0" + (level ? level[1] : "34");
}
async function runVideo(track, kind, sid, codecName, fps, bitrate, keyMs) {
  const settings = track.getSettings();
  let width = settings.width || 640, height = settings.height || 480;
  const cfg = { codec: videoCodecString(codecName, width, height), width, height, bitrate, framerate: fps, latencyMode: "realtime",
                bitrateMode: "variable", hardwareAcceleration: "no-preference" };
  if (codecName === "h264") cfg.avc = { format: "annexb" };  // SPS/PPS in band on keyframes (docs/media-and-webtransport.md §4.2)
  const support = await VideoEncoder.isConfigSupported(cfg).catch(() => ({ supported: false }));
  if (!support.supported) { showError(`This browser cannot encode ${codecName} at ${width}×${height}. Pick another codec or resolution.`); stopPublishing(); return; }
  const captureOf = new Map();  // frame timestamp (µs) -> [pts µs, capture_ts ms]
  let needKey = true, lastKey = -1e12, t0 = null;
  const enc = pub.venc = new VideoEncoder({
    output: (chunk) => {
      const meta = captureOf.get(chunk.timestamp); captureOf.delete(chunk.timestamp);
      if (!meta || !pub.running) return;
      const key = chunk.type === "key";
      const t = tracks[sid];
      if (!key && t && (t.pending > fps || (pub.session && pub.session.backlogged()))) { S.pub.dropped++; needKey = true; return; }  // backlog > 1 s
      if (!key && needKey && t && t.seq > 0) { S.pub.dropped++; return; }  // no deltas after a gap
      if (key) { needKey = false; S.pub.keyframes++; }
      const data = new Uint8Array(chunk.byteLength); chunk.copyTo(data);
      const [w, h] = [width, height];
      whenStamped(() => { if (pub.running) sendFrame(sid, kind, codecName === "h264" ? CODEC.h264 : CODEC.vp8, key,
                                                     meta[0], captureOn(meta[2], meta[1]), w, h, data, key); });
      S.pub.frames++;
    },
    error: (e) => showError("The video encoder failed: " + e.message, restartPublishing),
  });
  enc.configure(cfg);
  const reader = new MediaStreamTrackProcessor({ track }).readable.getReader();
  for (;;) {
    const { value: frame, done } = await reader.read().catch(() => ({ done: true }));
    if (done || !pub.running) { if (frame) frame.close(); break; }
    clockCheck();
    const pageTs = now(), captureTs = captureAt(pageTs);  // pts on the page's clock, capture_ts on the ingress's
    if (t0 === null) t0 = pub.t0 = pub.t0 || pageTs;  // one clock origin for video and audio pts
    if (frame.displayWidth !== width || frame.displayHeight !== height) {  // screen windows resize
      width = frame.displayWidth; height = frame.displayHeight;
      enc.configure(Object.assign(cfg, { width, height, codec: videoCodecString(codecName, width, height) })); needKey = true;
    }
    if (enc.encodeQueueSize > 2) { S.pub.dropped++; frame.close(); continue; }  // encoder behind: drop input
    const ptsUs = (pageTs - t0) * 1000;
    captureOf.set(frame.timestamp, [ptsUs, captureTs, pageTs]);
    // After a reconnect the stream may have been ended downstream (the old session's end of stream,
    // ENVELOPE.md): a keyframe lets the functions and viewers pick it up again at once.
    const forceKey = needKey || pub.keyNow || pageTs - lastKey >= keyMs;
    pub.keyNow = false;
    if (forceKey) lastKey = pageTs;
    enc.encode(frame, { keyFrame: forceKey });
    frame.close();  // docs/media-and-webtransport.md §4.2: close every VideoFrame or the capture stalls
  }
  try { enc.close(); } catch (e) { }
}

async function runAudio(track, sid) {
  const cfg = { codec: "opus", sampleRate: 48000, numberOfChannels: 1, bitrate: 32000 };
  const ok = await AudioEncoder.isConfigSupported(cfg).catch(() => ({ supported: false }));
  if (!ok.supported) { showInfo("Opus encoding is not available; publishing video only."); return; }
  let base = null;
  const enc = pub.aenc = new AudioEncoder({
    output: (chunk) => {
      if (!pub.running || base === null) return;
      const data = new Uint8Array(chunk.byteLength); chunk.copyTo(data);
      const ptsUs = chunk.timestamp + base;  // on the video track's clock so capture_ts lines up
      const pageTs = pub.t0 + ptsUs / 1000, cap = captureAt(pageTs);
      whenStamped(() => { if (pub.running) sendFrame(sid, KIND.audio, CODEC.opus, true, ptsUs, captureOn(pageTs, cap), 0, 0, data, false); });
      S.pub.audio++;
    },
    error: (e) => showInfo("The audio encoder failed (" + e.message + "); video continues."),
  });
  enc.configure(cfg);
  const reader = new MediaStreamTrackProcessor({ track }).readable.getReader();
  for (;;) {
    const { value: data, done } = await reader.read().catch(() => ({ done: true }));
    if (done || !pub.running) { if (data) data.close(); break; }
    if (base === null) { pub.t0 = pub.t0 || now(); base = (now() - pub.t0) * 1000 - data.timestamp; }
    if (data.sampleRate !== 48000 || data.numberOfChannels !== 1) {
      // The encoder was configured for the first buffer's format; reconfigure when the device differs.
      enc.configure(Object.assign(cfg, { sampleRate: data.sampleRate, numberOfChannels: data.numberOfChannels }));
    }
    enc.encode(data); data.close();
  }
  try { enc.close(); } catch (e) { }
}

export function onPublisherRecord(r) {
  if (r.type === REC.ACK) {
    if (r.stream === "chat") return onChatAck(r);
    const again = outbox.ack(r);
    S.pub.unacked = outbox.kept.size;
    if (r.status === 0) { if (!r.stream.startsWith("mic")) S.pub.acked = Math.max(S.pub.acked, r.seq); }  // video acks
    else {
      showInfo(`Frame ${r.seq} of ${r.stream} was not stored: ${r.reason}. Sending it again.`);
      // FRAMING.md "Ack": a resend in the same session is confirmed by its own seq.
      if (again && tracks[again.sid]) setTimeout(() => { if (outbox.kept.get(again.sid + ":" + again.seq) === again) {
        again.rejected = false; transmit(tracks[again.sid], again.channel, again.rec, again.key); } }, 500);
    }
  } else if (r.type === REC.VERDICT) {
    onChatVerdict(r);
  } else if (r.type === REC.NOTICE) {
    showInfo(`Server notice (${r.code}): ${r.reason}`);
  }
}
function onPublisherClosed(code, reason) {
  if (pub.running && RECONNECT(code)) {  // capture goes on; frames wait in the outbox
    pub.session = null; reconnectPublisher(closeMessage(code, reason)); return;
  }
  const wasRunning = pub.running; stopPublishing();
  if (!wasRunning) return;
  const retry = RETRYABLE.has(code);
  showError("Publishing stopped. " + closeMessage(code, reason) + (retry ? " Reconnecting in 3 s." : ""),
            startPublishing, retry ? 3000 : 0);
}
export function stopPublishing() {
  pub.running = false;
  if (pub.stream) pub.stream.getTracks().forEach((t) => t.stop());
  if (pub.session) pub.session.close();
  pub.session = null; pub.stream = null; pub.t0 = null;
  for (const k of Object.keys(tracks)) delete tracks[k];
  outbox.clear(); S.pub.unacked = 0;  // stopped on purpose: nothing left to resend
  $("startPub").disabled = false; $("stopPub").disabled = true; setPill("pubState", "publisher: idle");
}
function restartPublishing() { stopPublishing(); startPublishing(); }
$("startPub").onclick = startPublishing;
$("stopPub").onclick = stopPublishing;
