"""The whole pipeline on free loopback ports, with parts that can be SIGKILLed and restarted.

Broker: `tests/broker_process.py` BrokerProcess (same port and data dir after a restart). Functions: the
localrun supervisor (`localrun.supervisor.run_functions`), one process per instance; a killed instance
is restarted by the supervisor itself (backoff 0.5 s), as under `wtpulsar up`. Ingress: a
`wtpulsar ingress` child process restarted on the same ports and secret.

The FunctionConfigs are deploy/functions/*.yaml with four test-only changes: parallelism 1 (so a
kill stops the whole function, the harsher case), one small 120p rendition (two CPU cores must
transcode four streams), one audio packet per fragment (see below), and chat limits high enough that the synthetic chat is never rate-limited
(a dropped chat is a verdict, not a loss, and would blur the audit).
Also used by bench/soak.py.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from localrun.config import source_py
from tests.broker_process import BrokerProcess, free_port

REPO = Path(__file__).resolve().parents[1]
FUNCTIONS = ("transcode", "chunk", "moderate", "route")
INPUTS = {"transcode": ["raw-video", "raw-audio"], "chunk": ["encoded"], "moderate": ["chat-in"],
          "route": ["segments", "chat-approved"]}
SECRET = "fault-test-secret-" + "x" * 32
RENDITION = "120p"


def function_configs(folder: Path, parallelism: int = 1) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in FUNCTIONS:
        cfg = yaml.safe_load((REPO / "deploy" / "functions" / f"{name}.yaml").read_text())
        cfg["py"] = source_py(cfg, REPO / "functions")  # the shipped py is the archive `make package` builds
        cfg["parallelism"] = parallelism
        user = cfg.setdefault("userConfig", {})
        if name == "transcode":
            user["renditions"] = [{"name": RENDITION, "height": 120, "bitrate": 150_000}]
        if name == "chunk":
            # A fragment of N audio packets holds a stream's last N-1 packets until the next packet
            # arrives: when the drill's publishers stop, those would look lost. One per fragment.
            user["audio_fragment_frames"] = 1
        if name == "moderate":
            user.setdefault("limits", {}).update(rate_messages=1_000_000, duplicate_max=1_000_000)
            user["state"] = "memory"
        path = folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        out.append(path)
    return out


class Pipeline:
    def __init__(self, root: Path, parallelism: int = 1) -> None:
        self.root = root
        # Retention keeps what transcode acked on the raw topics, so the audit can count frames in.
        self.broker = BrokerProcess(root / "broker-data", extra_args=["--retention-minutes", "120"])
        self.configs = function_configs(root / "functions", parallelism)
        self.udp_port = free_port()
        self.http_port = free_port()
        self.ingress: subprocess.Popen[bytes] | None = None
        self.supervisor: Any = None
        self.ingress_log = root / "ingress.log"

    # ---- lifecycle ------------------------------------------------------------------------
    def start(self, timeout: float = 90.0) -> Pipeline:
        from localrun.supervisor import run_functions

        self.broker.start()
        self.start_ingress()
        self.supervisor = run_functions(self.configs, self.broker.service_url, str(self.root / "state"),
                                        nack_delay_ms=500, run_dir=str(self.root / "run"), log_level="WARNING")
        self.wait_subscribed(timeout)
        return self

    def stop(self) -> None:
        """Everything that was started, also after a failed start()."""
        if self.supervisor is not None:
            self.supervisor.stop()
        self.stop_ingress()
        if self.broker.proc is not None:
            self.broker.close()

    def start_ingress(self, timeout: float = 30.0) -> None:
        args = [sys.executable, "-m", "wtpulsar.cli", "ingress", "--listen", f"127.0.0.1:{self.udp_port}",
                "--http", f"127.0.0.1:{self.http_port}", "--broker-service-url", self.broker.service_url,
                "--state-dir", str(self.root / "ingress")]
        log = open(self.ingress_log, "ab")  # noqa: SIM115 - lives as long as the process
        self.ingress = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1", "WTPULSAR_INGRESS_SECRET": SECRET})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ingress.poll() is not None:
                raise RuntimeError(f"ingress exited {self.ingress.returncode}: {self.ingress_log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.http_port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("ingress did not listen")

    def kill_ingress(self) -> None:
        if self.ingress is not None and self.ingress.poll() is None:
            self.ingress.send_signal(signal.SIGKILL)
            self.ingress.wait(10)

    def stop_ingress(self) -> None:
        if self.ingress is not None and self.ingress.poll() is None:
            self.ingress.terminate()
            try:
                self.ingress.wait(10)
            except subprocess.TimeoutExpired:
                self.kill_ingress()

    def kill_function(self, name: str, instance_id: str = "0") -> int:
        """SIGKILL one instance; the supervisor restarts it. Returns the old pid."""
        return int(self.supervisor.kill_instance(f"public/wtpulsar/{name}", instance_id))

    def instance_pids(self) -> dict[str, int]:
        return {f"{inst.spec.name}-{inst.instance_id}": inst.pid for inst in self.supervisor.instances()
                if inst.pid is not None and inst.process is not None and inst.process.poll() is None}

    def restarted(self, name: str, old_pid: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = [inst.pid for inst in self.supervisor.instances(f"public/wtpulsar/{name}")
                    if inst.process is not None and inst.process.poll() is None]
            if pids and old_pid not in pids:
                return
            time.sleep(0.05)
        raise TimeoutError(f"{name} was not restarted")

    # ---- broker admin ---------------------------------------------------------------------
    def topic_stats(self, topic: str) -> dict[str, Any] | None:
        url = f"{self.broker.admin_url}/admin/v2/persistent/public/wtpulsar/{topic}/stats"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return json.loads(r.read())
        except OSError:
            return None

    def backlogs(self) -> dict[str, int]:
        """msgBacklog of every function subscription, by `topic/subscription`."""
        out = {}
        for topics in INPUTS.values():
            for topic in topics:
                stats = self.topic_stats(topic) or {}
                for sub, body in (stats.get("subscriptions") or {}).items():
                    out[f"{topic}/{sub}"] = int(body.get("msgBacklog", 0))
        return out

    def wait_subscribed(self, timeout: float) -> None:
        """transcode and chunk subscribe at Latest: frames published before that would be skipped."""
        deadline = time.monotonic() + timeout
        missing: list[str] = []
        while time.monotonic() < deadline:
            missing = []
            for name, topics in INPUTS.items():
                for topic in topics:
                    subs = (self.topic_stats(topic) or {}).get("subscriptions") or {}
                    if not any(body.get("consumers") for body in subs.values()):
                        missing.append(f"{name}<-{topic}")
            if not missing:
                return
            time.sleep(0.2)
        raise TimeoutError(f"not subscribed after {timeout}s: {missing}")

    def ws_url(self, room: str, user: str) -> str:
        from ingress import tokens

        token = tokens.issue(SECRET.encode(), room, user, "publisher", time.time(), 3600)
        return f"ws://127.0.0.1:{self.http_port}/ws?token={token}"


def rss_kib(pid: int) -> int | None:
    """Resident set size from /proc (Linux), KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def test_function_configs_keep_the_shipped_topics(tmp_path: Path) -> None:
    from localrun.config import load_function_config

    for path in function_configs(tmp_path):
        spec = load_function_config(path)
        shipped = yaml.safe_load((REPO / "deploy" / "functions" / path.name).read_text())
        assert spec.parallelism == 1
        assert sorted(spec.inputs) == sorted(shipped["inputSpecs"]), path.name
