"""Memory of a sending process: pulsar-client's message pool with and without localrun's SentMessages.

    .venv/bin/python -m bench.sent_messages [--messages N] [--rate R] [--json FILE]

One producer sends N 300-byte messages with two properties to our broker, batched (as a function's
publish and output producers) and unbatched, in two ways:
  * baseline: the public `Producer.send_async`, as any pulsar-client program sends;
  * kept: localrun's `send_keeping` + `SentMessages.release()` after each send, so each message is
    dropped on the sending thread (localrun/sent_messages.py explains why that matters).
Sends are paced at --rate messages a second (default 1,500). A fifth case sends unpaced through
`send_keeping`: above KEEP_UP_TO_PER_SECOND receipts a second localrun stops keeping, so the pool
fills as in the baseline; this row shows that switch.
Each case runs in its own process, because the client's pool is global to a process. The figures
are the growth of malloc'd memory (glibc mallinfo2, bytes in use) and of RSS from just after the
first 200 messages to the end, sampled every N/20 messages, and the send rate.

The requirement this serves: RSS growth < 10 % over the soak for every process. moderate sends about
8 messages a second, so without the change its memory grows for the whole soak (see the docstring
of localrun/sent_messages.py).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

WARMUP = 200
PAYLOAD = b"x" * 300
PROPS = {"__pfn_input_topic__": "persistent://public/default/in", "__pfn_input_msg_id__": "CAEQAjAA"}
CASES = [("baseline", True, None), ("kept", True, None), ("baseline", False, None), ("kept", False, None),
         ("kept", True, 0.0)]  # rate None: --rate; 0: unpaced


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


_libc = ctypes.CDLL("libc.so.6")
_libc.mallinfo2.restype = _MallInfo2


def _malloc_in_use() -> int:
    info = _libc.mallinfo2()
    return int(info.uordblks + info.hblkhd)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_case(service_url: str, way: str, batched: bool, messages: int, rate: float) -> dict[str, Any]:
    """One case, in this process: send, sample, report."""
    import pulsar

    from localrun.sent_messages import SentMessages, send_keeping

    client = pulsar.Client(service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    topic = f"persistent://public/default/bench-sent-{way}-{'b' if batched else 'u'}-{os.getpid()}"
    producer = client.create_producer(topic, batching_enabled=batched, batching_max_publish_delay_ms=10,
                                      block_if_queue_full=True)
    sent = SentMessages()
    acked = [0]

    def on_sent(_result: Any, _msg_id: Any) -> None:
        acked[0] += 1

    def send_one() -> None:
        if way == "kept":
            send_keeping(producer, sent, PAYLOAD, on_sent, properties=PROPS)
            sent.release()
        else:
            producer.send_async(PAYLOAD, on_sent, properties=PROPS)

    for _ in range(WARMUP):
        send_one()
    producer.flush()
    step = max(1, messages // 20)
    samples = [(0, _malloc_in_use(), _rss())]
    interval = 1.0 / rate if rate > 0 else 0.0
    started = time.perf_counter()
    for i in range(1, messages + 1):
        send_one()
        if interval:
            pause = started + i * interval - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        if i % step == 0:
            samples.append((i, _malloc_in_use(), _rss()))
    producer.flush()
    seconds = time.perf_counter() - started
    # what the client still holds once every receipt is in: kept messages older than HOLD_SECONDS go
    time.sleep(0.2)
    sent.release()
    samples.append((messages, _malloc_in_use(), _rss()))
    client.close()
    return {"way": way, "batched": batched, "messages": messages, "acked": acked[0] - WARMUP,
            "seconds": seconds, "samples": samples}


def _child(service_url: str, way: str, batched: bool, messages: int, rate: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.sent_messages", "--case", way, "batched" if batched else "unbatched",
           "--service-url", service_url, "--messages", str(messages), "--rate", str(rate)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"case {way}/{batched} failed (exit {out.returncode}): {out.stderr.strip()[-800:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_all(service_url: str | None, messages: int, rate: float) -> list[dict[str, Any]]:
    from tests.broker_process import BrokerProcess

    with contextlib.ExitStack() as stack:
        if service_url is None:
            service_url = stack.enter_context(BrokerProcess()).service_url
        results = []
        for way, batched, case_rate in CASES:
            case_rate = rate if case_rate is None else case_rate
            print(f"  {way}, {'batched' if batched else 'unbatched'}, {case_rate or 'unpaced'} ...", flush=True)
            result = _child(service_url, way, batched, messages, case_rate)
            result["rate"] = case_rate
            results.append(result)
    return results


def growth(result: dict[str, Any]) -> tuple[float, float]:
    """(malloc'd, RSS) growth in MB from the first sample to the last."""
    first, last = result["samples"][0], result["samples"][-1]
    return (last[1] - first[1]) / 1e6, (last[2] - first[2]) / 1e6


def paced_pair(results: list[dict[str, Any]], batched: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The baseline and kept results at --rate, batched or not."""
    def pick(way: str) -> dict[str, Any]:
        return next(r for r in results if r["way"] == way and r["batched"] is batched and r["rate"])

    return pick("baseline"), pick("kept")


def print_table(results: list[dict[str, Any]]) -> None:
    print(f"\n{'case':<32}{'msgs':>8}{'acked':>8}{'msg/s':>10}{'malloc Δ MB':>13}{'RSS Δ MB':>10}")
    for r in results:
        heap, rss = growth(r)
        label = f"{r['way']}, {'batched' if r['batched'] else 'unbatched'}{'' if r['rate'] else ', unpaced'}"
        print(f"{label:<32}{r['messages']:>8}{r['acked']:>8}{r['messages'] / r['seconds']:>10.0f}"
              f"{heap:>13.2f}{rss:>10.2f}")
    print("\nmalloc'd MB growth after each fifth of the sends (baseline | kept):")
    for batched in (True, False):
        base, kept = paced_pair(results, batched)
        b0, k0 = base["samples"][0][1], kept["samples"][0][1]
        cells = " ".join(f"{(b[1] - b0) / 1e6:4.1f}|{(k[1] - k0) / 1e6:3.1f}"
                         for b, k in zip(base["samples"][4:21:4], kept["samples"][4:21:4], strict=True))
        print(f"  {'batched' if batched else 'unbatched':<10} {cells}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sent_messages", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20_000, help="messages per case (default 20,000)")
    parser.add_argument("--rate", type=float, default=1500.0, help="messages per second (default 1,500); 0 = unpaced")
    parser.add_argument("--service-url", default=None, help="use this broker (default: start our own)")
    parser.add_argument("--json", metavar="FILE", default=None, help="also write the figures and samples here")
    parser.add_argument("--case", nargs=2, metavar=("WAY", "BATCHING"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        way, batching = args.case
        print(json.dumps(run_case(args.service_url, way, batching == "batched", args.messages, args.rate)))
        return 0
    print(f"sent messages: {args.messages} per case, rate {args.rate or 'unpaced'}/s", flush=True)
    results = run_all(args.service_url, args.messages, args.rate)
    print_table(results)
    for batched in (True, False):
        base, kept = paced_pair(results, batched)
        print(f"{'batched' if batched else 'unbatched'} at {args.rate:.0f}/s: kept grows {growth(kept)[0]:.2f} MB "
              f"against the baseline's {growth(base)[0]:.2f} MB")
    unpaced = next(r for r in results if not r["rate"])
    print(f"unpaced ({unpaced['messages'] / unpaced['seconds']:.0f}/s, above KEEP_UP_TO_PER_SECOND): kept grows "
          f"{growth(unpaced)[0]:.2f} MB (not kept: the client's pool fills as in the baseline)")
    if args.json:
        Path(args.json).write_text(json.dumps({"messages": args.messages, "rate": args.rate, "results": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
