"""Supervisor restart policy and the CLI's error paths (no broker needed)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from localrun import cli
from localrun.config import ConfigError, FunctionSpec, InputSpec
from localrun.supervisor import InstanceProcess, Supervisor, _describe_exit, run_functions

SPEC = FunctionSpec(tenant="public", namespace="default", name="f", class_name="m.C", py="/m.py",
                    inputs={"in": InputSpec()})


def wait_exit(inst: InstanceProcess) -> None:
    assert inst.process is not None
    inst.process.wait(timeout=10)


def test_crashed_instance_is_restarted_with_doubling_backoff(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    now = [1000.0]
    sup = Supervisor([SPEC], "pulsar://unused", run_dir=str(tmp_path), clock=lambda: now[0])
    inst = InstanceProcess(SPEC, "0", [sys.executable, "-c", "import sys; sys.exit(3)"])
    sup._spawn(inst)
    wait_exit(inst)
    with caplog.at_level("WARNING"):
        assert sup._check(inst, now[0] + 1)
    assert inst.last_exit == "exited with status 3"
    assert inst.restart_at == pytest.approx(now[0] + 1.5)
    assert "exited with status 3; restarting in 0.5 s" in caplog.text
    assert not sup._check(inst, now[0] + 1.2)  # backoff not over yet
    now[0] += 2
    assert sup._check(inst, now[0]) and inst.restarts == 1
    first_pid = inst.pid
    wait_exit(inst)
    sup._check(inst, now[0] + 1)
    assert inst.restart_at == pytest.approx(now[0] + 2.0)  # 0.5 → 1.0
    now[0] += 5
    sup._check(inst, now[0])
    assert inst.restarts == 2 and inst.pid != first_pid
    wait_exit(inst)


def test_backoff_resets_after_a_stable_run(tmp_path: Path) -> None:
    sup = Supervisor([SPEC], "pulsar://unused", run_dir=str(tmp_path), clock=lambda: 0.0)
    inst = InstanceProcess(SPEC, "0", [sys.executable, "-c", "pass"], consecutive_failures=5)
    sup._spawn(inst)
    wait_exit(inst)
    sup._check(inst, 100.0)  # it ran for 100 s before exiting
    assert inst.consecutive_failures == 1 and inst.restart_at == pytest.approx(100.5)


def test_exit_descriptions() -> None:
    assert _describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert _describe_exit(1) == "exited with status 1"


def test_stop_terminates_instances(tmp_path: Path) -> None:
    sup = Supervisor([SPEC], "pulsar://unused", run_dir=str(tmp_path))
    from localrun.supervisor import FunctionRun

    run = FunctionRun(SPEC, [InstanceProcess(SPEC, "0", [sys.executable, "-c", "import time; time.sleep(60)"])])
    sup.functions.append(run)
    sup._spawn(run.instances[0])
    proc = run.instances[0].process
    assert proc is not None
    started = time.monotonic()
    sup.stop(timeout=5)
    assert proc.returncode == -signal.SIGTERM
    assert time.monotonic() - started < 5


def test_run_functions_validates_before_starting(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("className: m.C\npy: /nope.py\ninputs: [in]\n")
    with pytest.raises(ConfigError, match="py"):
        run_functions([bad], "pulsar://unused", run_dir=str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_cli_localrun_rejects_an_invalid_config(tmp_path: Path) -> None:
    code = tmp_path / "m.py"
    code.write_text("")
    bad = tmp_path / "fn.yaml"
    bad.write_text(f"className: m.C\npy: {code}\ninputs: [in]\nprocessingGuarantees: EFFECTIVELY_ONCE\n")
    result = subprocess.run([sys.executable, "-m", "wtpulsar.cli", "functions", "localrun",
                             "--function-config-file", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert str(bad) in result.stderr and "processingGuarantees" in result.stderr
    assert "Effectively-once processing guarantees not yet supported in Python" in result.stderr


def test_cli_status_with_nothing_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = __import__("wtpulsar.cli", fromlist=["build_parser"]).build_parser()
    args = parser.parse_args(["functions", "status", "--run-dir", str(tmp_path)])
    assert args.func(args) == 1
    assert "no running functions" in capsys.readouterr().err
    assert cli.DEFAULT_SERVICE_URL.startswith("pulsar://")
