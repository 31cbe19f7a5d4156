// "Go back": watch the room from a moment in its past, from the ingress's HLS (docs/hls.md). The media
// playlist with ?start=<ISO time> lists from the segment holding that moment and says where in it the
// moment is (EXT-X-START); its init and segments go into Media Source Extensions in "sequence" mode, so a
// discontinuity (a publisher restart, a new resolution) plays on. Blocking reloads (_HLS_msn) bring each
// next segment as soon as it is complete, up to live. The timeline runs from the oldest retained segment
// to now. Video only: the live player above carries the sound.
import { $ } from "./dom.js";
import { CLAIMS, SERVER } from "./params.js";
import { S } from "./stats.js";

const dvr = S.dvr = { oldest: null, start: null, segments: 0, errors: [], watching: false };
const room = () => $("room").value || (CLAIMS && CLAIMS.room) || "";
const hlsBase = () => `${SERVER}/hls/${encodeURIComponent(room())}`;
const rendition = () => $("rendition").value;
const iso = (ms) => new Date(ms).toISOString();
const say = (text) => { $("dvrOverlay").textContent = text; };
let run = 0;
function label() {
  const at = Number($("dvrTime").value) * 1000;
  $("dvrLabel").textContent = at ? `${iso(at).slice(11, 19)} UTC, ${Math.round((Date.now() - at) / 1000)} s ago` : "—";
}
async function timeline() {
  const response = await fetch(`${hlsBase()}/${rendition()}/index.m3u8`);
  const text = await response.text();
  const first = text.match(/#EXT-X-PROGRAM-DATE-TIME:(\S+)/);
  if (!response.ok || !first) { say(response.ok ? "nothing retained yet" : text); return; }
  dvr.oldest = Date.parse(first[1]);
  const slider = $("dvrTime");
  slider.min = Math.ceil(dvr.oldest / 1000); slider.max = Math.floor(Date.now() / 1000);
  if (Number(slider.value) < Number(slider.min)) slider.value = slider.min;
  label();
}
async function codecOf() {
  const lines = (await (await fetch(`${hlsBase()}/index.m3u8`)).text()).split("\n");
  for (let i = 0; i + 1 < lines.length; i++) {
    if (lines[i + 1].startsWith(`${rendition()}/`)) {
      const m = lines[i].match(/CODECS="(avc1[^",]*)/);
      if (m) return m[1];
    }
  }
  return "avc1.42e01f";
}
async function play(startMs) {
  const mine = ++run;  // a newer play() or "back to live" ends this one
  Object.assign(dvr, { start: startMs, segments: 0, errors: [], watching: true });
  const video = $("dvrPlayer"), source = new MediaSource();
  video.src = URL.createObjectURL(source);
  await new Promise((resolve) => source.addEventListener("sourceopen", resolve, { once: true }));
  const buffer = source.addSourceBuffer(`video/mp4; codecs="${await codecOf()}"`);
  buffer.mode = "sequence";
  const append = (data) => new Promise((resolve, reject) => {
    buffer.addEventListener("updateend", resolve, { once: true });
    buffer.addEventListener("error", reject, { once: true });
    buffer.appendBuffer(data);
  });
  const url = `${hlsBase()}/${rendition()}/index.m3u8?start=${encodeURIComponent(iso(startMs))}`;
  const dir = url.slice(0, url.lastIndexOf("/") + 1);
  let next = null, shownMap = null, offset = 0;
  while (mine === run) {
    const response = await fetch(next === null ? url : `${url}&_HLS_msn=${next}`);
    if (mine !== run) return;
    const text = await response.text();
    if (response.status === 503) continue;  // the next segment is not complete yet: ask again
    if (!response.ok) { dvr.errors.push(text); say(text); dvr.watching = false; return; }
    const lines = text.split("\n");
    let msn = Number((text.match(/#EXT-X-MEDIA-SEQUENCE:(\d+)/) || [0, 0])[1]), map = null;
    const start = text.match(/#EXT-X-START:TIME-OFFSET=([0-9.]+)/);
    if (next === null && start) offset = Number(start[1]);
    for (let i = 0; i < lines.length; i++) {
      if (lines[i].startsWith("#EXT-X-MAP:URI=")) map = lines[i].slice(16, -1);
      if (!lines[i].startsWith("#EXTINF")) continue;
      const uri = lines[++i];
      if (next === null || msn >= next) {
        if (map !== shownMap) { shownMap = map; await append(await (await fetch(dir + map)).arrayBuffer()); }
        await append(await (await fetch(dir + uri)).arrayBuffer());
        if (mine !== run) return;
        if (dvr.segments++ === 0) { video.currentTime = offset; video.play().catch(() => {}); }
        next = msn + 1;
      }
      msn++;
    }
    if (next === null) next = msn;  // no complete segment yet: wait for the first
    say(`watching from ${iso(startMs).slice(11, 19)} UTC, ${Math.round((Date.now() - startMs) / 1000)} s back`);
  }
}
$("dvrLoad").onclick = () => timeline().catch((e) => say(String(e)));
$("dvrTime").oninput = label;
$("dvrPlay").onclick = () => play(Number($("dvrTime").value) * 1000).catch((e) => { dvr.errors.push(String(e)); say(String(e)); });
$("dvrLive").onclick = () => { run++; dvr.watching = false; $("dvrPlayer").removeAttribute("src"); say("live: see Watch above"); };
