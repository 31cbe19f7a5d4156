// Watching: the room's routed fragmented MP4 (ENVELOPE.md) played with WebCodecs to a canvas or with
// Media Source Extensions, its audio kept in step with the picture, and the latency of every rendered
// frame from the timestamps the pipeline carries (capture_ts, t_*). The viewer's skip policy (which
// fragments are dropped: out of order, before a keyframe, decoder behind) is in onViewerRecord and wcFeed.
import { checkToken, closeMessage, hideBanner, RETRYABLE, showError, showInfo } from "./banner.js";
import { onChatDelivery } from "./chat.js";
import { clockSync, serverNow } from "./clock.js";
import { $, setPill } from "./dom.js";
import { avcDescription, fragmentSamples } from "./fmp4.js";
import { KIND, KIND_NAME, REC } from "./framing.js";
import { CLAIMS } from "./params.js";
import { Session } from "./session.js";
import { pct, S } from "./stats.js";

export const view = { session: null, running: false, mode: null, ms: null, sb: null, queue: [], captureByTime: [],
               decoder: null, needKey: true, timescale: 90000, audio: null };

export async function startViewing() {
  hideBanner();
  if (!checkToken(false)) return;
  if (CLAIMS.room && $("room").value && $("room").value !== CLAIMS.room) {
    showError(`Your token is for room "${CLAIMS.room}". Ask for a token for room "${$("room").value}" to watch it.`); return;
  }
  const mode = view.mode = S.view.mode = $("playback").value;
  if (mode === "webcodecs" && typeof VideoDecoder === "undefined") { $("playback").value = "mse"; return startViewing(); }
  $("startView").disabled = true;
  const q = `mode=view&rendition=${encodeURIComponent($("rendition").value)}&kinds=${$("track").value},audio`;
  try {
    view.session = await new Session(q, onViewerRecord, onViewerClosed).open();
  } catch (e) {
    $("startView").disabled = false;
    showError(e.message + (e.retry ? " Retrying in 3 s." : ""), e.retry ? startViewing : null, e.retry ? 3000 : 0);
    return;
  }
  view.running = true; $("stopView").disabled = false; setViewStatus("waiting");
  $("player").style.display = mode === "mse" ? "" : "none"; $("canvas").style.display = mode === "mse" ? "none" : "";
  view.needKey = true; view.captureByTime = [];
  if (mode === "mse") startMse(); else startWebCodecs();
  const session = view.session;
  // The egress sends a live stream's init segment and keyframe at once (and nothing of a stream that is
  // over), so a second of silence means no one is publishing; playback starts whenever a stream does.
  setTimeout(() => { if (view.session === session && view.running && S.view.status === "waiting") setViewStatus("nobody"); }, 1000);
  setTimeout(() => {
    if (view.session === session && view.running && S.view.status === "nobody")
      showInfo(`No one is publishing ${$("track").value} in room "${CLAIMS.room}" at ${$("rendition").value}. ` +
               "Playback starts as soon as someone does. (Renditions above the publisher's resolution are not " +
               "produced; try 360p.)");
  }, 6000);
}
function setViewStatus(status) {  // the viewer pill and overlay say what the viewer is looking at
  S.view.status = status;
  const room = (CLAIMS && CLAIMS.room) || "";
  const text = { waiting: ["viewer: joining room " + room + "…", "warn"], nobody: [`viewer: no one is publishing in room ${room}`, "warn"],
                 starting: ["viewer: stream starting…", "warn"], playing: ["viewer: playing", "ok"],
                 ended: [`viewer: the stream ended; no one is publishing in room ${room}`, "warn"] }[status];
  if (text) setPill("viewState", text[0], text[1]);
}
function onStreamEnded(r) {
  // ENVELOPE.md "End of stream": the publisher left (or vanished). Tell the viewer, drop the player state
  // of that stream, and wait for the next one, which starts with its own init segment.
  const p = r.props, why = { left: "the publisher left", timeout: "the publisher's connection timed out",
                             closed: "the server closed the publisher's session" }[p.reason] || "";
  S.view.ends.push({ stream: p.stream, reason: p.reason || "", kind: KIND_NAME[r.kind] });
  if (r.kind === KIND.audio) {
    if (wa.stream === p.stream) { if (wa.decoder && wa.decoder.state !== "closed") try { wa.decoder.close(); } catch (e) { }
      wa.decoder = null; wa.stream = null; wa.capture.clear(); }
    if (view.audio && view.audio.stream === p.stream) { $("audioPlayer").removeAttribute("src"); view.audio = null; }
    return;
  }
  if (p.stream !== view.segStream && p.stream !== view.mseStream) return;  // not the stream on screen
  view.segStream = null; view.lastSeg = -1; view.lastInit = null; view.decoderConfigured = null; view.needKey = true;
  view.captureByTime = []; view.lastCap = null; if (view.pendingCapture) view.pendingCapture.clear();
  if (view.mode === "mse") { view.sb = null; view.queue = []; view.mseStream = null; view.pendingInit = null; startMse(); }
  setViewStatus("ended");
  showInfo(`The stream in room "${CLAIMS.room}" ended${why ? " (" + why + ")" : ""}. Playback starts again when someone publishes.`);
}
export function stopViewing() {
  view.running = false;
  if (view.session) view.session.close(); view.session = null;
  if (view.decoder && view.decoder.state !== "closed") try { view.decoder.close(); } catch (e) { }
  if (wa.decoder && wa.decoder.state !== "closed") try { wa.decoder.close(); } catch (e) { }
  wa.decoder = null; wa.stream = null; wa.next = 0;
  view.segStream = null; view.lastSeg = -1;
  view.lastInit = null; view.decoderConfigured = null;
  view.decoder = null; view.sb = null; view.queue = []; view.lastCap = null; view.audioClock = null; view.mseStream = null;
  if (view.ms) { $("player").removeAttribute("src"); $("player").load(); view.ms = null; }
  if (view.audio) { $("audioPlayer").removeAttribute("src"); view.audio = null; }
  $("startView").disabled = false; $("stopView").disabled = true; setPill("viewState", "viewer: idle"); S.view.status = "idle";
}
function onViewerClosed(code, reason) {
  const was = view.running; stopViewing();
  if (!was) return;
  const retry = RETRYABLE.has(code);
  showError("Watching stopped. " + closeMessage(code, reason) + (retry ? " Reconnecting in 3 s." : ""), startViewing, retry ? 3000 : 0);
}
$("startView").onclick = startViewing;
$("stopView").onclick = stopViewing;

