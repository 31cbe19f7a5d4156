"""Start and stop a real broker process for tests and benchmarks (`BrokerProcess`)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class BrokerProcess:
    """`wtpulsar broker` in a child process on free loopback ports, with a data dir that survives restarts."""

    def __init__(self, data_dir: str | Path | None = None, extra_args: list[str] | None = None, http: bool = True) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if data_dir:
            self.data_dir = Path(data_dir)
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="wtpulsar-broker-")
            self.data_dir = Path(self._tmp.name)
        self.port = free_port()
        self.http_port = free_port() if http else None
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-broker.log"

    @property
    def service_url(self) -> str:
        return f"pulsar://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 20.0) -> BrokerProcess:
        args = [sys.executable, "-m", "wtpulsar.cli", "broker", "--listen", f"127.0.0.1:{self.port}", "--data", str(self.data_dir)]
        if self.http_port is not None:
            args += ["--http", f"127.0.0.1:{self.http_port}"]
        args += self.extra_args
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode}; log: {self.log_path.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"broker did not listen on {self.port} within {timeout}s")

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return int(self.proc.returncode or 0)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> BrokerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
