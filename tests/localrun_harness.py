"""Helpers for localrun integration tests: configs, a running supervisor, collecting output."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from localrun.instance import fqfn_dirname
from localrun.status import collect_status
from localrun.supervisor import Supervisor, run_functions

FIXTURES = Path(__file__).parent / "localrun_fixtures"


def topic(tag: str) -> str:
    return f"persistent://public/default/lr-{uuid.uuid4().hex[:10]}-{tag}"


def write_config(directory: Path, file_name: str = "fn.yaml", **fields: Any) -> Path:
    fields.setdefault("tenant", "public")
    fields.setdefault("namespace", "default")
    fields.setdefault("subscriptionPosition", "Earliest")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / file_name
    path.write_text(yaml.safe_dump(fields))
    return path


@contextlib.contextmanager
def running(configs: list[Path], service_url: str, tmp_path: Path, *, state: bool = True,
            nack_delay_ms: int = 300, wait: bool = True) -> Iterator[Supervisor]:
    sup = run_functions(configs, service_url, state_dir=str(tmp_path / "state") if state else None,
                        nack_delay_ms=nack_delay_ms, run_dir=str(tmp_path / "run"), log_level="INFO")
    try:
        if wait:
            wait_ready(sup)
        yield sup
    finally:
        sup.stop()


def wait_ready(sup: Supervisor, timeout: float = 30.0) -> None:
    """Every instance has subscribed (it writes its instance file right after)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = True
        for inst in sup.instances():
            path = Path(sup.run_dir) / fqfn_dirname(inst.spec.fqfn) / f"instance-{inst.instance_id}.json"
            if not path.is_file() or json.loads(path.read_text()).get("pid") != inst.pid:
                ready = False
        if ready:
            return
        time.sleep(0.05)
    raise TimeoutError("instances did not become ready")


def status(sup: Supervisor, fqfn: str) -> dict[str, Any]:
    found = collect_status(sup.run_dir, fqfn)
    assert found, f"no status for {fqfn}"
    return found[0]


def wait_status(sup: Supervisor, fqfn: str, predicate: Any, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        last = status(sup, fqfn)
        if predicate(last):
            return last
        time.sleep(0.1)
    raise AssertionError(f"status never matched: {json.dumps(last)[:2000]}")


def totals(st: dict[str, Any], key: str) -> int:
    return sum(int(i["status"][key]) for i in st["instances"])


def receive_all(consumer: Any, count: int, timeout: float = 30.0) -> list[Any]:
    """Receive (and ack) until `count` messages arrived or `timeout` passed."""
    import pulsar

    out: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(out) < count and time.monotonic() < deadline:
        try:
            msg = consumer.receive(timeout_millis=200)
        except pulsar.Timeout:
            continue
        consumer.acknowledge(msg)
        out.append(msg)
    return out


def receive_until(consumer: Any, done: Any, timeout: float = 60.0) -> list[Any]:
    import pulsar

    out: list[Any] = []
    deadline = time.monotonic() + timeout
    while not done(out) and time.monotonic() < deadline:
        try:
            msg = consumer.receive(timeout_millis=200)
        except pulsar.Timeout:
            continue
        consumer.acknowledge(msg)
        out.append(msg)
    return out
