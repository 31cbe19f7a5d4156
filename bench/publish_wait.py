"""How long a function's output waits before it leaves, for each way of publishing.

    .venv/bin/python -m bench.publish_wait [--pulsar] [--messages 300] [--rate 30] [--burst 20000]

For one broker (the embedded one, and with --pulsar also an Apache Pulsar 4.0.8 standalone) it sends
`--messages` small messages at `--rate` a second (a live stream: one message per frame) through
producers configured like each candidate, and measures send -> a consumer's receipt, in one process
(one clock):

- batched:   what `context.publish` and a returned output get from Pulsar's Python instance
             (batching on, 10 ms maximum publish delay): today's behaviour, the baseline;
- unbatched: candidate (a), a producer of the instance's own client with batching off
             (functions/immediate_publish.py);
- flush:     candidate (b), the instance's batched producer, `flush()` after every send (reachable
             only through the instance's private producer map); `flush()` blocks the calling
             (processing) thread, so its time is shown too;
- deliver_at: candidate (c), `context.publish` with `deliver_at` (a time already past) in
             message_conf: the C++ client never batches a message with a delivery time.

Then the cost side: `--burst` 100-byte messages sent as fast as the client takes them (chat or audio
at their worst), batched vs unbatched, in messages a second until every receipt arrived; and the TCP
connections the process holds to the broker with one vs four producers on one client.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

CANDIDATES = ("batched", "unbatched", "flush", "deliver_at")


def _producer(client: Any, topic: str, batched: bool) -> Any:
    import pulsar

    options: dict[str, Any] = {"block_if_queue_full": True, "compression_type": pulsar.CompressionType.NONE,
                               "batching_enabled": batched}
    if batched:
        options["batching_max_publish_delay_ms"] = 10
    return client.create_producer(topic, **options)


def latency(client: Any, topic: str, candidate: str, messages: int, rate: float) -> dict[str, Any]:
    import pulsar

    consumer = client.subscribe(topic, f"bench-{candidate}", consumer_type=pulsar.ConsumerType.Exclusive)
    producer = _producer(client, topic, batched=candidate != "unbatched")
    sent: dict[int, float] = {}
    got: dict[int, float] = {}
    batch_indexes: list[int] = []
    blocked: list[float] = []

    def receive() -> None:
        while len(got) < messages:
            try:
                msg = consumer.receive(timeout_millis=5000)
            except Exception:  # noqa: BLE001 - timeout: give up
                return
            got[int(msg.data())] = time.perf_counter()
            batch_indexes.append(msg.message_id().batch_index())
            consumer.acknowledge(msg)

    reader = threading.Thread(target=receive, daemon=True)
    reader.start()
    interval = 1.0 / rate
    start = time.perf_counter()
    for i in range(messages):
        time.sleep(max(0.0, start + i * interval - time.perf_counter()))
        conf: dict[str, Any] = {"partition_key": "cam", "properties": {"seq": str(i)}}
        if candidate == "deliver_at":
            conf["deliver_at"] = int(time.time() * 1000) - 1000
        sent[i] = time.perf_counter()
        producer.send_async(str(i).encode(), lambda res, mid: None, **conf)
        if candidate == "flush":
            t0 = time.perf_counter()
            producer.flush()
            blocked.append((time.perf_counter() - t0) * 1000)
    reader.join(timeout=10)
    producer.close()
    consumer.close()
    lat = sorted((got[i] - sent[i]) * 1000 for i in got)
    out: dict[str, Any] = {"received": len(lat), "p50_ms": statistics.median(lat) if lat else None,
                           "p95_ms": lat[int(0.95 * len(lat))] if lat else None,
                           "unbatched_share": sum(1 for b in batch_indexes if b == -1) / max(1, len(batch_indexes))}
    if blocked:
        out["flush_blocks_p50_ms"] = statistics.median(blocked)
    return out


def burst(client: Any, topic: str, batched: bool, count: int) -> float:
    producer = _producer(client, topic, batched)
    done = threading.Event()
    left = [count]
    lock = threading.Lock()

    def receipt(res: Any, mid: Any) -> None:
        with lock:
            left[0] -= 1
            if left[0] == 0:
                done.set()

    payload = b"x" * 100
    t0 = time.perf_counter()
    for _ in range(count):
        producer.send_async(payload, receipt)
    done.wait(120)
    elapsed = time.perf_counter() - t0
    producer.close()
    return count / elapsed


def broker_connections(port: int) -> int:
    """Established TCP connections of this process to `port` (from /proc)."""
    inodes = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        cols = line.split()
        if cols[9] in inodes and int(cols[2].split(":")[1], 16) == port and cols[3] == "01":
            count += 1
    return count


def run_against(service_url: str, label: str, messages: int, rate: float, burst_count: int,
                topic_prefix: str) -> dict[str, Any]:
    import pulsar

    client = pulsar.Client(service_url, io_threads=1, message_listener_threads=1)  # as the Python instance
    port = int(service_url.rsplit(":", 1)[1])
    stamp = int(time.time())
    try:
        report: dict[str, Any] = {"broker": label, "candidates": {}}
        for candidate in CANDIDATES:
            report["candidates"][candidate] = latency(client, f"{topic_prefix}lat-{candidate}-{stamp}", candidate,
                                                      messages, rate)
        report["burst_msgs_per_s"] = {
            "batched": burst(client, f"{topic_prefix}burst-b-{stamp}", True, burst_count),
            "unbatched": burst(client, f"{topic_prefix}burst-u-{stamp}", False, burst_count),
        }
        producers = [_producer(client, f"{topic_prefix}conn-{i}-{stamp}", False) for i in range(4)]
        report["connections_with_4_producers"] = broker_connections(port)
        for p in producers:
            p.close()
        return report
    finally:
        client.close()


def print_report(reports: list[dict[str, Any]], messages: int, rate: float, burst_count: int) -> None:
    print(f"send -> receipt of {messages} small messages at {rate:.0f}/s, load {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs")
    print(f"{'broker':<18}{'candidate':<12}{'p50 ms':>8}{'p95 ms':>8}{'unbatched':>10}  notes")
    for rep in reports:
        for name, c in rep["candidates"].items():
            note = f"flush() blocks the caller {c['flush_blocks_p50_ms']:.2f} ms p50" if "flush_blocks_p50_ms" in c else ""
            if c["p50_ms"] is None:
                print(f"{rep['broker']:<18}{name:<12}  nothing received")
                continue
            print(f"{rep['broker']:<18}{name:<12}{c['p50_ms']:>8.2f}{c['p95_ms']:>8.2f}{c['unbatched_share']:>9.0%}  {note}")
    print(f"\n{burst_count} x 100-byte messages as fast as possible (msgs/s until every receipt):")
    for rep in reports:
        b = rep["burst_msgs_per_s"]
        print(f"{rep['broker']:<18}batched {b['batched']:>9,.0f}   unbatched {b['unbatched']:>9,.0f}   "
              f"({b['unbatched'] / b['batched']:.0%})   TCP connections, 1 client + 4 producers: "
              f"{rep['connections_with_4_producers']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--burst", type=int, default=20_000)
    parser.add_argument("--pulsar", action="store_true", help="also against Apache Pulsar standalone (cached)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from tests.broker_process import BrokerProcess

    reports = []
    broker = BrokerProcess()
    broker.start()
    try:
        reports.append(run_against(broker.service_url, "embedded broker", args.messages, args.rate, args.burst,
                                   "persistent://public/default/"))
    finally:
        broker.close()
    if args.pulsar:
        from realpulsar.cli import prepare
        from realpulsar.standalone import Standalone, random_ports

        home, worker, java_home = prepare()
        with tempfile.TemporaryDirectory(prefix="publish-wait-") as tmp:
            standalone = Standalone(home=home, data_dir=Path(tmp), java_home=java_home, worker_python=worker,
                                    ports=random_ports(), state=False)
            standalone.start()
            try:
                standalone.admin("namespaces", "create", "public/bench", check=True)
                reports.append(run_against(standalone.service_url, "Pulsar 4.0.8", args.messages, args.rate,
                                           args.burst, "persistent://public/bench/"))
            finally:
                standalone.stop()
    print_report(reports, args.messages, args.rate, args.burst)
    if args.json:
        print(json.dumps(reports, indent=1))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
