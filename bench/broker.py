"""Our broker against pulsar-lite 0.2.0, side by side in one run, both driven by the official pulsar-client.

    .venv/bin/python -m bench.broker [--quick] [--only ours|lite] [--json FILE] [--seconds N]

Scenarios (the broker's required benchmark), each on a fresh topic in public/default, consumer subscribed first:

* 1 KB and 64 KB unbatched: a producer sends as fast as it can (send_async, block_if_queue_full) while
  a consumer receives and acks; end-to-end msg/s and MB/s (1 MB = 10^6 bytes).
* 1 KB batched (batching_enabled=True, the client's default batch limits): msg/s.
* 1 KB at a fixed 1,000 msg/s, unbatched: per-message latency p50/p99 (send → receive, one clock).

Every scenario compares the ids received with the ids sent: lost = never arrived (a broker that goes
quiet is given up on after a stall timeout), duplicated = arrived more than once. "CPU us/msg" is the
broker process's user + system CPU time per message received: unlike the rates, it stays meaningful
when other work shares the machine.

Both brokers are child processes; this process is the client (producer and consumer on two
connections). On a small machine the client and the broker share the cores, and the Python client
itself costs ~30 us per send_async: that caps what any broker can show here.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench._broker_load import Limits, Scenario, run_scenario
from bench._broker_report import Figures, figures, format_table, machine, write_json
from bench._broker_servers import BROKER_NAMES, RunningBroker, process_cpu_seconds, run_broker

KB = 1024  # bytes
WARM_UP_SECONDS = 0.5
SCENARIOS = (
    Scenario("tput-1k", "1 KB, max rate", 1 * KB, batching=False),
    Scenario("tput-64k", "64 KB, max rate", 64 * KB, batching=False),
    Scenario("batch-1k", "1 KB batched, max rate", 1 * KB, batching=True),
    Scenario("lat-1k", "1 KB at 1000 msg/s (latency)", 1 * KB, batching=False, rate=1000.0),
)


def limits_for(quick: bool, seconds: float | None) -> Limits:
    if quick:
        return Limits(seconds=seconds or 1.0, stall=5.0, drain_limit=15.0, send_timeout_ms=10_000, operation_timeout_s=10)
    return Limits(seconds=seconds or 5.0, stall=5.0, drain_limit=30.0, send_timeout_ms=10_000, operation_timeout_s=10)


def run_all(brokers: list[str], limits: Limits, log: Path, progress: bool = True) -> list[Figures]:
    rows: list[Figures] = []
    for name in brokers:
        with run_broker(name) as broker:
            rows += run_scenarios(broker, limits, log, progress)
    return rows


def run_scenarios(broker: RunningBroker, limits: Limits, log: Path, progress: bool = True) -> list[Figures]:
    """Every scenario against one running broker (any Pulsar-protocol broker: bench/real_pulsar.py uses it too)."""
    rows: list[Figures] = []
    # Untimed warm-up: the first connection, lookup and topic of a fresh broker (and, for ours,
    # a lazy import in its first housekeeping tick) are start-up costs, not steady state.
    run_scenario(broker.service_url, SCENARIOS[0], replace(limits, seconds=WARM_UP_SECONDS), log)
    for scenario in SCENARIOS:
        if progress:
            print(f"  {broker.label}: {scenario.title} ...", file=sys.stderr, flush=True)
        broker_cpu, client_cpu = process_cpu_seconds(broker.pid), time.process_time()
        run = run_scenario(broker.service_url, scenario, limits, log)
        broker_after = process_cpu_seconds(broker.pid)
        run.client_cpu_s = time.process_time() - client_cpu
        run.broker_cpu_s = None if broker_cpu is None or broker_after is None else broker_after - broker_cpu
        rows.append(figures(broker.name, broker.label, scenario, run))
    return rows


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.broker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 s per scenario and short timeouts (a smoke run)")
    parser.add_argument("--only", choices=BROKER_NAMES, help="run one broker only")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures to FILE as JSON")
    parser.add_argument("--seconds", type=float, default=None, metavar="N",
                        help="how long each scenario's producer sends (default 5, or 1 with --quick)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.seconds is not None and args.seconds <= 0:
        print(f"--seconds must be positive, got {args.seconds}", file=sys.stderr)
        return 2
    limits = limits_for(args.quick, args.seconds)
    brokers = [args.only] if args.only else list(BROKER_NAMES)
    started = time.monotonic()
    load_at_start = _load_average()
    with tempfile.TemporaryDirectory(prefix="bench-broker-") as tmp:
        client_log = Path(tmp) / "pulsar-client.log"
        rows = run_all(brokers, limits, client_log)
        warnings = client_log.read_text(errors="replace").count("\n") if client_log.exists() else 0
    info = machine()
    print(f"\nbroker benchmark: {limits.seconds:g} s of sending per scenario, stall timeout {limits.stall:g} s; "
          f"pulsar-client {_client_version()} ({warnings} client log lines at WARN or above)\n"
          f"{info['cpus']} CPUs shared by the broker and this client process (producer + consumer threads); "
          f"load average at start {load_at_start}: figures from a busy machine are lower and noisier")
    print(format_table(rows))
    print(f"\ntook {time.monotonic() - started:.0f} s")
    if args.json:
        write_json(args.json, rows, {"seconds": limits.seconds, "stall_s": limits.stall, "quick": args.quick,
                                     "brokers": brokers, "load_average_at_start": load_at_start})
    return 0


def _load_average() -> str:
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "unknown"


def _client_version() -> str:
    from importlib.metadata import version

    return version("pulsar-client")


if __name__ == "__main__":
    sys.exit(main())