function onViewerRecord(r) {
  if (r.type === REC.NOTICE) { showInfo(`Server notice (${r.code}): ${r.reason}`); return; }
  if (r.type !== REC.DELIVERY) return;
  if (r.kind === KIND.chat) return onChatDelivery(r);
  if (r.props.segment_type === "end") return onStreamEnded(r);
  if (r.kind === KIND.audio) return typeof AudioDecoder !== "undefined" ? onAudioWebAudio(r) : onAudioSegment(r);
  if (r.kind !== KIND.video && r.kind !== KIND.screen) return;
  const p = r.props;
  S.view.segments++;
  if (S.view.status !== "playing" && p.segment_type === "init") setViewStatus("starting");
  // Groups travel on separate WebTransport streams; a straggler from an older group must not reach
  // the decoder after a newer keyframe (FRAMING.md "Where records travel").
  if (p.stream !== view.segStream) { view.segStream = p.stream; view.lastSeg = -1; }
  if (p.segment_type === "media") {
    const seq = Number(p.segment_seq);
    if (seq <= view.lastSeg) { viewDrop("out of order"); return; }
    view.lastSeg = seq;
  }
  if (p.segment_type === "init") { S.view.initSeen = true; view.initProps = p; }
  else if (p.capture_ts) {
    const ts = Number(p.timescale || 90000);
    // Media time of this fragment -> capture time, so a rendered frame can tell its latency.
    view.captureByTime.push([Number(p.decode_time || 0) / ts, Number(p.capture_ts), p, Number(p.duration || 0) / ts]);
    if (view.captureByTime.length > 600) view.captureByTime.splice(0, 300);
  }
  if (view.mode === "mse") mseAppend(r); else wcFeed(r);
}
function viewDrop(why) { S.view.dropped++; S.view.dropReasons[why] = (S.view.dropReasons[why] || 0) + 1; }
function captureFor(mediaTime) {
  // The fragment holding this media time; frames after its first are captured (at the camera's pace)
  // that much later than the fragment's capture_ts. Within 20 ms of a start counts as that start.
  for (let i = view.captureByTime.length - 1; i >= 0; i--) {
    const [start, cap, p, dur] = view.captureByTime[i];
    if (start <= mediaTime + 0.02) {
      const into = Math.max(0, mediaTime - start);
      return into <= Math.max(dur, 0.05) ? [start, cap + into * 1000, p] : null;
    }
  }
  return null;
}
function frameRendered(entry) {
  S.view.frames++;
  if (!entry) return;
  const t = serverNow(), cap = entry[1], p = entry[2];  // both on the ingress's clock
  // No figure while this page's offset to the server is not known yet (or is being measured again after a
  // jump here): it would be off by however far this clock is.
  if (clockSync.synced) {
    const lat = t - cap; S.view.latencies.push(lat); if (S.view.latencies.length > 2000) S.view.latencies.splice(0, 1000);
    const num = (k) => (p[k] ? Number(p[k]) : null);
    const ti = num("t_ingress"), tt = num("t_transcode"), tc = num("t_chunk"), tr = num("t_route");
    // hop times are per fragment (its properties describe its first frame). A hop is never shown below 0:
    // what remains of the clock estimate's error is at most half a round trip.
    const hop = (a, b) => (a && b ? Math.max(0, b - a) : null);
    S.view.hops = { "capture → ingress": hop(Number(p.capture_ts), ti), "ingress → transcode": hop(ti, tt),
      "transcode → chunk": hop(tt, tc), "chunk → route": hop(tc, tr), "route → render": hop(tr, t) };
    S.view.hopLog.push([lat, ...Object.values(S.view.hops)]); if (S.view.hopLog.length > 1200) S.view.hopLog.splice(0, 600);
  }
  view.lastCap = [cap, t];
  if (view.audioClock && !$("audioPlayer").paused) S.view.avSkewMs = cap - view.audioClock();  // MSE audio path
  if (S.view.status !== "playing") {
    setViewStatus("playing");
    if ($("banner").className === "info" && /^(No one is publishing|The stream in room)/.test($("bannerText").textContent)) hideBanner();
  }
}

