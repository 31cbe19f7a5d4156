"""Turn raw runs into figures, judge them against the broker's targets (below), print the table, write the JSON."""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from bench._broker_load import RunResult, Scenario

MB = 1_000_000  # bytes: MB/s in this report are decimal megabytes

@dataclass(frozen=True)
class Figures:
    broker: str
    broker_label: str
    scenario: str
    title: str
    size: int
    """Payload bytes."""
    batching: bool
    rate: float | None
    """Offered msg/s of a paced run; None when unpaced."""
    sent: int
    received: int
    """Distinct messages that arrived."""
    lost: int
    duplicated: int
    unexpected: int
    """Deliveries with an id never sent or a body of the wrong size."""
    send_failed: int
    seconds: float
    """First send to last new delivery."""
    msg_per_s: float
    """Distinct messages received per second, end to end."""
    mb_per_s: float
    publish_msg_per_s: float
    """Sends per second until flush() returned: what the broker took in."""
    p50_ms: float | None
    p99_ms: float | None
    broker_cpu_us_per_msg: float | None
    """Broker CPU time (user + system) per distinct message received, microseconds."""
    client_cpu_us_per_msg: float | None
    gave_up: str | None
    error: str | None
    target: str
    passed: bool


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending sequence (fraction in (0, 1])."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


# The broker's required figures on a 2-core machine, per scenario, on top of zero lost and
# zero duplicated which every scenario must show.
TARGETS: dict[str, tuple[str, Callable[[Figures], bool]]] = {
    "tput-64k": (">= 50 MB/s", lambda f: f.mb_per_s >= 50),
    "batch-1k": (">= 20000 msg/s", lambda f: f.msg_per_s >= 20_000),
    "lat-1k": ("p99 < 5 ms", lambda f: f.p99_ms is not None and f.p99_ms < 5),
}


def figures(broker: str, broker_label: str, scenario: Scenario, run: RunResult) -> Figures:
    latencies = sorted(run.latencies_ms)
    p50 = percentile(latencies, 0.50) if latencies else None
    p99 = percentile(latencies, 0.99) if latencies else None
    received = run.tally.received
    seconds = run.elapsed
    msg_per_s = received / seconds if seconds > 0 else 0.0
    extra, test = TARGETS.get(scenario.key, ("", lambda _f: True))
    target = "0 lost, 0 dup" + (f", {extra}" if extra else "")
    draft = Figures(
        broker=broker, broker_label=broker_label, scenario=scenario.key, title=scenario.title, size=scenario.size,
        batching=scenario.batching, rate=scenario.rate, sent=run.sent, received=received, lost=run.tally.lost,
        duplicated=run.tally.duplicated, unexpected=run.tally.unexpected, send_failed=run.send_failed,
        seconds=seconds, msg_per_s=msg_per_s, mb_per_s=msg_per_s * scenario.size / MB,
        publish_msg_per_s=run.sent / run.publish_elapsed if run.publish_elapsed > 0 else 0.0,
        p50_ms=p50, p99_ms=p99, broker_cpu_us_per_msg=_per_message_us(run.broker_cpu_s, received),
        client_cpu_us_per_msg=_per_message_us(run.client_cpu_s, received), gave_up=run.gave_up, error=run.error, target=target, passed=False)
    clean = draft.error is None and draft.sent > 0 and draft.lost == 0 and draft.duplicated == 0 \
        and draft.unexpected == 0
    return Figures(**{**asdict(draft), "passed": clean and test(draft)})


def _per_message_us(cpu_s: float | None, messages: int) -> float | None:
    return None if cpu_s is None or messages == 0 else cpu_s / messages * 1e6


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_table(rows: Sequence[Figures]) -> str:
    header = (f"{'broker':<18} {'scenario':<28} {'msg/s':>9} {'MB/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'sent':>8} {'lost':>7} {'dup':>7} {'CPU us/msg':>10}  {'target':<30} result")
    lines = [header, "-" * len(header)]
    for f in rows:
        lines.append(f"{f.broker_label:<18} {f.title:<28} {f.msg_per_s:>9.0f} {f.mb_per_s:>7.1f} {_ms(f.p50_ms):>7} "
                     f"{_ms(f.p99_ms):>7} {f.sent:>8} {f.lost:>7} {f.duplicated:>7} {_us(f.broker_cpu_us_per_msg):>10}  "
                     f"{f.target:<30} "
                     f"{'PASS' if f.passed else 'FAIL'}")
    notes = [f"  {f.broker_label} / {f.title}: {why}" for f in rows
             for why in (f.error, f.gave_up and f"gave up waiting: {f.gave_up}",
                         f.unexpected and f"{f.unexpected} deliveries with an unknown id or wrong size",
                         f.send_failed and f"{f.send_failed} sends failed") if why]
    if notes:
        lines += ["", "notes:", *notes]
    return "\n".join(lines)


def machine() -> dict[str, object]:
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}


def write_json(path: Path, rows: Sequence[Figures], settings: dict[str, object]) -> None:
    doc = {"benchmark": "broker", "machine": machine(), "settings": settings,
           "all_passed_for": {b: all(f.passed for f in rows if f.broker == b) for b in dict.fromkeys(f.broker for f in rows)},
           "results": [asdict(f) for f in rows]}
    path.write_text(json.dumps(doc, indent=2) + "\n")
