"""Start the two brokers the benchmark compares, each as its own child process on a free loopback port.

* ``ours``: ``wtpulsar broker`` through `tests/broker_process.py` BrokerProcess (no admin HTTP).
* ``lite``: `pulsar-lite` 0.2.0, a Rust binary shipped inside the wheel at ``pulsar_lite/bin/pulsar-lite``
  (its own ``start_broker()`` picks a port from 6650 up and logs to /tmp/pulsar-lite.log; we run the
  binary ourselves so the port is free and the log and data stay in our temporary directory).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BROKER_NAMES = ("ours", "ours-fsync", "lite")  # ours-fsync: `wtpulsar broker --sync fsync`
READY_TIMEOUT = 20.0  # s


@dataclass(frozen=True)
class RunningBroker:
    name: str
    """"ours" or "lite"."""
    label: str
    """What the report prints, with the version."""
    service_url: str
    pid: int
    """The broker's process id, for a profiler to attach to."""
    log_path: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a process has used so far (Linux /proc), or None where that is unknown.

    CPU per message is the figure that a busy shared machine disturbs least: wall-clock rates drop
    when other work takes the cores, the work the broker does for each message does not.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    # Fields after "(comm)": state is index 0, so utime (field 14) and stime (15) are 11 and 12.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def lite_binary() -> Path:
    """The executable inside the installed `pulsar-lite` wheel; a clear error if the package is missing."""
    try:
        import pulsar_lite
    except ImportError as exc:
        raise RuntimeError("pulsar-lite is not installed: pip install -e '.[bench]' (it pins pulsar-lite==0.2.0)") from exc
    binary = Path(pulsar_lite.__file__).resolve().parent / "bin" / "pulsar-lite"
    if not binary.is_file():
        raise RuntimeError(f"pulsar-lite {pulsar_lite.__version__} has no binary at {binary}")
    return binary


def _wait_listening(proc: subprocess.Popen[bytes], port: int, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited with {proc.returncode}; log tail: {log_path.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"broker did not listen on 127.0.0.1:{port} within {timeout:.0f}s; log: {log_path}")


@contextlib.contextmanager
def run_ours(sync: str = "write") -> Iterator[RunningBroker]:
    from tests.broker_process import BrokerProcess

    with BrokerProcess(http=False, extra_args=["--sync", sync]) as process:
        assert process.proc is not None
        name = "ours" if sync == "write" else f"ours-{sync}"
        label = "wtpulsar broker" if sync == "write" else f"wtpulsar ({sync})"
        yield RunningBroker(name, label, process.service_url, process.proc.pid, process.log_path)


@contextlib.contextmanager
def run_lite() -> Iterator[RunningBroker]:
    import pulsar_lite

    binary = lite_binary()
    with tempfile.TemporaryDirectory(prefix="bench-pulsar-lite-") as tmp:
        work = Path(tmp)
        port = free_port()
        log_path = work / "pulsar-lite.log"
        # cwd is the empty temp dir so no stray ./pulsar-lite.toml (its default --config) is read.
        with open(log_path, "ab") as log:
            proc = subprocess.Popen([str(binary), "--addr", f"127.0.0.1:{port}", "--db-path", str(work / "data.db"),
                                     "--log-level", "warn"], stdout=log, stderr=subprocess.STDOUT, cwd=work)
        try:
            _wait_listening(proc, port, log_path, READY_TIMEOUT)
            yield RunningBroker("lite", f"pulsar-lite {pulsar_lite.__version__}", f"pulsar://127.0.0.1:{port}",
                                proc.pid, log_path)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def run_broker(name: str) -> contextlib.AbstractContextManager[RunningBroker]:
    if name == "ours":
        return run_ours()
    if name == "ours-fsync":
        return run_ours("fsync")
    if name == "lite":
        return run_lite()
    raise ValueError(f"unknown broker {name!r}: expected one of {', '.join(BROKER_NAMES)}")
