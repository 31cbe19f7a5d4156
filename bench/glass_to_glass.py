"""Glass-to-glass latency of the browser client through the whole pipeline (issue 6 "Benchmark").

    .venv/bin/python -m bench.glass_to_glass [--seconds 20] [--warmup 4] [--modes webcodecs,mse]
                                             [--no-baseline] [--json]

Starts `wtpulsar up` on free loopback ports (broker, transcode, chunk, moderate, route, ingress), then
headless Debian Chromium with a 640x480@30 fake camera: one page publishes (WebCodecs H.264 over
WebTransport), a second page watches the 360p rendition, first with WebCodecs decode to a canvas and
then with Media Source Extensions (one at a time, so the two do not compete for the 2 CPUs).

Latency = wall clock when the viewer renders a frame (WebCodecs: decoder output drawn; MSE:
requestVideoFrameCallback) minus that frame's `capture_ts` (taken when the publisher read the frame
from the camera); both pages share one clock, so there is no skew to correct. Per-hop figures come from
the `t_ingress`/`t_transcode`/`t_chunk`/`t_route` properties the viewer receives (ENVELOPE.md).
Targets: p50 < 200 ms, p95 < 400 ms. Timings on a shared 2-core box are noisy; the load average is
printed with the table.

Baseline (side by side): the classic segment approach, the same pipeline with chunk writing one fMP4
fragment per GOP (`fragment_frames: 0`), played with MSE — what a player fed whole segments sees.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_P50_MS = 200.0
TARGET_P95_MS = 400.0
HOPS = ["capture → ingress", "ingress → transcode", "transcode → chunk", "chunk → route", "route → render"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(context: Any, viewer_url: str, mode: str, seconds: float, warmup: float) -> dict[str, Any]:
    page = context.new_page()
    joined = time.monotonic()
    page.goto(f"{viewer_url}&playback={mode}")
    page.wait_for_function("() => window.wtpulsar.view.frames > 0", timeout=30_000)
    first_frame_ms = (time.monotonic() - joined) * 1000  # late join: page load -> first picture
    time.sleep(warmup)
    page.evaluate("() => window.wtpulsar.view.hopLog.splice(0)")  # discard start-up (join, first GOP)
    frames0 = page.evaluate("() => window.wtpulsar.view.frames")
    rows: list[list[float | None]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))
        rows += page.evaluate("() => window.wtpulsar.view.hopLog.splice(0)")
    frames = page.evaluate("() => window.wtpulsar.view.frames") - frames0
    dropped = page.evaluate("() => window.wtpulsar.view.dropped")
    av_skew = page.evaluate("() => window.wtpulsar.view.avSkewMs")
    page.close()
    latencies = [float(r[0]) for r in rows if r and r[0] is not None]
    hops = {name: statistics.median(vals) for i, name in enumerate(HOPS, start=1)
            if (vals := [float(r[i]) for r in rows if len(r) > i and r[i] is not None])}
    result: dict[str, Any] = {"mode": mode, "frames": frames, "fps": frames / seconds, "dropped": dropped,
                              "first_frame_ms": first_frame_ms, "av_skew_ms": av_skew,
                              "samples": len(latencies), "hops_p50": hops}
    if latencies:
        result.update(p50=percentile(latencies, 0.5), p95=percentile(latencies, 0.95), max=max(latencies))
    return result


def gop_fragment_functions(target: Path) -> Path:
    """deploy/functions/ with chunk set to one fragment per GOP: the baseline."""
    import yaml

    from tests.browser_support import REPO

    target.mkdir(parents=True, exist_ok=True)
    for config in sorted((REPO / "deploy" / "functions").glob("*.yaml")):
        data = yaml.safe_load(config.read_text())
        if data.get("name") == "chunk":
            data["userConfig"]["fragment_frames"] = 0
        (target / config.name).write_text(yaml.safe_dump(data, sort_keys=False))
    return target


def run(seconds: float, warmup: float, modes: list[str], gop_fragments: bool = False) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    from tests.browser_support import CHROMIUM, launch_browser, start_pipeline

    if not CHROMIUM.exists():
        raise SystemExit("needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="glass-to-glass-") as tmp:
        functions = gop_fragment_functions(Path(tmp) / "functions") if gop_fragments else None
        pipeline = start_pipeline(Path(tmp) / "state", functions_dir=functions)
        try:
            with sync_playwright() as pw:
                context = launch_browser(pw, Path(tmp) / "chromium", fps=30)
                try:
                    publisher = context.new_page()
                    publisher.goto(pipeline.publisher_url)
                    publisher.select_option("#resolution", "640x480")
                    publisher.select_option("#fps", "30")
                    publisher.select_option("#codec", "h264")
                    publisher.click("#startPub")
                    publisher.wait_for_function("() => window.wtpulsar.pub.acked >= 0", timeout=30_000)
                    results = [measure(context, pipeline.viewer_url, mode, seconds, warmup) for mode in modes]
                    pub = publisher.evaluate("() => window.wtpulsar.pub")
                finally:
                    context.close()
        finally:
            pipeline.stop()
    return {"results": results, "publisher": pub, "seconds": seconds, "load": os.getloadavg()}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def print_table(report: dict[str, Any]) -> None:
    print(f"glass-to-glass, 640x480@30 H.264 -> 360p, {report['seconds']:.0f} s per mode, "
          f"load average {report['load'][0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'playback':<10} {'frames':>6} {'fps':>5} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} "
          f"{'target p50/p95':>15}  met  {'join→1st frame':>14} {'A/V skew':>9}")
    for r in report["results"]:
        if "p50" not in r:
            print(f"{r['mode']:<10} {r['frames']:>6} {r['fps']:>5.1f}  no frames rendered")
            continue
        met = r["p50"] < TARGET_P50_MS and r["p95"] < TARGET_P95_MS
        print(f"{r['mode']:<10} {r['frames']:>6} {r['fps']:>5.1f} {r['p50']:>7.0f} {r['p95']:>7.0f} {r['max']:>7.0f} "
              f"{f'<{TARGET_P50_MS:.0f} / <{TARGET_P95_MS:.0f}':>15}  {'yes' if met else 'NO ':<3}  "
              f"{r['first_frame_ms']:>11.0f} ms {_ms(r['av_skew_ms']):>9}")
    print("\nper-hop p50 (ms):")
    print(f"{'hop':<22}" + "".join(f"{r['mode']:>11}" for r in report["results"]))
    for hop in HOPS:
        cells = "".join(f"{r['hops_p50'].get(hop, float('nan')):>11.1f}" for r in report["results"])
        print(f"{hop:<22}{cells}")
    if any(r.get("baseline") for r in report["results"]):
        print("\ngop-mse = baseline: same pipeline, chunk writes one fragment per GOP (1 s), MSE playback")
    best = min((r for r in report["results"] if "p50" in r and not r.get("baseline")), key=lambda r: r["p50"],
               default=None)
    if best:
        print(f"\nlower-latency playback: {best['mode']} (live_client.html default: webcodecs)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per playback mode")
    parser.add_argument("--warmup", type=float, default=4.0, help="seconds discarded after the first frame")
    parser.add_argument("--modes", default="webcodecs,mse", help="comma-separated: webcodecs, mse")
    parser.add_argument("--no-baseline", action="store_true", help="skip the one-fragment-per-GOP baseline run")
    parser.add_argument("--json", action="store_true", help="print the raw report as JSON too")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in ("webcodecs", "mse")]
    if bad or not modes:
        parser.error(f"--modes: unknown {bad or modes}; use webcodecs and/or mse")
    report = run(args.seconds, args.warmup, modes)
    if not args.no_baseline:
        baseline = run(args.seconds, args.warmup, ["mse"], gop_fragments=True)
        for r in baseline["results"]:
            r["mode"], r["baseline"] = "gop-mse", True
        report["results"] += baseline["results"]
    print_table(report)
    if args.json:
        print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
