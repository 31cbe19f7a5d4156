"""`wtpulsar up` (what `make run` runs) starts broker, functions and ingress, and stops them all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from broker.testing import free_port


def test_up_starts_the_pipeline_and_stops_cleanly(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("broker", "admin", "wt", "http")}
    env = {**os.environ, "WTPULSAR_RUN_DIR": str(tmp_path / "run"), "PYTHONUNBUFFERED": "1"}
    env.pop("PULSAR_URL", None)
    log = open(tmp_path / "up.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "wtpulsar.cli", "up", "--state", str(tmp_path / "state"),
            "--broker-listen", f"127.0.0.1:{ports['broker']}", "--broker-http", f"127.0.0.1:{ports['admin']}",
            "--ingress-listen", f"127.0.0.1:{ports['wt']}", "--ingress-http", f"127.0.0.1:{ports['http']}",
        ],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        text = ""
        while time.monotonic() < deadline and "wtpulsar is up" not in text:
            assert proc.poll() is None, (tmp_path / "up.log").read_text()[-3000:]
            time.sleep(0.5)
            text = (tmp_path / "up.log").read_text(errors="replace")
        assert "wtpulsar is up" in text, text[-3000:]
        assert "token=" in text and f"http://127.0.0.1:{ports['http']}/?room=demo" in text
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['http']}/health", timeout=5) as response:
            assert json.loads(response.read())["status"] == "ok"
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['admin']}/admin/v2/brokers/health", timeout=5) as response:
            assert response.read() == b"ok"
        # every function's instances subscribed to their inputs
        admin_token = (tmp_path / "state" / "broker-auth" / "admin.token").read_text().strip()  # up runs the broker with auth on
        request = urllib.request.Request(f"http://127.0.0.1:{ports['admin']}/admin/v2/persistent/public/wtpulsar/chat-in/stats",
                                         headers={"Authorization": f"Bearer {admin_token}"})
        with urllib.request.urlopen(request, timeout=5) as response:
            stats = json.loads(response.read())
        assert any(sub["consumers"] for sub in stats["subscriptions"].values()), stats
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(60)
        finally:
            log.close()
    text = (tmp_path / "up.log").read_text(errors="replace")
    assert proc.returncode == 0, text[-3000:]
    assert "[up] stopped" in text and "did not stop" not in text
    assert "broker stopped" in text
