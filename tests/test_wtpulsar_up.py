"""`wtpulsar up` (what `make run` runs) starts broker, functions and ingress, and stops them all."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.broker_process import free_port


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
    # Ctrl-C stops in order, quietly: the ingress, then every function instance, then the broker, so no
    # client loses its broker mid-close (no refused connections, failed closes or AlreadyClosed).
    stopping = text[text.index("Ctrl-C stops everything."):]
    noisy = [line for line in stopping.splitlines()
             if re.search(r"ERROR|WARN|Traceback|refused|[Ff]ailed|AlreadyClosed|Exception", line)]
    assert not noisy, "\n".join(noisy)
    ingress_done = stopping.index("ingress: stopped")
    instances_done = [m.start() for m in re.finditer(r"instance \d+ of \S+ stopped", stopping)]
    assert len(instances_done) == 7, stopping  # transcode 2, chunk 1, moderate 2, route 2
    assert ingress_done < min(instances_done) and max(instances_done) < stopping.index("broker stopping"), stopping


# ---- ports checked before anything starts (a second `make run`), and exit status -----------------------


def _ports() -> dict[str, int]:
    from tests.browser_support import free_ports

    broker, admin, wt, http = free_ports()
    return {"broker": broker, "admin": admin, "wt": wt, "http": http}


def _up_argv(tmp_path: Path, name: str, ports: dict[str, int], functions: Path | None = None) -> list[str]:
    argv = [
        sys.executable, "-m", "wtpulsar.cli", "up", "--state", str(tmp_path / name),
        "--broker-listen", f"127.0.0.1:{ports['broker']}", "--broker-http", f"127.0.0.1:{ports['admin']}",
        "--ingress-listen", f"127.0.0.1:{ports['wt']}", "--ingress-http", f"127.0.0.1:{ports['http']}",
    ]
    if functions is not None:
        argv += ["--functions", str(functions)]
    return argv


def _start_up(tmp_path: Path, name: str, ports: dict[str, int], functions: Path | None) -> tuple[subprocess.Popen[bytes], Path]:
    log_path = tmp_path / f"{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(_up_argv(tmp_path, name, ports, functions), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        if "wtpulsar is up" in text:
            return proc, log_path
        assert proc.poll() is None, text[-3000:]
        time.sleep(0.3)
    raise AssertionError(log_path.read_text(errors="replace")[-3000:])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def test_second_up_on_the_same_ports_names_each_clash_and_starts_nothing(tmp_path: Path) -> None:
    (tmp_path / "no-functions").mkdir()
    ports = _ports()
    first, first_log = _start_up(tmp_path, "first", ports, tmp_path / "no-functions")
    try:
        pids = {m.group(1): int(m.group(2))
                for m in re.finditer(r"starting (broker|ingress) \(pid (\d+)\)", first_log.read_text())}
        second = subprocess.run(_up_argv(tmp_path, "second", ports), capture_output=True, text=True, timeout=60)
        assert first.poll() is None, first_log.read_text()[-2000:]
    finally:
        _stop(first)
    out = second.stdout + second.stderr
    assert second.returncode == 1, out
    assert "wtpulsar is up" not in out and "[up] starting" not in out and "token=" not in out, out
    assert "nothing was started" in out
    assert not (tmp_path / "second").exists()  # not even the state folder
    for proto, key, flag, holder in (("TCP", "broker", "--broker-listen", "broker"),
                                     ("TCP", "admin", "--broker-http", "broker"),
                                     ("UDP", "wt", "--ingress-listen", "ingress"),
                                     ("TCP", "http", "--ingress-http", "ingress")):
        line = next((x for x in out.splitlines() if f"{proto} port {ports[key]} " in x), "")
        assert line and flag in line and f"held by pid {pids[holder]} (wtpulsar {holder}" in line, (key, out)


def test_one_taken_port_is_named_exactly_with_its_holder(tmp_path: Path) -> None:
    ports = _ports()
    with socket.socket() as squatter:  # the case: only the admin port (8080) was taken
        squatter.bind(("127.0.0.1", ports["admin"]))
        squatter.listen(1)
        result = subprocess.run(_up_argv(tmp_path, "state", ports), capture_output=True, text=True, timeout=60)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    lines = [x for x in out.splitlines() if " port " in x and "in use" in x]
    assert len(lines) == 1, out
    assert (f"TCP port {ports['admin']} on 127.0.0.1 for the broker admin REST and /metrics is in use "
            f"(held by pid {os.getpid()} ") in lines[0] and "--broker-http" in lines[0], out
    assert str(ports["broker"]) not in out and "[up] starting" not in out, out


def test_up_exits_nonzero_when_a_part_dies(tmp_path: Path) -> None:
    (tmp_path / "no-functions").mkdir()
    proc, log_path = _start_up(tmp_path, "state", _ports(), tmp_path / "no-functions")
    try:
        started = re.search(r"starting ingress \(pid (\d+)\)", log_path.read_text())
        assert started is not None, "wtpulsar up logged no ingress start"
        ingress_pid = int(started.group(1))
        os.kill(ingress_pid, signal.SIGKILL)
        proc.wait(60)
    finally:
        _stop(proc)
    text = log_path.read_text(errors="replace")
    assert proc.returncode == 1, text[-2000:]
    assert "ingress exited with status -9; stopping the pipeline" in text and "[up] stopped" in text


def test_ports_check_finds_the_holder_of_tcp_and_udp_ports() -> None:
    from wtpulsar.ports import Need, check

    with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen(1)
        udp.bind(("127.0.0.1", 0))
        needs = [Need("a", "127.0.0.1", tcp.getsockname()[1], "tcp", "--a"),
                 Need("b", "127.0.0.1", udp.getsockname()[1], "udp", "--b")]
        clashes = check(needs)
    assert [c.need.what for c in clashes] == ["a", "b"]
    assert all(c.holder.startswith(f"pid {os.getpid()} (") for c in clashes), clashes
    assert check(needs) == []  # released: both free again


def test_up_and_ingress_default_to_loopback_and_public_opens_both(tmp_path: Path) -> None:
    from wtpulsar.cli import build_parser
    from wtpulsar.up import port_needs

    up = build_parser().parse_args(["up"])
    assert up.ingress_listen == "127.0.0.1:4433" and up.ingress_http == "127.0.0.1:8000"
    assert build_parser().parse_args(["ingress"]).listen.startswith("127.0.0.1:")
    assert {n.host for n in port_needs(up)} == {"127.0.0.1"}
    # --public: what `up` then checks and starts is on every interface, ports unchanged
    ports = _ports()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports["http"]))
        squatter.listen(1)
        result = subprocess.run(_up_argv(tmp_path, "state", ports) + ["--public"], capture_output=True, text=True,
                                timeout=60)
    out = result.stdout + result.stderr
    assert result.returncode == 1 and f"TCP port {ports['http']} on 0.0.0.0 for the ingress page" in out, out
