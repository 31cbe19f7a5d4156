"""bench/broker.py: the payload/tally arithmetic, the target judgement, bad CLI input, and a --quick run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench._broker_load import RunResult, Scenario
from bench._broker_payload import MIN_SIZE, ArrivalCounter, PayloadFactory, Tally, parse
from bench._broker_report import figures, format_table, percentile
from bench.broker import SCENARIOS, main

REPO = Path(__file__).resolve().parent.parent


def test_payload_round_trip_keeps_id_time_and_size() -> None:
    factory = PayloadFactory(1024)
    data = factory.make(123_456, 987_654_321)
    assert len(data) == 1024
    assert parse(data) == (123_456, 987_654_321)


def test_payload_rejects_sizes_below_the_header() -> None:
    with pytest.raises(ValueError, match="below the 16-byte header"):
        PayloadFactory(MIN_SIZE - 1)
    with pytest.raises(ValueError, match="shorter than the 16-byte header"):
        parse(b"\x00" * 5)


def test_counter_finds_lost_duplicated_and_unexpected() -> None:
    counter = ArrivalCounter()
    for ident in (0, 1, 1, 3, 3, 3, 70_000):  # 2 never arrives; 70_000 was never sent
        counter.add(ident)
    counter.add_malformed()
    assert counter.tally(sent=4) == Tally(received=3, lost=1, duplicated=3, unexpected=2)


def test_counter_with_nothing_received_counts_everything_lost() -> None:
    assert ArrivalCounter().tally(sent=10) == Tally(received=0, lost=10, duplicated=0, unexpected=0)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([7.0], 0.99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 0.5)


def _run(sent: int, received: int, duplicated: int, elapsed: float, latencies: list[float] | None = None) -> RunResult:
    return RunResult(sent=sent, tally=Tally(received, sent - received, duplicated, 0), elapsed=elapsed,
                     publish_elapsed=elapsed, latencies_ms=latencies or [])


def test_targets_pass_and_fail_on_the_figures() -> None:
    by_key = {s.key: s for s in SCENARIOS}
    fast_64k = figures("ours", "ours", by_key["tput-64k"], _run(1000, 1000, 0, 1.0))  # 65.5 MB/s
    slow_64k = figures("ours", "ours", by_key["tput-64k"], _run(700, 700, 0, 1.0))  # 45.9 MB/s
    assert fast_64k.passed and fast_64k.mb_per_s == pytest.approx(65.536)
    assert not slow_64k.passed
    assert figures("ours", "ours", by_key["batch-1k"], _run(20_000, 20_000, 0, 1.0)).passed
    assert not figures("ours", "ours", by_key["batch-1k"], _run(19_999, 19_999, 0, 1.0)).passed
    quick = [1.0] * 99 + [4.9]
    assert figures("ours", "ours", by_key["lat-1k"], _run(100, 100, 0, 0.1, quick)).passed
    slow = [1.0] * 98 + [6.0, 6.0]
    assert not figures("ours", "ours", by_key["lat-1k"], _run(100, 100, 0, 0.1, slow)).passed


def test_a_lost_or_duplicated_message_fails_even_when_fast() -> None:
    scenario = Scenario("tput-1k", "1 KB", 1024, batching=False)
    lossy = figures("lite", "lite", scenario, _run(10_000, 9_999, 0, 0.1))
    doubled = figures("lite", "lite", scenario, _run(10_000, 10_000, 5, 0.1))
    assert (lossy.lost, lossy.passed) == (1, False)
    assert (doubled.duplicated, doubled.passed) == (5, False)
    table = format_table([lossy, doubled])
    assert table.count("FAIL") == 2 and "0 lost, 0 dup" in table


def test_an_error_is_a_failed_row_with_a_note() -> None:
    run = _run(0, 0, 0, 0.0)
    run.error = "ConnectError: Connection refused"
    row = figures("lite", "lite", SCENARIOS[0], run)
    assert not row.passed
    assert "ConnectError: Connection refused" in format_table([row])


@pytest.mark.parametrize("argv, complaint", [(["--only", "kafka"], "invalid choice"), (["--seconds", "x"], "invalid float")])
def test_bad_arguments_are_refused_by_name(argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert complaint in capsys.readouterr().err


def test_non_positive_seconds_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seconds", "0"]) == 2
    assert "--seconds must be positive" in capsys.readouterr().err


def test_quick_run_reports_every_broker_and_scenario_and_ours_loses_nothing(tmp_path: Path) -> None:
    """The real thing, small: both brokers as child processes, the official client, a JSON report."""
    have_lite = True
    try:
        import pulsar_lite  # noqa: F401
    except ImportError:
        have_lite = False
    out = tmp_path / "bench.json"
    argv = [sys.executable, "-m", "bench.broker", "--quick", "--json", str(out)] + ([] if have_lite else ["--only", "ours"])
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = report["results"]
    brokers = ["ours", "ours-fsync", "lite"] if have_lite else ["ours"]
    assert sorted((r["broker"], r["scenario"]) for r in rows) == sorted((b, s.key) for b in brokers for s in SCENARIOS)
    for row in (r for r in rows if r["broker"].startswith("ours")):
        assert row["error"] is None, row
        assert row["sent"] > 0 and row["received"] == row["sent"], row
        assert (row["lost"], row["duplicated"], row["unexpected"]) == (0, 0, 0), row
    latency = next(r for r in rows if r["broker"] == "ours" and r["scenario"] == "lat-1k")
    assert latency["p50_ms"] is not None and 0 < latency["p50_ms"] <= latency["p99_ms"]
    for broker in brokers:  # the table on stdout names each broker once per scenario
        label = next(r["broker_label"] for r in rows if r["broker"] == broker)
        assert done.stdout.count(label) >= len(SCENARIOS)
