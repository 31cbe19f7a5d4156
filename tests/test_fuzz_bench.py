"""bench/fuzz.py (the long fuzz run) and the `make bench` runner that reports it (bench/run_all.py)."""

from __future__ import annotations

import json
import random
import signal
from pathlib import Path

import pytest

from bench import fuzz, run_all
from tests import test_fuzz_targets


def test_crashes_and_hangs_are_counted_and_saved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def flaky(data: bytes) -> bool:
        if data[:1] == b"\x00":
            raise IndexError("boom")
        if data[:1] == b"\x01":
            signal.pause()  # a hang: only the alarm gets it out
        return True

    monkeypatch.setitem(fuzz.TARGETS, "flaky", flaky)
    monkeypatch.setattr(fuzz, "corpus", lambda name: [b"\x00a", b"\x01b", b"\x02c"])
    monkeypatch.setattr(fuzz, "mutate", lambda rng, seed, seeds: seed)
    signal.signal(signal.SIGALRM, fuzz._on_alarm)
    figures = fuzz.run_one("flaky", 30, random.Random(3), "mutation", 0.05, tmp_path)
    assert figures.inputs == 30
    assert figures.crashes > 0 and figures.hangs > 0
    assert figures.accepted == 30 - figures.crashes - figures.hangs
    assert any("IndexError" in kind for kind in figures.crash_kinds)
    assert (tmp_path / "flaky" / "index.txt").read_text().count("\n") >= 2


def test_fuzz_cli_writes_json_and_refuses_unknown_targets(tmp_path: Path) -> None:
    out = tmp_path / "fuzz.json"
    assert fuzz.main(["--inputs", "40", "--targets", "framing", "--jobs", "1", "--json", str(out),
                      "--crash-dir", str(tmp_path / "crashes")]) == 0
    doc = json.loads(out.read_text())
    assert doc["targets"]["framing"]["mutation"]["inputs"] == 40
    assert doc["targets"]["framing"]["random"]["inputs"] == 4
    with pytest.raises(SystemExit):
        fuzz.main(["--targets", "nope"])
    assert not test_fuzz_targets.TOLERATE_KNOWN_BUGS  # main() restores the suite's setting (the known bugs are fixed)


def test_random_bytes_no_longer_crash_the_topology_loader(tmp_path: Path) -> None:
    # Random bytes are not UTF-8: before the fix every one of them crashed the loader.
    out = tmp_path / "fuzz.json"
    code = fuzz.main(["--inputs", "300", "--targets", "topology", "--jobs", "1", "--seed", "5", "--json", str(out),
                      "--crash-dir", str(tmp_path / "crashes")])
    doc = json.loads(out.read_text())
    assert doc["targets"]["topology"]["random"]["inputs"] > 0
    assert code == 0 and doc["targets"]["topology"]["random"]["crashes"] == 0


def test_run_all_reports_figures_plots_and_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(run_all.QUICK_ARGS, "fuzz", ["--inputs", "30", "--jobs", "1", "--targets", "framing,topology",
                                                     "--tolerate-known"])
    # a module that fails must be reported as failed, not hidden
    monkeypatch.setitem(run_all.QUICK_ARGS, "moderation", ["--no-such-flag"])
    report = tmp_path / "report.md"
    code = run_all.main(["--quick", "--only", "fuzz,moderation", "--out", str(tmp_path / "results"),
                         "--report", str(report)])
    text = report.read_text()
    assert code == 1
    assert "| fuzz | ok |" in text and "**failed (exit 2)**" in text and "**Failed: moderation**" in text
    assert "random (baseline)" in text  # the figures next to their baseline
    assert (tmp_path / "results" / "fuzz_targets.png").stat().st_size > 1000
    assert "![Fuzzing: speed and depth per target](results/fuzz_targets.png)" in text


def test_run_all_reuses_a_saved_run_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(run_all.QUICK_ARGS, "fuzz", ["--inputs", "30", "--jobs", "1", "--targets", "framing",
                                                     "--tolerate-known"])
    results, report = tmp_path / "results", tmp_path / "report.md"
    assert run_all.main(["--quick", "--only", "fuzz", "--out", str(results), "--report", str(report)]) == 0
    first_log = (results / "fuzz.log").read_text()
    assert run_all.main(["--quick", "--only", "fuzz", "--reuse", "fuzz", "--out", str(results),
                         "--report", str(report)]) == 0
    text = report.read_text()
    assert (results / "fuzz.log").read_text() == first_log  # not run again
    assert "reused" in text and "random (baseline)" in text
    assert "![Fuzzing: speed and depth per target](results/fuzz_targets.png)" in text
    # nothing saved: reported as a failure, not as figures
    code = run_all.main(["--quick", "--only", "moderation", "--reuse", "moderation", "--out", str(tmp_path / "empty"),
                         "--report", str(report)])
    assert code == 1 and "could not reuse" in report.read_text()


def test_json_flag_styles_and_trailing_json() -> None:
    assert run_all.json_style("  --json FILE   also write") == "file"
    assert run_all.json_style("  --json      print the raw report as JSON too") == "stdout"
    assert run_all.json_style("  --seconds N") is None
    assert run_all.last_json_object('table\n{\n "a": {"b": 1}\n}\n') == {"a": {"b": 1}}
    assert run_all.last_json_object("no json here {") is None


def test_every_bench_module_is_discovered() -> None:
    found = run_all.discover()
    assert {"fuzz", "soak"} <= set(found) and "run_all" not in found
    assert not [m for m in found if m.startswith("_")]
    assert test_fuzz_targets.TARGETS.keys() == fuzz.TARGETS.keys()