// --- WebCodecs playback: decode each fragment's samples and draw on arrival (docs/media-and-webtransport.md §4.3)
function startWebCodecs() {
  const canvas = $("canvas"), ctx = canvas.getContext("2d");
  view.decoder = new VideoDecoder({
    output: (frame) => {
      if (canvas.width !== frame.displayWidth) { canvas.width = frame.displayWidth; canvas.height = frame.displayHeight; }
      ctx.drawImage(frame, 0, 0);
      const entry = view.pendingCapture.get(frame.timestamp); view.pendingCapture.delete(frame.timestamp);
      frameRendered(entry); frame.close();
    },
    error: (e) => { console.warn("decoder", e); view.needKey = true; view.decoderConfigured = null; },
  });
  view.pendingCapture = new Map(); view.decoderConfigured = null;
}
function wcFeed(r) {
  const p = r.props;
  if (p.segment_type === "init") {
    const desc = avcDescription(r.payload);
    const cfg = { codec: p.codec_string, optimizeForLatency: true };
    if (desc) cfg.description = desc;
    const sig = p.codec_string + ":" + (desc ? Array.from(desc).join(",") : "");
    if (view.decoderConfigured !== sig) {
      if (!view.decoder || view.decoder.state === "closed") startWebCodecs();
      view.decoder.configure(cfg); view.decoderConfigured = sig; view.needKey = true;
    }
    view.timescale = Number(p.timescale || 90000); view.lastInit = r;
    return;
  }
  if (!view.decoderConfigured) {
    if (!view.lastInit) return;
    wcFeed(view.lastInit);  // the decoder failed earlier: a fresh one from the last init, from the next keyframe
  }
  const ts = Number(p.timescale || view.timescale), samples = fragmentSamples(r.payload);
  const dts0 = samples.length ? samples[0].dts : 0;
  for (const s of samples) {
    if (view.needKey && !s.key) { viewDrop("waiting for keyframe"); continue; }  // start (and restart) only at a keyframe
    view.needKey = false;
    const tsUs = Math.round(s.dts * 1e6 / ts);
    // capture_ts is the fragment's first frame; later frames of a multi-frame fragment are offset by dts
    view.pendingCapture.set(tsUs, [0, Number(p.capture_ts) + (s.dts - dts0) * 1000 / ts, p]);
    // A joiner gets the current GOP in one burst (egress join point), so allow a GOP-sized queue
    // before declaring the decoder behind and skipping to the next keyframe.
    if (view.decoder.decodeQueueSize > 90) { viewDrop("decoder behind"); view.needKey = true; continue; }
    try { view.decoder.decode(new EncodedVideoChunk({ type: s.key ? "key" : "delta", timestamp: tsUs, data: s.data })); }
    catch (e) { console.warn("decode", e); view.needKey = true; }
  }
  if (view.pendingCapture.size > 200) view.pendingCapture.clear();
}

