"""Identity function under localrun vs a bare pulsar-client consume→produce loop, same broker, same run.

    .venv/bin/python -m bench.localrun [--service-url URL] [--messages N] [--latency-messages N]

Both processors run in their own process, consume the same kind of input topic and write an
output topic with the *same* producer settings the official instance uses for its output
(batching on with a 10 ms max delay, LZ4, block when full), and ack each input after its output
send completes. So the difference is what the runtime adds: the listener → Queue(1) → execution
thread hand-off, serde, process() dispatch, stats and the ack bookkeeping.

* throughput: a backlog of N messages is published first; then the processor starts and drains
  it. Outputs/s from the first output the sink receives to the last. Publishing beforehand keeps
  the publisher from competing for the two cores while the processors are measured; the sink
  acks cumulatively (Exclusive subscription) for the same reason.
* latency: messages sent one at a time at a low rate; send → output receipt, p50/p99. At low rate
  each output waits for the 10 ms batch timer, in both processors alike.

Required: localrun ≥ 0.8× the bare loop's throughput; ≤ 1 ms added p50 latency.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

PAYLOAD_PAD = "x" * 90
SUB = "bench-processor"


def output_producer_settings() -> dict[str, object]:
    """What localrun/instance.py (like the official instance) uses for the output producer."""
    import pulsar

    return {"block_if_queue_full": True, "batching_enabled": True, "batching_max_publish_delay_ms": 10,
            "compression_type": pulsar.CompressionType.LZ4, "send_timeout_millis": 0}


def bare_loop(service_url: str, t_in: str, t_out: str, with_props: bool = False) -> None:
    """The baseline: receive → send_async → ack in the send callback. Runs until stdin closes.
    `with_props` adds the two `__pfn_input_*__` properties every official output carries, to show
    how much of the gap is the output format rather than the runtime."""
    import base64
    import threading

    import pulsar

    # Same client logger as localrun's instances: the native one at WARN.
    client = pulsar.Client(service_url, io_threads=1, message_listener_threads=1,
                           logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    consumer = client.subscribe(t_in, SUB, consumer_type=pulsar.ConsumerType.Shared,
                                initial_position=pulsar.InitialPosition.Earliest)
    producer = client.create_producer(t_out, **output_producer_settings())
    stop = threading.Event()

    def stop_at_eof() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=stop_at_eof, daemon=True).start()
    print("ready", flush=True)
    while not stop.is_set():
        try:
            msg = consumer.receive(timeout_millis=200)
        except pulsar.Timeout:
            continue

        def done(result: object, _id: object, msg: object = msg) -> None:
            if result == pulsar.Result.Ok:
                consumer.acknowledge(msg)
            else:
                consumer.negative_acknowledge(msg)

        if with_props:
            props = {"__pfn_input_topic__": msg.topic_name(),
                     "__pfn_input_msg_id__": base64.urlsafe_b64encode(msg.message_id().serialize()).decode()}
            producer.send_async(msg.data(), done, properties=props)
        else:
            producer.send_async(msg.data(), done)
    producer.flush()
    client.close()


@contextlib.contextmanager
def bare_processor(service_url: str, t_in: str, t_out: str, with_props: bool = False) -> Iterator[None]:
    mode = "--bare-loop-props" if with_props else "--bare-loop"
    proc = subprocess.Popen([sys.executable, "-m", "bench.localrun", mode, service_url, t_in, t_out],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        while (line := proc.stdout.readline()) and line.strip() != "ready":
            pass
        if not line:
            raise RuntimeError("the bare loop process died before subscribing")
        yield
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)


@contextlib.contextmanager
def localrun_processor(service_url: str, t_in: str, t_out: str, work: Path, raw_bytes: bool = False) -> Iterator[None]:
    """The identity function under localrun: with the default IdentitySerDe (which tries int,
    float, complex and str on every input, docs/pulsar-functions.md §1.7), or with a pass-through bytes serde as the
    pipeline's own functions use, so that only the runtime's own cost is compared."""
    import yaml

    from localrun.instance import fqfn_dirname
    from localrun.supervisor import run_functions

    module = "bytes_identity" if raw_bytes else "identity"
    fixture = Path(__file__).resolve().parent.parent / "tests" / "localrun_fixtures" / f"{module}.py"
    cfg = work / f"{module}.yaml"
    config: dict[str, object] = {
        "tenant": "public", "namespace": "default", "name": "bench-identity", "className": f"{module}.Identity",
        "py": str(fixture), "output": t_out, "subName": SUB, "subscriptionPosition": "Earliest"}
    if raw_bytes:
        config["inputSpecs"] = {t_in: {"serdeClassName": "bytes_identity.RawBytes"}}
        config["outputSerdeClassName"] = "bytes_identity.RawBytes"
    else:
        config["inputs"] = [t_in]
    cfg.write_text(yaml.safe_dump(config))
    sup = run_functions([cfg], service_url, state_dir=None, run_dir=str(work / "run"), log_level="WARNING")
    try:
        marker = Path(sup.run_dir) / fqfn_dirname("public/default/bench-identity") / "instance-0.json"
        deadline = time.monotonic() + 30
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        yield
    finally:
        sup.stop()


def measure(service_url: str, processor: contextlib.AbstractContextManager[None], t_in: str, t_out: str,
            n_messages: int, n_latency: int) -> dict[str, float]:

    import pulsar

    client = pulsar.Client(service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    sink = client.subscribe(t_out, "bench-sink", consumer_type=pulsar.ConsumerType.Exclusive,
                            initial_position=pulsar.InitialPosition.Earliest, receiver_queue_size=5000)
    # The throughput backlog, published before the processor starts.
    producer = client.create_producer(t_in, batching_enabled=True, batching_max_publish_delay_ms=1,
                                      block_if_queue_full=True, max_pending_messages=5000)
    for seq in range(n_messages):
        producer.send_async(f"{seq}:{PAYLOAD_PAD}".encode(), None)
    producer.flush()
    producer.close()
    latencies: list[float] = []
    with processor:
        # Throughput: drain the backlog, from the first output to the last.
        got = 0
        first = 0.0
        while got < n_messages:
            msgs = sink.batch_receive()
            if msgs:
                if not got:
                    first = time.perf_counter()
                sink.acknowledge_cumulative(msgs[-1])
                got += len(msgs)
        elapsed = time.perf_counter() - first
        # Latency: then one message in flight at a time, low rate.
        lat_producer = client.create_producer(t_in, batching_enabled=False)
        for seq in range(n_latency):
            lat_producer.send(f"lat:{seq}:{time.perf_counter_ns()}".encode())
            msg = sink.receive(timeout_millis=10_000)
            received = time.perf_counter_ns()
            sink.acknowledge(msg)
            sent = int(msg.data().decode().rsplit(":", 1)[1])
            latencies.append((received - sent) / 1e6)
            time.sleep(0.002)
    client.close()
    latencies.sort()
    return {
        "throughput": (n_messages - 1) / elapsed,
        "p50": statistics.median(latencies),
        "p99": latencies[int(len(latencies) * 0.99) - 1],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.localrun", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--service-url", default=None, help="use this broker (default: start our own)")
    parser.add_argument("--messages", type=int, default=30_000)
    parser.add_argument("--latency-messages", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bare-loop", nargs=3, metavar=("URL", "IN", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--bare-loop-props", nargs=3, metavar=("URL", "IN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare_loop:
        bare_loop(*args.bare_loop)
        return 0
    if args.bare_loop_props:
        url, t_in, t_out = args.bare_loop_props
        bare_loop(url, t_in, t_out, with_props=True)
        return 0

    load_at_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    with contextlib.ExitStack() as stack:
        service_url = args.service_url
        if service_url is None:
            from tests.broker_process import BrokerProcess

            service_url = stack.enter_context(BrokerProcess()).service_url
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-localrun-")))
        # Alternate the two processors over several rounds and keep each one's best round, so a
        # burst of load from something else on the machine does not decide the comparison.
        rounds: dict[str, list[dict[str, float]]] = {"bare loop": [], "bare+props": [], "localrun": [], "localrun bytes": []}
        for _ in range(args.rounds):
            for name in rounds:
                tag = uuid.uuid4().hex[:8]
                t_in = f"persistent://public/default/bench-{tag}-in"
                t_out = f"persistent://public/default/bench-{tag}-out"
                processor = (localrun_processor(service_url, t_in, t_out, work, raw_bytes=name == "localrun bytes")
                             if name.startswith("localrun")
                             else bare_processor(service_url, t_in, t_out, with_props=name == "bare+props"))
                rounds[name].append(measure(service_url, processor, t_in, t_out, args.messages,
                                            args.latency_messages))
        results = {name: {"throughput": max(r["throughput"] for r in runs),
                          "median": statistics.median(r["throughput"] for r in runs),
                          "p50": min(r["p50"] for r in runs), "p99": min(r["p99"] for r in runs)}
                   for name, runs in rounds.items()}

    bare = results["bare loop"]
    print(f"load average at start: {load_at_start}")
    print(f"identity function, backlog of {args.messages} msgs of ~100 B drained for throughput, {args.latency_messages} "
          f"one-at-a-time for latency; best of {args.rounds} alternating rounds; broker {service_url}")
    print(f"{'processor':<15} {'msg/s best':>10} {'median':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for name, r in results.items():
        print(f"{name:<15} {r['throughput']:>10.0f} {r['median']:>8.0f} {r['p50']:>8.2f} {r['p99']:>8.2f}")
    print("bare+props = the bare loop adding the two __pfn_input_*__ properties every official output carries")
    print("localrun = default IdentitySerDe (number parsing on every input); localrun bytes = pass-through serde")
    for name in ("localrun", "localrun bytes"):
        ratio = results[name]["throughput"] / bare["throughput"]
        added = results[name]["p50"] - bare["p50"]
        verdict = "PASS" if ratio >= 0.8 and added <= 1.0 else "FAIL"
        print(f"{name}/bare throughput: {ratio:.2f}x (target >= 0.80x)  "
              f"added p50 per hop: {added:+.2f} ms (target <= 1.00 ms)  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
