"""HLS from the room topics (issue "Low-Latency HLS"): listing latency, glass to glass, serving rate.

    .venv/bin/python -m bench.hls [--quick] [--seconds 20] [--viewers 1000] [--json FILE]

Starts `wtpulsar up` on free loopback ports and `wtpulsar publish --test-pattern` (1280x720@30 with
a noisy lower third so the bitrate is a camera's, not a still pattern's; transcode makes 720p and 360p;
a keyframe a second, capture time burned into every picture), then measures, in one run:

1. listing latency: a client follows the 360p media playlist with blocking reloads (_HLS_msn /
   _HLS_part for the next part); each time a new part is listed, wall clock minus the capture time
   burned into the part's newest frame (the part is fetched and decoded) — how long a fragment takes
   from the camera to the playlist. p50/p99.
2. glass to glass: headless Chromium plays the room with hls.js in LL-HLS mode and reads the capture
   time burned into each picture it shows; the baseline in the same run is our own viewer page
   (WebCodecs over WebTransport) on the same stream. p50/p95. Target: LL-HLS p50 under 2 s.
3. serving: 1,000 simulated LL-HLS viewers (blocking playlist reload, then the part it names), in two
   load processes, against the one ingress process: requests/s served and how many viewers kept up;
   then segment serving alone (many connections fetching an immutable segment): Gbit/s, beside the
   ingress's /health on the same server as the request-rate ceiling of the HTTP stack itself. Gbit/s
   per core divides the bytes by the CPU time the ingress process used (/proc), so a load generator
   that cannot keep the server busy does not hide the figure; requests/s are what the generator got.
   Target: segment serving >= 1 Gbit/s per core.

On a shared 2-core machine the load generator, Chromium and the pipeline compete for the same cores;
the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOM = "hlsbench"
TARGET_G2G_P50_MS = 2000.0
TARGET_GBIT_PER_CORE = 1.0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# ---- 1. listing latency ------------------------------------------------------------------------------
PART_RE = re.compile(r'#EXT-X-PART:DURATION=([0-9.]+),URI="[^"]*part-(\d+)\.(\d+)\.m4s"')


def newest_part_capture(text: str) -> tuple[int, int, float] | None:
    """(msn, part, capture ms of its newest frame) of the last part listed, from the playlist text."""
    pdt_ms, newest = 0.0, None
    offset = 0.0
    for line in text.splitlines():
        if line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            pdt_ms = datetime.fromisoformat(line.split(":", 1)[1]).timestamp() * 1000
            offset = 0.0
        match = PART_RE.match(line)
        if match:
            duration = float(match.group(1))
            offset += duration
            newest = (int(match.group(2)), int(match.group(3)), pdt_ms + offset * 1000 - 1000 / 30)
    return newest


def newest_stamp(init: bytes, part: bytes) -> float | None:
    """The capture time burned into the last picture of a part (decoded after its init segment)."""
    import io

    import av

    from clients import capture_stamp

    last = None
    try:
        with av.open(io.BytesIO(init + part), mode="r", format="mp4") as container:
            for frame in container.decode(video=0):
                last = frame
    except av.error.FFmpegError:
        return None
    if last is None:
        return None
    return float(capture_stamp.read(last.to_ndarray(format="yuv420p")[:last.height]))


async def listing_latency(base: str, seconds: float) -> list[float]:
    import aiohttp

    samples: list[float] = []
    inits: dict[str, bytes] = {}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/360p/index.m3u8") as response:
            text = await response.text()
        deadline = time.monotonic() + seconds
        position = newest_part_capture(text)
        while time.monotonic() < deadline and position is not None:
            msn, part = position[0], position[1] + 1
            url = f"{base}/360p/index.m3u8?_HLS_msn={msn}&_HLS_part={part}"
            async with session.get(url) as response:
                text = await response.text()
                listed = time.time() * 1000
            if response.status != 200:
                continue
            newest = newest_part_capture(text)
            if newest is None:
                continue
            if (newest[0], newest[1]) != (position[0], position[1]):
                # the true capture time of the part's newest frame: decode it and read its burned-in stamp
                init_uri = re.findall(r'#EXT-X-MAP:URI="([^"]+)"', text)[-1]
                if init_uri not in inits:
                    async with session.get(f"{base}/360p/{init_uri}") as r:
                        inits[init_uri] = await r.read()
                gen = init_uri.split("/", 1)[0]
                async with session.get(f"{base}/360p/{gen}/part-{newest[0]}.{newest[1]}.m4s") as r:
                    part_bytes = await r.read()
                stamp = newest_stamp(inits[init_uri], part_bytes)
                if stamp is not None:
                    samples.append(listed - stamp)
            position = newest
    return samples


# ---- 2. glass to glass -------------------------------------------------------------------------------
def glass_to_glass(pipeline: Any, base: str, seconds: float, tmp: Path) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    from tests.browser_support import launch_browser
    from tests.hlsjs_support import PLAYER_JS, hlsjs_source

    out: dict[str, list[float]] = {}
    with sync_playwright() as pw:
        context = launch_browser(pw, tmp / "chromium", grant_media=False)
        try:
            page = context.new_page()  # baseline: our page, WebCodecs over WebTransport, same stream
            page.goto(f"{pipeline.viewer_url}&playback=webcodecs")
            page.wait_for_function("() => window.wtpulsar.view.frames > 0", timeout=60_000)
            time.sleep(2)
            page.evaluate("() => window.wtpulsar.view.latencies.splice(0)")
            time.sleep(seconds)
            out["webcodecs"] = page.evaluate("() => window.wtpulsar.view.latencies.slice()")
            page.close()
            page = context.new_page()
            page.goto(f"{pipeline.http_url}/health")
            page.set_content("<!doctype html><body></body>")
            page.add_script_tag(content=hlsjs_source())
            page.add_script_tag(content=PLAYER_JS)
            page.evaluate(f"() => window.startHls('{base}/index.m3u8')")
            page.wait_for_function("() => window.hlsStats.latencies.length > 0", timeout=30_000)
            time.sleep(4)  # hls.js settles on its live edge
            page.evaluate("() => window.hlsStats.latencies.splice(0)")
            time.sleep(seconds)
            out["hls.js LL-HLS"] = page.evaluate("() => window.hlsStats.latencies.slice()")
            page.close()
        finally:
            context.close()
    return out


# ---- 3. serving --------------------------------------------------------------------------------------
async def _viewers(base: str, count: int, seconds: float, queue: Any) -> None:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=15)
    stats = {"requests": 0, "bytes": 0, "errors": 0, "kept_up": 0}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async with session.get(f"{base}/360p/index.m3u8") as response:
            first = newest_part_capture(await response.text())
        deadline = time.monotonic() + seconds

        async def viewer() -> None:
            position = first
            parts = 0
            while time.monotonic() < deadline and position is not None:
                msn, part = position[0], position[1] + 1
                try:
                    async with session.get(f"{base}/360p/index.m3u8?_HLS_msn={msn}&_HLS_part={part}") as r:
                        text = await r.text()
                    stats["requests"] += 1
                    newest = newest_part_capture(text)
                    if newest is None or r.status != 200:
                        stats["errors"] += 1
                        continue
                    gen = text.split('#EXT-X-MAP:URI="', 1)[1].split("/", 1)[0]
                    async with session.get(f"{base}/360p/{gen}/part-{newest[0]}.{newest[1]}.m4s") as r:
                        stats["bytes"] += len(await r.read())
                    stats["requests"] += 1
                    parts += 1
                    position = newest
                except (aiohttp.ClientError, TimeoutError):
                    stats["errors"] += 1
            if parts >= 0.8 * seconds * 3:  # about three parts a second is live
                stats["kept_up"] += 1

        await asyncio.gather(*(viewer() for _ in range(count)))
    queue.put(stats)


def _viewers_process(base: str, count: int, seconds: float, queue: Any) -> None:
    asyncio.run(_viewers(base, count, seconds, queue))


async def _hammer(url: str, connections: int, seconds: float, queue: Any) -> None:
    import aiohttp

    stats = {"requests": 0, "bytes": 0}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        deadline = time.monotonic() + seconds

        async def one() -> None:
            while time.monotonic() < deadline:
                async with session.get(url) as response:
                    stats["bytes"] += len(await response.read())
                stats["requests"] += 1

        await asyncio.gather(*(one() for _ in range(connections)))
    queue.put(stats)


def _hammer_process(url: str, connections: int, seconds: float, queue: Any) -> None:
    asyncio.run(_hammer(url, connections, seconds, queue))


def in_processes(target: Any, args: tuple[Any, ...], processes: int, seconds: float) -> dict[str, float]:
    queue: Any = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=target, args=(*args, queue)) for _ in range(processes)]
    started = time.monotonic()
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=seconds + 120) for _ in procs]
    for proc in procs:
        proc.join(30)
    elapsed = max(seconds, time.monotonic() - started - 1.0)
    total: dict[str, float] = {}
    for result in results:
        for key, value in result.items():
            total[key] = total.get(key, 0) + value
    total["seconds"] = elapsed
    return total


def ingress_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of the ingress process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ingress_pid(pipeline: Any) -> int:
    match = re.search(r"starting ingress \(pid (\d+)\)", pipeline.log_path.read_text())
    if not match:
        raise RuntimeError("no ingress pid in the wtpulsar up log")
    return int(match.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 5 s per phase, 200 viewers")
    parser.add_argument("--seconds", type=float, default=20.0, help="per phase (default 20)")
    parser.add_argument("--viewers", type=int, default=1000, help="simulated HLS viewers (default 1000)")
    parser.add_argument("--fps", type=int, default=30, help="publisher frame rate (default 30; --quick: 15)")
    parser.add_argument("--no-browser", action="store_true", help="skip glass to glass (no Chromium)")
    parser.add_argument("--json", nargs="?", const="-", help="write the figures as JSON to FILE ('-': stdout)")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.viewers, args.fps = 5.0, 200, 15

    from tests.browser_support import start_pipeline
    from tests.test_hls_live import fetch

    report: dict[str, Any] = {"seconds": args.seconds, "viewers": args.viewers, "fps": args.fps}
    with tempfile.TemporaryDirectory(prefix="bench-hls-") as tmp_name:
        tmp = Path(tmp_name)
        pipeline = start_pipeline(tmp / "state", room=ROOM)
        publisher = None
        try:
            wt = re.search(r"^\s+ingress\s+(https://\S+/wt)", pipeline.log_path.read_text(), re.M)
            assert wt, pipeline.log_tail()
            publisher = subprocess.Popen(
                [sys.executable, "-m", "wtpulsar.cli", "publish", ROOM, "--test-pattern", "--server", wt.group(1),
                 "--token", pipeline.tokens["publisher"], "--size", "1280x720", "--fps", str(args.fps), "--noise"],
                stdout=(tmp / "publish.log").open("wb"), stderr=subprocess.STDOUT)
            base = f"{pipeline.http_url}/hls/{ROOM}"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and fetch(f"{base}/360p/index.m3u8")[1].count(b"#EXTINF") < 3:
                time.sleep(0.5)
            report["listing_ms"] = asyncio.run(listing_latency(base, args.seconds))
            if not args.no_browser:
                try:
                    report["glass_to_glass_ms"] = glass_to_glass(pipeline, base, args.seconds, tmp)
                except Exception as exc:  # a page that never got a picture: say so, measure the rest
                    report["glass_to_glass_error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            pid = ingress_pid(pipeline)
            cpu0 = ingress_cpu_seconds(pid)
            viewers = in_processes(_viewers_process, (base, args.viewers // 2, args.seconds), 2, args.seconds)
            viewers["ingress_cpu_s"] = ingress_cpu_seconds(pid) - cpu0
            report["viewers_load"] = viewers
            text = fetch(f"{base}/720p/index.m3u8")[1].decode()
            seg = re.findall(r"^(\S+/seg-\d+\.m4s)$", text, re.M)[-1]
            cpu0 = ingress_cpu_seconds(pid)
            segments = in_processes(_hammer_process, (f"{base}/720p/{seg}", 32, args.seconds), 2, args.seconds)
            segments["ingress_cpu_s"] = ingress_cpu_seconds(pid) - cpu0
            report["segment_serving"] = segments
            cpu0 = ingress_cpu_seconds(pid)
            health = in_processes(_hammer_process, (f"{pipeline.http_url}/health", 32, args.seconds), 2, args.seconds)
            health["ingress_cpu_s"] = ingress_cpu_seconds(pid) - cpu0
            report["health_baseline"] = health
        finally:
            if publisher is not None:
                publisher.terminate()
                publisher.wait(20)
            pipeline.stop()
    report["load"] = os.getloadavg()
    print_report(report)
    if args.json:
        text = json.dumps(report, indent=1)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text)
    return 0


def print_report(r: dict[str, Any]) -> None:
    load = " ".join(f"{x:.2f}" for x in r["load"])
    print(f"HLS from the room topics, 1280x720@{r['fps']} -> 720p + 360p, {r['seconds']:.0f} s per phase, load average {load}")
    if r.get("glass_to_glass_error"):
        print(f"  glass to glass: FAILED: {r['glass_to_glass_error']}")
    listing = r["listing_ms"]
    print(f"  capture -> listed in the playlist (newest frame of each new part), {len(listing)} parts: "
          f"p50 {pct(listing, 0.5):.0f} ms, p99 {pct(listing, 0.99):.0f} ms")
    for name, values in r.get("glass_to_glass_ms", {}).items():
        values = [v for v in values if v > 0]
        mark = ""
        if name.startswith("hls.js"):
            mark = f"  (target p50 < {TARGET_G2G_P50_MS:.0f} ms: {'met' if pct(values, 0.5) < TARGET_G2G_P50_MS else 'NOT met'})"
        print(f"  glass to glass, {name:<14} {len(values):5d} pictures: p50 {pct(values, 0.5):6.0f} ms, "
              f"p95 {pct(values, 0.95):6.0f} ms{mark}")
    v = r["viewers_load"]
    print(f"  {r['viewers']} simulated LL-HLS viewers (blocking reload + part): {v['requests'] / v['seconds']:.0f} req/s "
          f"served, {v['kept_up']:.0f} kept up (>= 80% of the parts), {v['errors']:.0f} errors, ingress CPU "
          f"{v['ingress_cpu_s'] / v['seconds'] * 100:.0f}% of a core")
    s, h = r["segment_serving"], r["health_baseline"]
    per_core = s["bytes"] * 8 / 1e9 / max(s["ingress_cpu_s"], 1e-9)
    size = s["bytes"] / max(s["requests"], 1) / 1024
    print(f"  segment serving ({size:.0f} KiB 720p segments): {s['requests'] / s['seconds']:.0f} req/s, {s['bytes'] * 8 / 1e9 / s['seconds']:.2f} Gbit/s "
          f"at {s['ingress_cpu_s'] / s['seconds'] * 100:.0f}% of a core = {per_core:.2f} Gbit/s per core of ingress CPU "
          f"(target >= {TARGET_GBIT_PER_CORE:.0f}: {'met' if per_core >= TARGET_GBIT_PER_CORE else 'NOT met'})")
    print(f"  baseline, /health on the same server: {h['requests'] / h['seconds']:.0f} req/s at "
          f"{h['ingress_cpu_s'] / h['seconds'] * 100:.0f}% of a core")


if __name__ == "__main__":
    sys.exit(main())