// --- MSE playback: append init + fragments, chase the live edge
function startMse() {
  view.ms = new MediaSource(); view.queue = []; view.sb = null;
  const v = $("player"); v.src = URL.createObjectURL(view.ms);
  view.ms.addEventListener("sourceopen", () => pumpMse(), { once: true });
  const gen = view.mseGen = (view.mseGen || 0) + 1;  // one frame-callback chain per MediaSource
  const onFrame = (nowTs, meta) => {
    if (!view.running || view.mode !== "mse" || gen !== view.mseGen) return;
    frameRendered(captureFor(meta.mediaTime));
    v.requestVideoFrameCallback(onFrame);
  };
  if (v.requestVideoFrameCallback) v.requestVideoFrameCallback(onFrame);
}
function mseAppend(r) {
  const p = r.props;
  if (p.segment_type === "init" && view.mseStream && p.stream !== view.mseStream) {
    // A new publisher stream restarts decode times at 0: start a fresh MediaSource rather than
    // splicing two timelines into one SourceBuffer.
    view.sb = null; view.queue = []; view.captureByTime = []; startMse(); view.pendingInit = r; view.mseStream = p.stream;
    return;
  }
  if (p.segment_type === "init") {
    view.mseStream = p.stream;
    if (!view.sb && view.ms && view.ms.readyState === "open") {
      if (!MediaSource.isTypeSupported(p.mime)) { showError(`This browser cannot play ${p.mime} with MSE; choose WebCodecs playback.`); return; }
      view.sb = view.ms.addSourceBuffer(p.mime); view.sb.mode = "segments";
      view.sb.addEventListener("updateend", pumpMse);
    } else if (!view.sb) { view.pendingInit = r; return; }
    view.needKey = true; view.queue = [r.payload];
    pumpMse(); return;
  }
  if (!view.sb) return;
  if (view.needKey && p.keyframe === "0") { viewDrop("waiting for keyframe"); return; }
  view.needKey = false;
  view.queue.push(r.payload); pumpMse();
}
function pumpMse() {
  if (view.pendingInit && view.ms && view.ms.readyState === "open" && !view.sb) { const r = view.pendingInit; view.pendingInit = null; mseAppend(r); return; }
  const sb = view.sb, v = $("player");
  if (!sb || sb.updating || !view.queue.length) return;
  try { sb.appendBuffer(view.queue.shift()); }
  catch (e) {
    if (e.name === "QuotaExceededError" && v.currentTime > 5) sb.remove(0, v.currentTime - 2);
    else console.warn("append", e);
  }
}
setInterval(() => {  // live edge: seek when far behind, play a little faster when slightly behind, trim old data
  const v = $("player");
  if (view.mode === "mse" && view.sb && v.buffered.length) {
    const end = v.buffered.end(v.buffered.length - 1), start = v.buffered.start(0), lag = end - v.currentTime;
    // Seeking stalls the decoder, so only jump when far behind; small lags are caught up by rate.
    if (v.currentTime < start || lag > 1.0) v.currentTime = Math.max(start, end - 0.05);
    else v.playbackRate = lag > 0.25 ? 1.5 : lag > 0.1 ? 1.2 : lag > 0.06 ? 1.05 : 1.0;
    if (v.paused) v.play().catch(() => {});
    if (!view.sb.updating && v.currentTime - start > 20) view.sb.remove(start, v.currentTime - 10);
    S.view.currentTime = v.currentTime;
  }
  syncAudio();
}, 50);

