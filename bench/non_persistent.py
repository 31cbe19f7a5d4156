"""Non-persistent topics on our broker, beside persistent ones in the same run (the baseline).

    .venv/bin/python -m bench.non_persistent [--quick] [--seconds N]

The scenarios of bench/broker.py (bench/_broker_load.py: one Exclusive consumer subscribed first,
one producer), each run on a persistent topic and then on a non-persistent topic of one
`wtpulsar broker`. A non-persistent topic writes nothing and sends a receipt at once, but drops
what the consumer has no permits for (docs/non-persistent.md): so beside the rates the table shows
how many messages were lost, which is expected there at an unpaced rate and a defect on the
persistent baseline.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from bench._broker_load import run_scenario
from bench._broker_report import figures, percentile
from bench._broker_servers import run_ours
from bench.broker import SCENARIOS, limits_for

DOMAINS = ("persistent", "non-persistent")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.non_persistent", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 s per scenario (a smoke run)")
    parser.add_argument("--seconds", type=float, default=None, metavar="N", help="sending time per scenario")
    args = parser.parse_args(argv)
    if args.seconds is not None and args.seconds <= 0:
        print(f"--seconds must be positive, got {args.seconds}", file=sys.stderr)
        return 2
    limits = limits_for(args.quick, args.seconds)
    load = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-np-") as tmp, run_ours() as broker:
        log = Path(tmp) / "pulsar-client.log"
        run_scenario(broker.service_url, SCENARIOS[0], limits, log)  # untimed warm-up
        for scenario in SCENARIOS:
            for domain in DOMAINS:
                print(f"  {scenario.title}, {domain} ...", file=sys.stderr, flush=True)
                run = run_scenario(broker.service_url, scenario, limits, log, domain=domain)
                row = figures(domain, domain, scenario, run)
                rows.append((scenario.title, domain, row, run))
    print(f"\nnon-persistent against persistent (baseline), wtpulsar broker, {limits.seconds:g} s per scenario; "
          f"{os.cpu_count()} CPUs, load average at start {load:.1f} (busy machines give lower, noisier figures)")
    print(f"{'scenario':<32} {'topic':<15} {'sent':>8} {'delivered':>9} {'lost':>7} {'msg/s':>9} {'publish msg/s':>13} "
          f"{'p50 ms':>7} {'p99 ms':>7}")
    for title, domain, row, run in rows:
        latencies = sorted(run.latencies_ms)
        p50 = f"{percentile(latencies, 0.5):.1f}" if latencies else "-"
        p99 = f"{percentile(latencies, 0.99):.1f}" if latencies else "-"
        print(f"{title:<32} {domain:<15} {row.sent:>8} {row.received:>9} {row.lost:>7} {row.msg_per_s:>9.0f} "
              f"{row.publish_msg_per_s:>13.0f} {p50:>7} {p99:>7}" + (f"  error: {row.error}" if row.error else ""))
    return 0


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    print(f"took {time.monotonic() - started:.0f} s")
    sys.exit(code)
