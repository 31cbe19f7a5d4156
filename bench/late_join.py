"""Time to first frame for a late joiner of a room topic holding an hour of retained video.

    .venv/bin/python -m bench.late_join [--quick] [--minutes 60] [--payload-bytes 512] [--runs 3]

Writes a room topic as route would: an init segment, then MINUTES of 30 fps fragments (a keyframe
fragment every 60) written as fast as the broker takes them, and from then on a live part paced at
30 fps that goes on while viewers join. A second topic holds only an init and the live part (a new
stream). A WebTransport viewer then joins each, RUNS times, on an ingress that finds the join point
from the topic's end (ingress/join_from_end.py) and, as the baseline in the same run, on one that
reads the topic from its start (IngressConfig.join_from_end=False, the behaviour before). Time to
first frame = CONNECT sent -> first video DELIVERY parsed. Payloads are smaller than 1 Mbit/s video
(--payload-bytes) so the hour is written in about a minute: the read from the start is then cheaper
than with real fragments, not dearer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ingress.names import room_topic_url

NS = room_topic_url("public", "wtpulsar", "")  # route writes room topics into the rooms namespace
FPS, GOP = 30, 60
SECRET = b"j" * 64


def props(n: int | None, init: bool = False) -> dict[str, str]:
    out = {"stream": "cam", "user": "pub", "rendition": "360p", "codec_string": "avc1.42e01e", "width": "640",
           "height": "360", "segment_type": "init" if init else "media"}
    if n is not None:
        out.update(keyframe="1" if n % GOP == 0 else "0", first_seq=str(n), last_seq=str(n))
    return out


class LiveWriter:
    """The live part: one fragment per 1/30 s on each topic until stopped."""

    def __init__(self, producers: dict[str, Any], first: dict[str, int], payload: bytes) -> None:
        self.producers, self.next, self.payload = producers, dict(first), payload
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        ticks = 0
        while not self.stop.is_set():
            for topic, producer in self.producers.items():
                n = self.next[topic]
                producer.send_async(self.payload, None, properties=dict(props(n), t_route=f"{time.time() * 1000:.0f}"))
                self.next[topic] = n + 1
            ticks += 1
            time.sleep(max(0.0, start + ticks / FPS - time.monotonic()))


def write_history(client: Any, topic: str, minutes: float, payload: bytes) -> tuple[Any, int, float]:
    producer = client.create_producer(NS + topic, batching_enabled=False, max_pending_messages=5000,
                                      block_if_queue_full=True)
    t0 = time.monotonic()
    producer.send(b"init", properties=props(None, init=True))
    count = int(minutes * 60 * FPS)
    for n in range(count):
        producer.send_async(payload, None, properties=props(n))
    producer.flush()
    return producer, count, time.monotonic() - t0


async def first_frame(wt_url: str, token: str) -> float:
    from clients.webtransport import open_webtransport
    from schemas.framing_codec import Delivery, Kind

    t0 = time.monotonic()
    async with open_webtransport(f"{wt_url}?token={token}&mode=view&kinds=video", timeout=120) as client:
        await client.wait_for(lambda s: any(isinstance(r, Delivery) and r.kind == Kind.VIDEO and
                                            r.properties.get("segment_type") == "media" for _, r in s.records), 300)
        return (time.monotonic() - t0) * 1000.0


async def measure(broker_url: str, state: Path, from_end: bool, rooms: list[str], runs: int) -> dict[str, list[float]]:
    from ingress.config import IngressConfig
    from ingress.server import start_ingress

    config = IngressConfig(listen="127.0.0.1:0", http="127.0.0.1:0", broker_service_url=broker_url, state_dir=state,
                           secret=SECRET, join_from_end=from_end)
    handle = await start_ingress(config)
    out: dict[str, list[float]] = {room: [] for room in rooms}
    try:
        for _ in range(runs):
            for room in rooms:
                out[room].append(await first_frame(handle.wt_url, handle.issue_token(room, "late", "viewer")))
                while handle.app.egress.feeds:  # the feed closes with its last viewer: the next join starts cold
                    await asyncio.sleep(0.01)
    finally:
        await handle.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.late_join", description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--minutes", type=float, default=60.0, help="retained video before the live part")
    ap.add_argument("--payload-bytes", type=int, default=512)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="10 minutes of history, 128-byte payloads, 1 run")
    ap.add_argument("--json", metavar="FILE", type=Path, help="write the figures as JSON")
    args = ap.parse_args(argv)
    if args.quick:
        args.minutes, args.payload_bytes, args.runs = 10.0, 128, 1

    import pulsar

    from tests.broker_process import BrokerProcess

    load_start = os.getloadavg()[0]
    payload = os.urandom(args.payload_bytes)
    long_room, new_room = "longroom", "newroom"
    with tempfile.TemporaryDirectory(prefix="wtpulsar-latejoin-") as tmp:
        broker = BrokerProcess(Path(tmp) / "broker-data")
        broker.start()
        client = pulsar.Client(broker.service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
        live: LiveWriter | None = None
        try:
            print(f"bench: writing {args.minutes:g} min of 30 fps fragments ...", file=sys.stderr, flush=True)
            long_topic, new_topic = f"room-{long_room}-video-360p", f"room-{new_room}-video-360p"
            long_producer, count, took = write_history(client, long_topic, args.minutes, payload)
            new_producer = client.create_producer(NS + new_topic, batching_enabled=False)
            new_producer.send(b"init", properties=props(None, init=True))
            live = LiveWriter({long_topic: long_producer, new_topic: new_producer}, {long_topic: count, new_topic: 0},
                              payload)
            live.thread.start()
            time.sleep(3.0)  # a little live video on both topics
            results = {}
            for from_end in (True, False):
                label = "from the end" if from_end else "from the start (baseline)"
                print(f"bench: joining {label} ...", file=sys.stderr, flush=True)
                results[label] = asyncio.run(measure(broker.service_url, Path(tmp) / "state", from_end,
                                                     [long_room, new_room], args.runs))
        finally:
            if live is not None:
                live.stop.set()
                live.thread.join(5)
            client.close()
            broker.close()
    print(f"\nlate join: time to first frame (CONNECT -> first video fragment), {args.runs} run(s) each, median; "
          f"history {args.minutes:g} min = {count} fragments of {args.payload_bytes} B written in {took:.1f} s, "
          "then live at 30 fps")
    print(f"{'ingress':<28} {'topic with history':>20} {'new topic':>12}")
    for label, rooms in results.items():
        print(f"{label:<28} {statistics.median(rooms[long_room]):>17.0f} ms {statistics.median(rooms[new_room]):>9.0f} ms")
    end = results["from the end"]
    base = results["from the start (baseline)"]
    print(f"late join: {statistics.median(end[long_room]):.0f} ms on a {args.minutes:g}-minute topic vs "
          f"{statistics.median(end[new_room]):.0f} ms on a new one (baseline from the start: "
          f"{statistics.median(base[long_room]):.0f} ms)")
    print(f"load average at the start: {load_start:.2f}, at the end: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    if args.json:
        args.json.write_text(json.dumps({"minutes": args.minutes, "fragments": count, "ms": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
