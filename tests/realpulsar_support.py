"""The real-Pulsar test tier: one Apache Pulsar standalone per test session, and helpers around it.

Tests of this tier are marked `pulsar` and take the `real_pulsar` fixture (tests/conftest.py). It
starts `realpulsar.standalone.Standalone` on free loopback ports in a temporary folder and stops it at
the end. Where Java 17+ and Maven are missing the tier is skipped with that reason, except when
WTPULSAR_REQUIRE_PULSAR=1 (set by .ci/run), where the same reason fails the run instead.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

from realpulsar.distribution import DistributionError
from realpulsar.standalone import Standalone, StandaloneError, random_ports
from tests.broker_helpers import admin

REPO = Path(__file__).resolve().parents[1]
FUNCTIONS = ("transcode", "chunk", "moderate", "route")
# The worker's interpreter here: the cache's virtualenv of this machine's CPython 3.11 (glibc).
WORKER_PYTHON_VERSION = "3.11"
WORKER_PLATFORM = "manylinux_2_28_x86_64"


def required() -> bool:
    return os.environ.get("WTPULSAR_REQUIRE_PULSAR") == "1"


def unavailable(reason: str) -> None:
    """Skip, or fail where the tier is required (CI)."""
    if required():
        pytest.fail(f"the real-Pulsar tier is required here (WTPULSAR_REQUIRE_PULSAR=1) but: {reason}")
    pytest.skip(f"real Pulsar unavailable: {reason}")


def start_standalone(root: Path, state: bool = True, **kwargs: Any) -> Standalone:
    from realpulsar.cli import prepare

    try:
        home, worker, java_home = prepare(log=lambda line: print(f"[real-pulsar] {line}", flush=True))
    except DistributionError as exc:
        unavailable(str(exc))
        raise  # unreachable: unavailable() skips or fails
    standalone = Standalone(home=home, data_dir=root, java_home=java_home, worker_python=worker,
                            ports=random_ports(), state=state, log=print, **kwargs)
    try:
        standalone.start()
    except StandaloneError as exc:
        pytest.fail(f"Apache Pulsar standalone did not start: {exc}")
    return standalone


def rest(standalone: Standalone, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """The standalone's admin REST (`tests/broker_helpers.admin`, with a longer timeout for a busy JVM)."""
    headers = standalone.auth.headers() if standalone.auth else None  # a superuser's token when auth is on
    return admin(standalone.admin_url, method, path, body, headers=headers, timeout=30.0)


def function_status(standalone: Standalone, name: str, tenant: str = "public", namespace: str = "wtpulsar") -> dict[str, Any]:
    status, body = rest(standalone, "GET", f"/admin/v3/functions/{tenant}/{namespace}/{name}/status")
    assert status == 200, f"functions status {name}: {status} {body}"
    return dict(body)


def wait_running(standalone: Standalone, name: str, timeout: float = 180.0, tenant: str = "public",
                 namespace: str = "wtpulsar") -> dict[str, Any]:
    """Every instance of `name` running (the worker installs a zip's wheels at each start: slow)."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status, raw = rest(standalone, "GET", f"/admin/v3/functions/{tenant}/{namespace}/{name}/status")
        if status == 200:
            body = dict(raw)
            if body.get("numInstances") and body.get("numRunning") == body.get("numInstances"):
                return body
        time.sleep(1.0)
    log = standalone.function_log(tenant, namespace, name)
    tail = log.read_text(errors="replace")[-1500:] if log.exists() else "(no instance log)"
    raise AssertionError(f"{name} not running within {timeout:.0f} s: {body}\n{tail}")


def wait_subscribed(standalone: Standalone, topics: list[str], timeout: float = 120.0,
                    tenant: str = "public", namespace: str = "wtpulsar") -> None:
    deadline = time.monotonic() + timeout
    missing = topics
    while time.monotonic() < deadline:
        missing = []
        for topic in topics:
            status, stats = rest(standalone, "GET", f"/admin/v2/persistent/{tenant}/{namespace}/{topic}/stats")
            subs = (stats or {}).get("subscriptions", {}) if status == 200 and isinstance(stats, dict) else {}
            if not any(body.get("consumers") for body in subs.values()):
                missing.append(topic)
        if not missing:
            return
        time.sleep(0.5)
    raise AssertionError(f"no function subscribed to {missing} within {timeout:.0f} s")


def instance_pids(standalone: Standalone, name: str, tenant: str = "public", namespace: str = "wtpulsar") -> list[int]:
    """Pids of this standalone's Python instance processes of one function (from /proc)."""
    wanted = re.compile(rf'"tenant":"{tenant}","namespace":"{namespace}","name":"{name}".*'
                        rf'--pulsar_serviceurl {re.escape(standalone.service_url)} ')
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "python_instance_main.py" in cmdline and wanted.search(cmdline):
            pids.append(int(entry.name))
    return sorted(pids)
