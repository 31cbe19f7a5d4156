"""hls.js for the HLS browser test and bench/hls.py: a pinned release from the npm registry, checked against
the registry's sha512 integrity and cached outside the repo (~/.cache/wtpulsar/npm). Not a dependency of the
product: only the test page loads it. The page's JavaScript plays a room's multivariant playlist in LL-HLS
mode and reads the capture time burned into each picture (clients.capture_stamp) to measure glass to glass."""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
import urllib.request
from pathlib import Path

from clients import capture_stamp

HLSJS_VERSION = "1.6.15"
HLSJS_TARBALL = f"https://registry.npmjs.org/hls.js/-/hls.js-{HLSJS_VERSION}.tgz"
HLSJS_INTEGRITY = "sha512-E3a5VwgXimGHwpRGV+WxRTKeSp2DW5DI5MWv34ulL3t5UNmyJWCQ1KmLEHbYzcfThfXG8amBL+fCYPneGHC4VA=="
CACHE = Path.home() / ".cache" / "wtpulsar" / "npm"


def hlsjs_source() -> str:
    """dist/hls.min.js of the pinned release (downloaded once; a tarball whose hash differs is refused)."""
    cached = CACHE / f"hls.js-{HLSJS_VERSION}.min.js"
    if cached.is_file():
        return cached.read_text(encoding="utf-8")
    with urllib.request.urlopen(HLSJS_TARBALL, timeout=60) as response:
        tarball = response.read()
    digest = "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest()).decode()
    if digest != HLSJS_INTEGRITY:
        raise RuntimeError(f"{HLSJS_TARBALL}: integrity {digest} is not the pinned {HLSJS_INTEGRITY}")
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        member = tar.extractfile("package/dist/hls.min.js")
        if member is None:
            raise RuntimeError(f"{HLSJS_TARBALL} has no package/dist/hls.min.js")
        source = member.read().decode("utf-8")
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp")
    tmp.write_text(source, encoding="utf-8")
    tmp.replace(cached)
    return source


# window.readStamp(video): the capture time burned into the picture a <video> shows (the layout of
# clients/capture_stamp.py), or null before it has one.
STAMP_JS = f"""
window.readStamp = (video) => {{
  if (video.readyState < 2 || !video.videoWidth) return null;
  const w = video.videoWidth, h = video.videoHeight;
  const canvas = window._stampCanvas || (window._stampCanvas = document.createElement('canvas'));
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext('2d', {{ willReadFrequently: true }});
  ctx.drawImage(video, 0, 0, w, h);
  const px = ctx.getImageData(0, 0, w, Math.ceil(h / {capture_stamp.ROW_HEIGHT_DIV} * {capture_stamp.ROWS})).data;
  let value = 0;
  for (let bit = 0; bit < {capture_stamp.BITS}; bit++) {{
    const row = Math.floor(bit / {capture_stamp.PER_ROW}), col = bit % {capture_stamp.PER_ROW};
    const y = Math.floor((row + 0.5) * h / {capture_stamp.ROW_HEIGHT_DIV}), x = Math.floor((col + 0.5) * w / {capture_stamp.PER_ROW});
    if (px[(y * w + x) * 4] > 128) value += 2 ** bit;
  }}
  return value;
}};
"""

# Runs in the test page after hls.js: plays URL muted in LL-HLS mode (allowed to play up to 1.5x to get back to
# its target latency after a stall, hls.js's maxLiveSyncPlaybackRate), samples the picture every 100 ms and
# records Date.now() - its burned-in capture time for each new picture.
PLAYER_JS = STAMP_JS + """
window.startHls = (url) => {
  const s = window.hlsStats = { latencies: [], errors: [], levels: 0, audioTracks: 0, hlsLatency: [], fragments: 0 };
  const video = document.createElement('video');
  video.muted = true; video.autoplay = true; video.playsInline = true; document.body.appendChild(video);
  const hls = window.hls = new Hls({ lowLatencyMode: true, backBufferLength: 10, maxLiveSyncPlaybackRate: 1.5 });
  hls.on(Hls.Events.ERROR, (e, d) => { if (d.fatal) s.errors.push(d.type + ': ' + d.details); });
  hls.on(Hls.Events.MANIFEST_PARSED, (e, d) => { s.levels = d.levels.length; });
  hls.on(Hls.Events.AUDIO_TRACKS_UPDATED, (e, d) => { s.audioTracks = d.audioTracks.length; });
  hls.on(Hls.Events.FRAG_BUFFERED, () => { s.fragments++; });
  hls.loadSource(url); hls.attachMedia(video); video.play().catch((err) => s.errors.push('play: ' + err));
  let last = -1;
  setInterval(() => {
    const value = window.readStamp(video);
    if (value === null) return;
    if (value !== last) { last = value; s.latencies.push(Date.now() - value); }
    if (hls.latency) s.hlsLatency.push(hls.latency);
    s.currentTime = video.currentTime; s.level = hls.currentLevel;
  }, 100);
};
"""