// --- audio (preferred): decode Opus with WebCodecs and schedule it with Web Audio so that each packet
// plays when the video shows the same capture time. A MediaSource <audio> element keeps ~200 ms of
// audio buffered before it plays, which leaves the sound behind a low-latency picture.
const wa = { ctx: null, decoder: null, stream: null, next: 0, capture: new Map(), lag: null };
function videoLatencyMs() {  // smoothed capture -> render of the picture; audio is scheduled to match it
  const l = S.view.latencies; if (!l.length) return null;
  return pct(l.slice(-30), 0.5);
}
function onAudioWebAudio(r) {
  const p = r.props; S.view.audioSegments++;
  if (p.segment_type === "init") {
    if (wa.stream === p.stream && wa.decoder && wa.decoder.state === "configured") return;
    if (!wa.ctx) { wa.ctx = new AudioContext({ latencyHint: "interactive" }); }
    if (wa.ctx.state === "suspended") wa.ctx.resume().catch(() => {}).then(() => {
      $("unmute").style.display = wa.ctx.state === "running" ? "none" : ""; });
    if (wa.decoder && wa.decoder.state !== "closed") try { wa.decoder.close(); } catch (e) { }
    wa.stream = p.stream; wa.timescale = Number(p.timescale || 48000); wa.capture.clear();
    wa.decoder = new AudioDecoder({ output: playAudio, error: (e) => { console.warn("audio decoder", e); wa.stream = null; } });
    wa.decoder.configure({ codec: p.codec_string === "opus" ? "opus" : p.codec_string,
                           sampleRate: Number(p.sample_rate || 48000), numberOfChannels: Number(p.channels || 1) });
    return;
  }
  if (!wa.decoder || wa.decoder.state !== "configured" || p.stream !== wa.stream) return;
  const ts = Number(p.timescale || wa.timescale), cap0 = Number(p.capture_ts), samples = fragmentSamples(r.payload);
  S.view.audioArrivalMs = serverNow() - cap0;
  const dts0 = samples.length ? samples[0].dts : 0;
  for (const smp of samples) {
    const tsUs = Math.round(smp.dts * 1e6 / ts);
    wa.capture.set(tsUs, cap0 + (smp.dts - dts0) * 1000 / ts);
    wa.decoder.decode(new EncodedAudioChunk({ type: "key", timestamp: tsUs, data: smp.data }));
  }
  if (wa.capture.size > 500) wa.capture.clear();
}
function playAudio(data) {
  const cap = wa.capture.get(data.timestamp); wa.capture.delete(data.timestamp);
  const ctx = wa.ctx, lv = videoLatencyMs();
  if (!ctx || cap === undefined || !view.running) { data.close(); return; }
  const buf = ctx.createBuffer(data.numberOfChannels, data.numberOfFrames, data.sampleRate);
  for (let c = 0; c < data.numberOfChannels; c++) {
    const plane = new Float32Array(data.numberOfFrames);
    data.copyTo(plane, { planeIndex: c, format: "f32-planar" }); buf.copyToChannel(plane, c);
  }
  data.close();
  // Play at capture + video latency (no picture yet: as soon as possible); keep packets contiguous
  // unless that drifts more than 30 ms from the target.
  const wantCtx = ctx.currentTime + (lv === null ? 0.02 : (cap + lv - serverNow()) / 1000);
  let at = Math.abs(wantCtx - wa.next) < 0.03 ? wa.next : wantCtx;
  if (at < ctx.currentTime + 0.005) at = ctx.currentTime + 0.005;  // late: play now (audio behind video)
  const src = ctx.createBufferSource(); src.buffer = buf; src.connect(ctx.destination); src.start(at);
  S.view.audioPlayed++;
  wa.next = at + buf.duration;
  const audioLatency = serverNow() + (at - ctx.currentTime) * 1000 - cap;
  if (lv !== null) S.view.avSkewMs = audioLatency - lv;  // > 0: sound later than picture
}

