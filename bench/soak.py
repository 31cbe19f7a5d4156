"""Soak: 8 streams through the whole pipeline for 10 minutes; memory flat, backlog not growing.

    .venv/bin/python -m bench.soak [--minutes N] [--warmup S] [--sample S] [--json FILE]

The pipeline is tests/test_faults_harness.py's: broker, transcode/chunk/moderate/route under the
localrun supervisor, ingress, with the test FunctionConfigs (one 120p rendition so that two cores
keep up). Eight publishers stream over the ingress's WebSocket with resend-until-acked: four JPEG
cameras at 10 fps, two Opus microphones at 50 packets/s, two chats at 4 messages/s.

Figures:
  * RSS of every process (broker, each function instance, ingress) after --warmup seconds (the
    baseline: imports, codec tables and client buffers are in place by then) and at the end; growth
    = end / baseline - 1. Required: < 10 % for every process. The broker keeps up to
    DEFAULT_CACHE_BYTES (16 MiB, `--cache-mb`) of recent entries in memory, one budget for all
    topics together (broker/storage.py EntryCache); at these rates it is full within the warm-up.
    With `--retention-minutes 120` (the audit needs the consumed raw topics) the broker holds no
    per-entry memory for acknowledged entries (broker/topic.py: only the unacknowledged part of
    each topic is indexed), so its RSS does not grow with the hours of retained data.
  * msgBacklog of every function subscription (broker admin stats
    /admin/v2/persistent/{tenant}/{ns}/{topic}/stats) every --sample seconds. "Growing" means the
    mean over the last third of the run is above both twice the first third's mean and 50
    messages: a pipeline that keeps up has a small, flat backlog.
  * the audit at the end: frames acknowledged to a publisher that are missing from the output.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for extra in (str(ROOT), str(ROOT / "functions")):
    if extra not in sys.path:
        sys.path.insert(0, extra)

from audit.cli import collect_room  # noqa: E402
from audit.room_audit import LatencyStats, render_text  # noqa: E402
from schemas.framing_codec import Kind  # noqa: E402
from tests.test_faults_harness import RENDITION, Pipeline, rss_kib  # noqa: E402
from tests.test_faults_publisher import WsPublisher, synthetic_frames  # noqa: E402

ROOM = "soak"
STREAMS = ([(f"cam{i}", Kind.VIDEO, 0.1) for i in range(4)] + [(f"mic{i}", Kind.AUDIO, 0.02) for i in range(2)]
           + [(f"chat{i}", Kind.CHAT, 0.25) for i in range(2)])
OUTPUTS = [f"room-{ROOM}-video-{RENDITION}", f"room-{ROOM}-audio", f"room-{ROOM}-chat"]
RSS_TARGET = 0.10  # required: growth below 10 % for every process


def process_pids(pipeline: Pipeline) -> dict[str, int]:
    pids = {"broker": pipeline.broker.proc.pid if pipeline.broker.proc else 0,
            "ingress": pipeline.ingress.pid if pipeline.ingress else 0}
    pids.update({f"function {name}": pid for name, pid in pipeline.instance_pids().items()})
    return pids


def growing(series: list[int]) -> bool:
    if len(series) < 6:
        return False
    third = len(series) // 3
    first, last = statistics.mean(series[:third]), statistics.mean(series[-third:])
    return last > max(2 * first, 50)


async def soak(pipeline: Pipeline, seconds: float, warmup: float, sample: float) -> dict[str, Any]:
    stop = asyncio.Event()
    publishers = [WsPublisher(pipeline.ws_url(ROOM, f"user{i}"), kind, stream,
                              synthetic_frames(kind, stream, ROOM, f"user{i}"), interval)
                  for i, (stream, kind, interval) in enumerate(STREAMS)]
    tasks = [asyncio.create_task(p.run(stop, drain_s=60.0)) for p in publishers]
    started = time.monotonic()
    backlog: dict[str, list[int]] = {}
    times: list[float] = []
    rss_start: dict[str, int | None] = {}
    pids: dict[str, int] = {}
    while time.monotonic() - started < seconds:
        await asyncio.sleep(sample)
        elapsed = time.monotonic() - started
        if not rss_start and elapsed >= warmup:
            pids = process_pids(pipeline)
            rss_start = {name: rss_kib(pid) for name, pid in pids.items()}
        times.append(round(elapsed, 1))
        for sub, value in (await asyncio.to_thread(pipeline.backlogs)).items():
            backlog.setdefault(sub, []).append(value)
        print(f"[soak] {elapsed:6.0f} s  backlog total {sum(v[-1] for v in backlog.values())}", flush=True)
    if not rss_start:  # a run shorter than the warm-up: baseline now
        pids = process_pids(pipeline)
        rss_start = {name: rss_kib(pid) for name, pid in pids.items()}
    now_pids = process_pids(pipeline)
    rss_end = {name: rss_kib(pid) if now_pids.get(name) == pid else None for name, pid in pids.items()}
    stop.set()
    await asyncio.gather(*tasks)
    return {"publishers": publishers, "backlog": backlog, "times": times, "rss_start": rss_start, "rss_end": rss_end}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the 8 streams run (default 10)")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before the RSS baseline (default 60)")
    parser.add_argument("--sample", type=float, default=10.0, help="backlog sampling period, s (default 10)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    seconds = args.minutes * 60.0
    warmup = min(args.warmup, seconds / 3)
    import pulsar

    with tempfile.TemporaryDirectory(prefix="wtpulsar-soak-") as tmp:
        pipeline = Pipeline(Path(tmp))
        try:
            pipeline.start()
            run = asyncio.run(soak(pipeline, seconds, warmup, args.sample))
            confirmed = {p.stream: set(p.ledger.confirmed) for p in run["publishers"]}
            client = pulsar.Client(pipeline.broker.service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
            try:
                deadline = time.monotonic() + 60
                while True:
                    audit = collect_room(client, ROOM, "public", "wtpulsar", ["video", "audio", "chat"], OUTPUTS)
                    missing = audit.confirmed_missing(confirmed)
                    if not missing or time.monotonic() > deadline:
                        break
                    time.sleep(2)
            finally:
                client.close()
        finally:
            pipeline.stop()

    print(f"\nsoak: {len(STREAMS)} streams for {args.minutes:g} min; RSS baseline after {warmup:.0f} s")
    print(f"{'process':<26} {'RSS start MiB':>13} {'RSS end MiB':>12} {'growth':>8}  target < {RSS_TARGET:.0%}")
    rss = {}
    ok = True
    for name, start in run["rss_start"].items():
        end = run["rss_end"].get(name)
        growth = (end / start - 1) if start and end else None
        ok &= growth is not None and growth < RSS_TARGET
        rss[name] = {"start_kib": start, "end_kib": end, "growth": growth}
        shown = f"{growth:+.1%}" if growth is not None else "gone"
        print(f"{name:<26} {(start or 0) / 1024:>13.1f} {(end or 0) / 1024:>12.1f} {shown:>8}")
    from broker.storage import DEFAULT_CACHE_BYTES

    print(f"(broker entry cache: {DEFAULT_CACHE_BYTES / 2**20:.0f} MiB for all topics together, --cache-mb)")
    print(f"\n{'subscription':<60} {'first':>6} {'max':>6} {'last':>6} growing")
    grows = {}
    for sub, series in sorted(run["backlog"].items()):
        grows[sub] = growing(series)
        ok &= not grows[sub]
        print(f"{sub:<60} {series[0]:>6} {max(series):>6} {series[-1]:>6} {'YES' if grows[sub] else 'no'}")
    pubs = {p.stream: {"confirmed": len(p.ledger.confirmed), "unacked": len(p.ledger.unacked),
                       "resent": p.ledger.resent, "sessions": p.sessions} for p in run["publishers"]}
    lost = sum(a[1] - a[0] + 1 for ranges in missing.values() for a in ranges)
    ok &= lost == 0
    print(f"\nframes confirmed to publishers: {sum(p['confirmed'] for p in pubs.values())}, missing from the "
          f"output: {lost}")
    print("\naudit of the room (wtpulsar audit):")
    print(render_text(audit.report()))
    print("\nlatency per hop over the whole run (audit), ms:")
    for hop, values in audit.hop_samples().items():
        stats = LatencyStats.of(values)
        if stats is not None:
            print(f"  {hop:<12} p50 {stats.p50:8.1f}  p95 {stats.p95:8.1f}  p99 {stats.p99:8.1f}  (n={stats.count})")
    print(f"targets (RSS growth < {RSS_TARGET:.0%}, no growing backlog, nothing lost): {'met' if ok else 'NOT met'}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "minutes": args.minutes, "streams": len(STREAMS), "rss": rss, "backlog": run["backlog"],
            "times": run["times"], "backlog_growing": grows, "publishers": pubs,
            "missing": {f"{s}/{r}": v for (s, r), v in missing.items()}, "targets_met": ok,
            "hop_latency_ms": {hop: [round(v, 2) for v in values] for hop, values in audit.hop_samples().items()},
        }, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
