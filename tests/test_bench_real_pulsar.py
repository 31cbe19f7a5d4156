"""bench/real_pulsar.py: a --quick run against Apache Pulsar standalone gives both columns and every verdict.

Only the shape of the output is checked, never the speeds (the machine is shared).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.real_pulsar import PipelineRun, verdicts
from realpulsar.distribution import DistributionError
from tests.realpulsar_support import REPO, unavailable

TARGETS = ["embedded broker p99 <= Pulsar p99 at 1,000 msg/s",
           "embedded broker throughput >= 0.5x Pulsar's (1 KB, max rate)",
           "embedded broker throughput >= 0.5x Pulsar's (64 KB, max rate)",
           "embedded broker throughput >= 0.5x Pulsar's (1 KB batched, max rate)",
           "pipeline end-to-end p50 on Pulsar <= 1.5x ours"]


def test_verdicts_are_unknown_without_figures_and_judge_the_end_to_end_ratio() -> None:
    ours = PipelineRun("ours", "x", end_to_end_ms={"count": 1, "p50": 40.0, "p95": 0, "p99": 0})
    slow = PipelineRun("pulsar", "y", end_to_end_ms={"count": 1, "p50": 61.0, "p95": 0, "p99": 0})
    found = {v.target: v for v in verdicts({}, {"ours": ours, "pulsar": slow})}
    assert list(found) == TARGETS
    assert all(found[t].passed is None for t in TARGETS[:4])
    assert found[TARGETS[4]].passed is False
    slow.end_to_end_ms = {"count": 1, "p50": 60.0, "p95": 0, "p99": 0}
    assert verdicts({}, {"ours": ours, "pulsar": slow})[4].passed is True


@pytest.mark.pulsar
def test_quick_run_prints_both_columns_and_writes_every_figure(tmp_path: Path) -> None:
    from realpulsar.cli import prepare

    try:
        prepare(log=lambda _line: None)
    except DistributionError as exc:
        unavailable(str(exc))
    out = tmp_path / "real_pulsar.json"
    done = subprocess.run([sys.executable, "-m", "bench.real_pulsar", "--quick", "--json", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = done.stdout
    for heading in ("1. broker: produce -> consume", "2. pipeline: transcode -> chunk -> route", "targets:"):
        assert heading in text, text
    for target in TARGETS:
        assert any(line.endswith(tuple("0123456789-")) and target in line for line in text.splitlines()), target

    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "real_pulsar" and doc["settings"]["quick"] is True
    for system in ("ours", "pulsar"):
        rows = {r["scenario"]: r for r in doc["broker"][system]}
        assert set(rows) == {"tput-1k", "tput-64k", "batch-1k", "lat-1k"}, rows
        assert all(r["sent"] > 0 and r["error"] is None for r in rows.values()), \
            [(system, k, r["sent"], r["error"], r["gave_up"]) for k, r in rows.items()]
        assert rows["lat-1k"]["p50_ms"] is not None and rows["lat-1k"]["p99_ms"] is not None
        run = doc["pipeline"][system]
        assert run["error"] is None, run
        assert run["paced_sent"] > 0 and run["paced_audited"] > 0 and run["backlog_sent"] > 0
        assert run["backlog_out"] > 0 and run["max_fps"] > 0
        assert set(run["end_to_end_ms"]) == {"count", "p50", "p95", "p99"}
        for hop in ("transcode", "chunk", "route", "to_viewer"):
            assert run["hops_ms"][hop]["count"] > 0, (system, hop, run["hops_ms"])
    assert [v["target"] for v in doc["verdicts"]] == TARGETS
    assert all(isinstance(v["passed"], bool) for v in doc["verdicts"]), doc["verdicts"]
