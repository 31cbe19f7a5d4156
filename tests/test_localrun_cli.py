"""`wtpulsar functions localrun` as a process: status while it runs, clean exit on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.localrun_harness import FIXTURES, topic, write_config


def free_port_pair() -> int:
    """A port N such that N and N+1 are free right now."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return port
    raise RuntimeError("no two consecutive free ports")


def functions_status(run_dir: Path) -> tuple[int, str]:
    result = subprocess.run([sys.executable, "-m", "wtpulsar.cli", "functions", "status", "--run-dir", str(run_dir),
                             "--fqfn", "public/default/cli"], capture_output=True, text=True, timeout=60)
    return result.returncode, result.stdout


def test_localrun_status_and_sigterm(broker, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "cfg", name="cli", className="identity.Identity",
                       py=str(FIXTURES / "identity.py"), inputs=[topic("in")], output=topic("out"), parallelism=2)
    run_dir = tmp_path / "run"
    port = free_port_pair()
    proc = subprocess.Popen(
        [sys.executable, "-m", "wtpulsar.cli", "functions", "localrun", "--function-config-file", str(cfg),
         "--broker-service-url", broker.service_url, "--no-state", "--run-dir", str(run_dir),
         "--metrics-port-start", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            code, out = functions_status(run_dir)
            if code == 0:
                body = json.loads(out)
                if body["numRunning"] == 2:
                    break
            time.sleep(0.2)
        assert body.get("numRunning") == 2, body
        assert [i["instanceId"] for i in body["instances"]] == [0, 1]
        assert [i["status"]["metricsPort"] for i in body["instances"]] == [port, port + 1]
        pids = [i["status"]["pid"] for i in body["instances"]]
        assert all(i["status"]["numReceived"] == 0 and i["status"]["numRestarts"] == 0 for i in body["instances"])
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    for pid in pids:
        try:
            os.kill(pid, 0)
            alive = True
        except ProcessLookupError:
            alive = False
        assert not alive, f"instance pid {pid} survived SIGTERM"
    assert "stopped" in output
    assert functions_status(run_dir)[0] == 1  # nothing left running
