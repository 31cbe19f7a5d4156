"""Glass-to-glass latency of the browser client through the whole pipeline, against the page's latency targets.

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

TARGETS = {"webcodecs": (20.0, 30.0), "mse": (45.0, None)}  # required p50, p95 ms, loopback, through transcode (docs/immediate-publish.md)
TARGET_CHAT_P50_MS = 20.0
CHAT_EVERY_S = 2.2  # moderate's shipped rate limit: 5 messages per user per 10 s
HOPS = ["capture → ingress", "ingress → transcode", "transcode → chunk", "chunk → route", "route → render"]
INPUTS = {"transcode": ["raw-video", "raw-audio"], "chunk": ["encoded"], "moderate": ["chat-in"],
          "route": ["segments", "chat-approved", "moderation"]}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(context: Any, publisher: Any, viewer_url: str, mode: str, seconds: float, warmup: float) -> dict[str, Any]:
    page = context.new_page()
    joined = time.monotonic()
    page.goto(f"{viewer_url}&playback={mode}")
    page.wait_for_function("() => window.wtpulsar.view.frames > 0", timeout=30_000)
    first_frame_ms = (time.monotonic() - joined) * 1000  # late join: page load -> first picture
    time.sleep(warmup)
    page.evaluate("() => window.wtpulsar.view.hopLog.splice(0)")  # discard start-up (join, first GOP)
    page.evaluate("() => window.wtpulsar.view.chatLatencies.splice(0)")
    frames0 = page.evaluate("() => window.wtpulsar.view.frames")
    rows: list[list[float | None]] = []
    start = time.monotonic()
    deadline = start + seconds
    next_chat, chats = start, 0
    while time.monotonic() < deadline:
        if time.monotonic() >= next_chat:  # the publisher page chats; the viewer page shows it (send -> screen)
            publisher.fill("#chatText", f"{mode} check {chats} {time.time():.3f}")
            publisher.press("#chatText", "Enter")
            chats += 1
            next_chat += CHAT_EVERY_S
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        if len(rows) < 100_000:
            rows += page.evaluate("() => window.wtpulsar.view.hopLog.splice(0)")
    time.sleep(1.0)  # the last chat message's way to the screen
    chat = [float(v) for v in page.evaluate("() => window.wtpulsar.view.chatLatencies.splice(0)")]
    frames = page.evaluate("() => window.wtpulsar.view.frames") - frames0
    dropped = page.evaluate("() => window.wtpulsar.view.dropped")
    av_skew = page.evaluate("() => window.wtpulsar.view.avSkewMs")
    page.close()
    latencies = [float(r[0]) for r in rows if r and r[0] is not None]
    hops = {name: statistics.median(vals) for i, name in enumerate(HOPS, start=1)
            if (vals := [float(v) for r in rows if len(r) > i and (v := r[i]) is not None])}
    result: dict[str, Any] = {"mode": mode, "frames": frames, "fps": frames / seconds, "dropped": dropped,
                              "first_frame_ms": first_frame_ms, "av_skew_ms": av_skew,
                              "samples": len(latencies), "hops_p50": hops, "chat_ms": chat, "chats_sent": chats}
    if latencies:
        result.update(p50=percentile(latencies, 0.5), p95=percentile(latencies, 0.95), max=max(latencies))
    return result


def configs_with(target: Path, chunk_conf: dict[str, Any] | None = None, all_conf: dict[str, Any] | None = None) -> Path:
    """deploy/functions/ copied to `target`, with userConfig changes: the baselines."""
    import yaml

    from tests.browser_support import REPO

    target.mkdir(parents=True, exist_ok=True)
    for config in sorted((REPO / "deploy" / "functions").glob("*.yaml")):
        data = yaml.safe_load(config.read_text())
        data.setdefault("userConfig", {}).update(all_conf or {})
        if data.get("name") == "chunk":
            data["userConfig"].update(chunk_conf or {})
        (target / config.name).write_text(yaml.safe_dump(data, sort_keys=False))
    return target


def start_apache_pulsar(root: Path) -> Any:
    """Apache Pulsar 4.0.8 standalone with the four shipped FunctionConfigs created by its own pulsar-admin
    (absolute paths; archives for the worker's CPython 3.11), as README "Run on Apache Pulsar" says."""
    import subprocess

    from realpulsar.cli import prepare
    from realpulsar.distribution import cache_root
    from realpulsar.standalone import Standalone, random_ports
    from tests.browser_support import REPO
    from tests.realpulsar_support import FUNCTIONS, wait_running, wait_subscribed

    home, worker, java_home = prepare()
    archives = root / "archives"
    subprocess.run([sys.executable, "-m", "deploy.packaging", "--root", str(REPO), "--out", str(archives),
                    "--wheel-cache", str(cache_root() / "wheels"), "--python-version", "3.11",
                    "--platform", "manylinux_2_28_x86_64"], cwd=REPO, check=True, capture_output=True, timeout=900)
    standalone = Standalone(home=home, data_dir=root / "pulsar", java_home=java_home, worker_python=worker,
                            ports=random_ports(), state=True)
    standalone.start()
    try:
        standalone.admin("namespaces", "create", "public/wtpulsar", check=True)
        standalone.admin("namespaces", "create", "public/wtpulsar-rooms", check=True)  # route's per-room outputs
        for name in FUNCTIONS:
            standalone.admin("functions", "create", "--function-config-file",
                             str(REPO / "deploy" / "functions" / f"{name}.yaml"), "--py", str(archives / f"{name}.zip"),
                             check=True)
        for name in FUNCTIONS:
            wait_running(standalone, name)
        wait_subscribed(standalone, [t for topics in INPUTS.values() for t in topics])
    except BaseException:
        standalone.stop()
        raise
    return standalone


def run(seconds: float, warmup: float, modes: list[str], variant: str = "localrun") -> dict[str, Any]:
    """variant: localrun (the pipeline as shipped), batched (localrun, immediate_publish off: the 10 ms
    batching wait kept, today's behaviour), pulsar (Apache Pulsar standalone), gop (one fragment per GOP)."""
    from playwright.sync_api import sync_playwright

    from tests.browser_support import CHROMIUM, launch_browser, start_pipeline

    if not CHROMIUM.exists():
        raise SystemExit("needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="glass-to-glass-") as tmp:
        functions: Path | None = None
        standalone = None
        if variant == "gop":
            functions = configs_with(Path(tmp) / "functions", chunk_conf={"fragment_frames": 0})
        elif variant == "batched":
            functions = configs_with(Path(tmp) / "functions", all_conf={"immediate_publish": False})
        elif variant == "pulsar":
            standalone = start_apache_pulsar(Path(tmp))
            functions = Path(tmp) / "no-functions"
            functions.mkdir()
        try:
            pipeline = start_pipeline(Path(tmp) / "state", functions_dir=functions,
                                      service_url=standalone.service_url if standalone else None)
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
                        results = [measure(context, publisher, pipeline.viewer_url, mode, seconds, warmup)
                                   for mode in modes]
                        pub = publisher.evaluate("() => window.wtpulsar.pub")
                    finally:
                        context.close()
            finally:
                pipeline.stop()
        finally:
            if standalone is not None:
                standalone.stop()
    for r in results:
        r["variant"] = variant
    return {"results": results, "publisher": pub, "seconds": seconds, "load": os.getloadavg()}


VARIANT_LABEL = {"localrun": "localrun", "batched": "batched*", "pulsar": "Pulsar", "gop": "gop-frag"}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _met(r: dict[str, Any]) -> str:
    p50_target, p95_target = TARGETS[r["mode"]]
    ok = r["p50"] <= p50_target and (p95_target is None or r["p95"] <= p95_target)
    return "yes" if ok else "NO"


def print_table(report: dict[str, Any]) -> None:
    print(f"glass-to-glass, 640x480@30 H.264 -> 360p, {report['seconds']:.0f} s per row, "
          f"load average {report['load'][0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'pipeline':<10}{'playback':<10} {'frames':>6} {'fps':>5} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} "
          f"{'target':>9} {'met':>4}  {'chat p50/p95 (n)':>18} {'join→1st':>9}")
    for r in report["results"]:
        label = VARIANT_LABEL[r["variant"]]
        if "p50" not in r:
            print(f"{label:<10}{r['mode']:<10} {r['frames']:>6} {r['fps']:>5.1f}  no frames rendered")
            continue
        p50_t, p95_t = TARGETS[r["mode"]]
        target = f"{p50_t:.0f}/{p95_t:.0f}" if p95_t else f"{p50_t:.0f}/-"
        chat = r["chat_ms"]
        chat_cell = (f"{percentile(chat, 0.5):.0f}/{percentile(chat, 0.95):.0f} ({len(chat)})" if chat else "-")
        print(f"{label:<10}{r['mode']:<10} {r['frames']:>6} {r['fps']:>5.1f} {r['p50']:>7.1f} {r['p95']:>7.1f} "
              f"{r['max']:>7.0f} {target:>9} {_met(r):>4}  {chat_cell:>18} {r['first_frame_ms']:>6.0f} ms")
    print("\nper-hop p50 (ms):")
    heads = [f"{VARIANT_LABEL[r['variant']]}/{r['mode'][:3]}" for r in report["results"]]
    print(f"{'hop':<22}" + "".join(f"{h:>14}" for h in heads))
    for hop in HOPS:
        cells = "".join(f"{r['hops_p50'].get(hop, float('nan')):>14.1f}" for r in report["results"])
        print(f"{hop:<22}{cells}")
    by = {(r["variant"], r["mode"]): r for r in report["results"] if "p50" in r}
    for mode in ("webcodecs", "mse"):
        ours, real = by.get(("localrun", mode)), by.get(("pulsar", mode))
        if ours and real:
            diffs = ", ".join(f"{hop} {real['hops_p50'].get(hop, 0) - ours['hops_p50'].get(hop, 0):+.1f}" for hop in HOPS)
            print(f"\nPulsar minus localrun, {mode}: p50 {real['p50'] - ours['p50']:+.1f} ms; per hop: {diffs}")
    chats = [v for r in report["results"] if r["variant"] == "localrun" for v in r["chat_ms"]]
    if chats:
        p50 = percentile(chats, 0.5)
        print(f"chat send -> screen (localrun, all rows): p50 {p50:.0f} ms, p95 {percentile(chats, 0.95):.0f} ms, "
              f"n={len(chats)}; target p50 <= {TARGET_CHAT_P50_MS:.0f} ms: {'yes' if p50 <= TARGET_CHAT_P50_MS else 'NO'}")
    print("* batched = the same localrun pipeline with immediate_publish: false (context.publish, 10 ms batching "
          "wait per hop): today's behaviour, the baseline")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per row")
    parser.add_argument("--warmup", type=float, default=4.0, help="seconds discarded after the first frame")
    parser.add_argument("--modes", default="webcodecs,mse", help="comma-separated: webcodecs, mse")
    parser.add_argument("--variants", default="localrun,batched,pulsar",
                        help="comma-separated: localrun (as shipped), batched (batching wait kept: the baseline), "
                             "pulsar (Apache Pulsar 4.0.8 standalone), gop (one fragment per GOP, MSE)")
    parser.add_argument("--json", action="store_true", help="print the raw report as JSON too")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in TARGETS]
    if bad or not modes:
        parser.error(f"--modes: unknown {bad or modes}; use webcodecs and/or mse")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not variants or any(v not in VARIANT_LABEL for v in variants):
        parser.error(f"--variants: use {', '.join(VARIANT_LABEL)}")
    report: dict[str, Any] = {"results": [], "seconds": args.seconds}
    for variant in variants:
        part = run(args.seconds, args.warmup, ["mse"] if variant == "gop" else modes, variant)
        report["results"] += part["results"]
        report["load"] = part["load"]
    print_table(report)
    if args.json:
        print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
