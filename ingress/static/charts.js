// The metrics panel and its chart: once a second, what the publisher sent and got acknowledged, what the
// viewer rendered and how late (p50/p95, per hop), chat latency, the clock offset, the transport.
import { chat } from "./chat.js";
import { clockSync } from "./clock.js";
import { $, esc } from "./dom.js";
import { CLAIMS } from "./params.js";
import { outbox, pub } from "./publisher.js";
import { pct, S } from "./stats.js";
import { view } from "./viewer.js";

const history = [];  // [latency p50, publish fps, rendered fps] per second
let lastPub = { frames: 0, bytes: 0 }, lastRendered = 0;
function fmt(v, unit) { return v === null || v === undefined || Number.isNaN(v) ? "–" : `${Math.round(v)} ${unit}`; }
setInterval(() => {
  const fps = S.pub.frames - lastPub.frames, kbps = (S.pub.bytes - lastPub.bytes) * 8 / 1000;
  lastPub = { frames: S.pub.frames, bytes: S.pub.bytes };
  const rfps = S.view.frames - lastRendered; lastRendered = S.view.frames;
  const recent = S.view.status === "playing" ? S.view.latencies.slice(-60) : [];  // no figure for a stream that is over
  const p50 = pct(recent, 0.5), p95 = pct(recent, 0.95);
  S.view.publishFps = fps; S.view.renderFps = rfps;
  history.push([p50, pub.running ? fps : null, view.running ? rfps : null]); if (history.length > 60) history.shift();
  const vq = $("player").getVideoPlaybackQuality ? $("player").getVideoPlaybackQuality() : null;
  const rows = [["publish fps", fmt(pub.running ? fps : null, "fps")], ["publish bitrate", fmt(pub.running ? kbps : null, "kbit/s")],
    ["frames sent / acked", `${S.pub.frames} / ${S.pub.acked + 1}`], ["publisher dropped frames", String(S.pub.dropped)],
    ["unacknowledged (kept for resend)", String(outbox.kept.size + chat.outbox.kept.size)],
    ["reconnects / frames resent", `${S.pub.reconnects} / ${S.pub.resent}`],
    ["resend buffer overflow drops", String(S.pub.overflowDropped)],
    ["end-to-end latency p50 / p95", p50 === null ? "–" : `${Math.round(p50)} / ${Math.round(p95)} ms`],
    ...Object.entries(S.view.hops).map(([k, v]) => ["  " + k, fmt(v, "ms")]),
    ["chat send → screen p50 / p95", S.view.chatLatencies.length ? `${Math.round(pct(S.view.chatLatencies.slice(-60), 0.5))} / ` +
      `${Math.round(pct(S.view.chatLatencies.slice(-60), 0.95))} ms` : "–"],
    ["rendered fps", fmt(view.running ? rfps : null, "fps")], ["frames rendered", String(S.view.frames)],
    ["viewer dropped frames", String(S.view.dropped + (view.mode === "mse" && vq ? vq.droppedVideoFrames : 0))],
    ["audio/video skew", S.view.avSkewMs === null ? "–" : `${Math.round(S.view.avSkewMs)} ms`],
    ["audio capture → arrival", fmt(S.view.audioArrivalMs, "ms")],
    ["clock offset to the server / round trip", clockSync.synced ? `${Math.round(clockSync.offset)} / ${Math.round(clockSync.rtt)} ms` : "–"],
    ["playback", view.mode || "–"], ["transport", S.transport || "–"]];
  $("metricsBody").innerHTML = rows.map(([k, v]) => `<tr><td>${esc(k)}</td><td class="v">${esc(v)}</td></tr>`).join("");
  if (pub.running || (CLAIMS && CLAIMS.role === "publisher")) $("pubOverlay").textContent = pub.running ? `${fps} fps · ${Math.round(kbps)} kbit/s` : "";
  const idle = { waiting: "joining…", nobody: `no one is publishing in room ${CLAIMS && CLAIMS.room}`,
                 starting: "stream starting…", ended: "the stream ended" }[S.view.status];
  $("viewOverlay").textContent = view.running ? (idle || (p50 === null ? "waiting for video…" : `${rfps} fps · ${Math.round(p50)} ms`))
    : "not watching: press Watch";
  drawChart();
}, 1000);
function drawChart() {
  const c = $("chart"), g = c.getContext("2d"), W = c.width, H = c.height;
  g.clearRect(0, 0, W, H);
  const maxLat = Math.max(200, ...history.map((h) => h[0] || 0)) * 1.1, maxFps = 40;
  g.strokeStyle = "#2a3541"; g.fillStyle = "#8b98a5"; g.font = "10px sans-serif";
  for (const f of [0.25, 0.5, 0.75]) { g.beginPath(); g.moveTo(0, H * f); g.lineTo(W, H * f); g.stroke();
    g.fillText(`${Math.round(maxLat * (1 - f))} ms`, 2, H * f - 2);
    g.fillText(`${Math.round(maxFps * (1 - f))} fps`, W - 40, H * f - 2); }
  const line = (idx, max, color) => { g.strokeStyle = color; g.lineWidth = 2; g.beginPath(); let moved = false;
    history.forEach((h, i) => { const v = h[idx]; if (v === null || v === undefined) { moved = false; return; }
      const x = W - (history.length - 1 - i) * (W / 59), y = H - (v / max) * H;
      if (!moved) { g.moveTo(x, y); moved = true; } else g.lineTo(x, y); }); g.stroke(); };
  line(0, maxLat, "#4ea1ff"); line(1, maxFps, "#3fb950"); line(2, maxFps, "#d29922");
}