// --- audio fallback: Opus fMP4 into its own MSE element, held at the live edge like the video (both near-realtime,
// so the two stay within one edge window of each other; the skew is measured from capture_ts).
function onAudioSegment(r) {
  const p = r.props; S.view.audioSegments++;
  if (p.capture_ts && p.segment_type === "media") S.view.audioArrivalMs = serverNow() - Number(p.capture_ts);
  if (view.audio && p.segment_type === "init" && p.stream !== view.audio.stream) view.audio = null;  // new publisher
  if (!view.audio) {
    if (p.segment_type !== "init" || !MediaSource.isTypeSupported(p.mime)) return;
    const a = $("audioPlayer"), ms = new MediaSource();
    view.audio = { ms, sb: null, queue: [r.payload], map: [], stream: p.stream }; a.src = URL.createObjectURL(ms);
    ms.addEventListener("sourceopen", () => {
      view.audio.sb = ms.addSourceBuffer(p.mime); view.audio.sb.mode = "segments";
      view.audio.sb.addEventListener("updateend", pumpAudio); pumpAudio();
    }, { once: true });
    view.audioClock = () => { const m = view.audio && view.audio.map; const t = a.currentTime;
      for (let i = m.length - 1; i >= 0; i--) if (m[i][0] <= t) return m[i][1] + (t - m[i][0]) * 1000; return serverNow(); };
    return;
  }
  if (p.segment_type === "init") view.audio.queue.push(r.payload);
  else { view.audio.queue.push(r.payload); view.audio.map.push([Number(p.decode_time) / Number(p.timescale), Number(p.capture_ts)]);
    if (view.audio.map.length > 500) view.audio.map.splice(0, 250); }
  pumpAudio();
}
function pumpAudio() {
  const au = view.audio; if (!au || !au.sb || au.sb.updating || !au.queue.length) return;
  try { au.sb.appendBuffer(au.queue.shift()); } catch (e) { au.queue = []; }
}
function syncAudio() {
  // Audio follows the video: play the audio whose capture time equals the capture time of the frame
  // on screen now (both carry capture_ts from the same publisher clock), within ~40 ms.
  const a = $("audioPlayer"), au = view.audio;
  if (!au || !au.sb || !a.buffered.length || !au.map.length) return;
  const start = a.buffered.start(0), end = a.buffered.end(a.buffered.length - 1);
  let target = end - 0.1;
  if (view.lastCap) {
    const vcap = view.lastCap[0] + (serverNow() - view.lastCap[1]);
    let m = au.map[au.map.length - 1];
    for (let i = au.map.length - 1; i >= 0 && au.map[i][1] > vcap; i--) m = au.map[i];
    target = m[0] + (vcap - m[1]) / 1000;
  }
  target = Math.min(Math.max(target, start), end);
  const diff = target - a.currentTime;
  if (Math.abs(diff) > 0.3) a.currentTime = target;
  else a.playbackRate = diff > 0.04 ? 1.1 : diff < -0.04 ? 0.9 : 1.0;
  if (a.paused) a.play().then(() => { $("unmute").style.display = "none"; }, () => { $("unmute").style.display = ""; });
  if (!au.sb.updating && a.currentTime - start > 20) au.sb.remove(start, a.currentTime - 10);
}
$("unmute").onclick = () => {
  if (wa.ctx) wa.ctx.resume().then(() => { $("unmute").style.display = "none"; });
  else $("audioPlayer").play().then(() => { $("unmute").style.display = "none"; });
};
