"""Pulsar's own `pulsar-admin functions localrun` against our `wtpulsar functions localrun`, same inputs.

moderate is the richest comparison: masks, drops, links, a rate-limit burst and duplicates counted in
state, and a message that must go to the dead-letter topic. Each runner gets the shipped
moderate.yaml rewritten to a namespace of its own (so their subscriptions and state are apart), the
same chat-in messages (payload, key, properties, event time), and the outputs are compared message
by message once wall-clock stamps are set aside. The official runner also shows the two state cases
docs/real-pulsar.md §5 describes: no state URL (state calls do nothing: moderate counts in memory)
and an unreachable one (the official instance dies before our code is loaded).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pulsar
import pytest
import yaml

from realpulsar.standalone import Standalone
from tests.broker_process import free_port
from tests.realpulsar_support import REPO, WORKER_PLATFORM, WORKER_PYTHON_VERSION

pytestmark = pytest.mark.pulsar

ROOM = "cmp"
VOLATILE_PROPS = {"t_moderate"}  # the moment each runner decided
VOLATILE_BODY = {"decided_at"}
TEXTS = ["hello there", "what the fuck", "see https://evil.example/x", "kys", "visit github.com/apache/pulsar",
         "same again", "same again", "same again", "one", "two", "three"]


def chat_inputs() -> list[tuple[bytes, dict[str, str], int]]:
    """(payload, properties, event time) as the ingress writes chat-in; the last one is not JSON."""
    base = 1_780_000_000_000  # fixed stamps: both runners see the same times
    out = []
    for seq, text in enumerate(TEXTS):
        sent = base + seq * 100
        body = {"room": ROOM, "user": "ann", "msg_id": f"m{seq}", "text": text, "sent_at": sent, "stream": "chat"}
        props = {"kind": "chat", "codec": "json", "stream": "chat", "room": ROOM, "user": "ann", "seq": str(seq),
                 "pts": "0", "capture_ts": str(sent), "keyframe": "0", "t_ingress": str(sent + 2)}
        out.append((json.dumps(body).encode(), props, sent))
    bad = {"kind": "chat", "codec": "json", "stream": "chat", "room": ROOM, "user": "ann", "seq": str(len(TEXTS)),
           "t_ingress": str(base + 5000)}
    out.append((b"{not json", bad, base + 5000))
    return out


def config_for(namespace: str, folder: Path, py: Path) -> Path:
    config = yaml.safe_load((REPO / "deploy" / "functions" / "moderate.yaml").read_text())
    spec = config["inputSpecs"].pop("persistent://public/wtpulsar/chat-in")
    config["inputSpecs"] = {f"persistent://public/{namespace}/chat-in": spec}
    config.update(namespace=namespace, parallelism=1, py=str(py))
    user = config["userConfig"]
    for key in ("deadLetterTopic", "approvedTopic", "verdictTopic"):
        user[key] = user[key].replace("/wtpulsar/", f"/{namespace}/")
    path = folder / f"moderate-{namespace}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def moderate_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("moderate-archive")
    done = subprocess.run([sys.executable, "-m", "deploy.packaging", "--root", str(REPO), "--out", str(out),
                           "--function", "moderate", "--python-version", WORKER_PYTHON_VERSION,
                           "--platform", WORKER_PLATFORM], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return out / "moderate.zip"


def stop_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM to the process group, SIGKILL after `grace` seconds."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@contextmanager
def official_localrun(standalone: Standalone, config: Path, folder: Path, state_url: str | None,
                      metrics_port: int | None = None) -> Iterator[Path]:
    """`bin/pulsar-admin functions localrun` in the foreground; yields the instance's log file."""
    args = [str(standalone.home / "bin" / "pulsar-admin"), "functions", "localrun", "--broker-service-url",
            standalone.service_url, "--function-config-file", str(config), "--metrics-port-start",
            str(metrics_port or free_port())]
    if state_url:
        args += ["--state-storage-service-url", state_url]
    assert standalone.worker_python is not None
    env = {**os.environ, "JAVA_HOME": standalone.java_home, "PULSAR_LOG_DIR": str(folder / "logs"),
           "PATH": f"{standalone.worker_python / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    # The local runner writes instance logs under PULSAR_HOME/logs whatever PULSAR_LOG_DIR says.
    spec = yaml.safe_load(config.read_text())
    log_dir = standalone.home / "logs" / "functions" / spec.get("tenant", "public") / spec["namespace"] / spec["name"]
    shutil.rmtree(log_dir, ignore_errors=True)
    log = log_dir / f"{spec['name']}-0.log"
    with open(folder / "localrun.out", "ab") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield log

    finally:
        stop_group(proc, 30.0)


@contextmanager
def our_localrun(standalone: Standalone, config: Path, folder: Path, metrics_port: int | None = None) -> Iterator[Path]:
    args = [sys.executable, "-m", "wtpulsar.cli", "functions", "localrun", "--function-config-file", str(config),
            "--broker-service-url", standalone.service_url, "--state-dir", str(folder / "state"),
            "--run-dir", str(folder / "run")]
    if metrics_port is not None:
        args += ["--metrics-port-start", str(metrics_port)]
    with open(folder / "ours.out", "ab") as out:
        proc = subprocess.Popen(args, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield folder / "ours.out"
    finally:
        # Stopping is not what this module compares; on a loaded 2-core CI machine the supervisor's
        # orderly stop (instances drain, close producers) once took over 30 s, so wait, then kill.
        stop_group(proc, 60.0)


def wait_consumer(standalone: Standalone, namespace: str, timeout: float = 120.0) -> None:
    from tests.realpulsar_support import rest

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, stats = rest(standalone, "GET", f"/admin/v2/persistent/public/{namespace}/chat-in/stats")
        if status == 200 and any(s.get("consumers") for s in stats.get("subscriptions", {}).values()):
            return
        time.sleep(0.5)
    raise AssertionError(f"moderate did not subscribe to public/{namespace}/chat-in within {timeout:.0f} s")


def feed(standalone: Standalone, namespace: str) -> None:
    client = pulsar.Client(standalone.service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    try:
        producer = client.create_producer(f"persistent://public/{namespace}/chat-in", batching_enabled=False)
        for payload, props, event_time in chat_inputs():
            producer.send(payload, properties=props, partition_key=ROOM, event_timestamp=event_time)
    finally:
        client.close()


def outputs(pulsar_: Standalone, namespace: str, timeout: float = 90.0) -> dict[str, list[Any]]:
    """Every output topic's messages, normalised: (key, properties, body) without wall-clock stamps.

    One verdict per input (moderation), the undecodable input on dead-letter, and on chat-approved
    one message per verdict whose action is not a drop."""
    client = pulsar.Client(pulsar_.service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    found: dict[str, list[Any]] = {}
    expect = {"moderation": len(TEXTS) + 1, "dead-letter": 1, "chat-approved": -1}
    try:
        for topic, count in expect.items():
            if count < 0:
                count = sum(1 for _, props, body, _ in found["moderation"]
                            if isinstance(body, dict) and body.get("action") != "drop")
            reader = client.create_reader(f"persistent://public/{namespace}/{topic}", pulsar.MessageId.earliest)
            got: list[Any] = []
            deadline = time.monotonic() + timeout
            while len(got) < count and time.monotonic() < deadline:
                try:
                    msg = reader.read_next(1000)
                except pulsar.Timeout:
                    continue
                # Each runner has its own namespace: name it alike in topic-valued properties.
                props = {k: v.replace(f"/{namespace}/", "/NS/") for k, v in msg.properties().items()
                         if k not in VOLATILE_PROPS}
                try:
                    body: Any = json.loads(msg.data())
                    if isinstance(body, dict):
                        body = {k: v for k, v in body.items() if k not in VOLATILE_BODY}
                except ValueError:
                    body = msg.data()
                got.append((msg.partition_key(), props, body, msg.event_timestamp()))
            found[topic] = got
    finally:
        client.close()
    return found


def test_official_localrun_and_ours_moderate_alike(real_pulsar: Standalone, moderate_zip: Path, tmp_path: Path) -> None:
    pulsar_ = real_pulsar
    for namespace in ("cmpofficial", "cmpours"):
        pulsar_.admin("namespaces", "create", f"public/{namespace}", check=True)
    official_cfg = config_for("cmpofficial", tmp_path, moderate_zip)
    ours_cfg = config_for("cmpours", tmp_path, REPO / "functions" / "moderate.py")
    state_url = f"bk://127.0.0.1:{pulsar_.ports.stream_storage}"
    with official_localrun(pulsar_, official_cfg, tmp_path, state_url) as log:
        wait_consumer(pulsar_, "cmpofficial")
        feed(pulsar_, "cmpofficial")
        started = time.monotonic()
        theirs = outputs(pulsar_, "cmpofficial")
        print(f"official localrun: outputs read in {time.monotonic() - started:.1f} s", flush=True)
        log_text = log.read_text(errors="replace") if log.exists() else ""
    with our_localrun(pulsar_, ours_cfg, tmp_path) as our_log:
        wait_consumer(pulsar_, "cmpours")
        feed(pulsar_, "cmpours")
        ours = outputs(pulsar_, "cmpours")
    assert "counters in state" in log_text, log_text[-2000:]  # the table service answered the probe
    assert "counters in state" in our_log.read_text(errors="replace")
    assert len(theirs["moderation"]) == len(TEXTS) + 1 and len(theirs["dead-letter"]) == 1, theirs
    for topic in ("moderation", "chat-approved", "dead-letter"):
        assert ours[topic] == theirs[topic], topic
    actions = [v[2]["action"] for v in theirs["moderation"]]
    assert {"allow", "mask", "drop"} <= set(actions), actions
    rules = [v[2]["rules"] for v in theirs["moderation"]]
    assert sum("rate_limit" in r for r in rules) >= 1 and sum("duplicate" in r for r in rules) == 1, rules


def test_official_instance_without_state_storage_counts_in_memory(real_pulsar: Standalone, moderate_zip: Path,
                                                                   tmp_path: Path) -> None:
    """No state URL: the official context's state calls do nothing, moderate's probe sees that and
    keeps its counters in memory; rate limit and duplicates still apply."""
    pulsar_ = real_pulsar
    pulsar_.admin("namespaces", "create", "public/cmpnostate", check=True)
    config = config_for("cmpnostate", tmp_path, moderate_zip)
    with official_localrun(pulsar_, config, tmp_path, state_url=None) as log:
        wait_consumer(pulsar_, "cmpnostate")
        feed(pulsar_, "cmpnostate")
        got = outputs(pulsar_, "cmpnostate")
        log_text = log.read_text(errors="replace")
    assert "counters in memory" in log_text, log_text[-2000:]
    rules = [v[2]["rules"] for v in got["moderation"]]
    assert sum("rate_limit" in r for r in rules) >= 1 and sum("duplicate" in r for r in rules) == 1, rules


def test_unreachable_state_storage_stops_the_official_instance_before_our_code(
        real_pulsar: Standalone, moderate_zip: Path, tmp_path: Path) -> None:
    pulsar_ = real_pulsar
    pulsar_.admin("namespaces", "create", "public/cmpdeadstate", check=True)
    config = config_for("cmpdeadstate", tmp_path, moderate_zip)
    with official_localrun(pulsar_, config, tmp_path, state_url=f"bk://127.0.0.1:{free_port()}") as log:
        deadline = time.monotonic() + 90
        text = ""
        while time.monotonic() < deadline:
            text = log.read_text(errors="replace") if log.exists() else ""
            if "BKGrpcCallError" in text:
                break
            time.sleep(1)
        from tests.realpulsar_support import rest

        status, stats = rest(pulsar_, "GET", "/admin/v2/persistent/public/cmpdeadstate/chat-in/stats")
    # The state client's gRPC call fails inside the official instance's start-up.
    assert "BKGrpcCallError" in text and "StatusCode.UNAVAILABLE" in text, text[-2000:]
    assert "counters in" not in text, "our function was set up although state storage was unreachable"
    subs = (stats or {}).get("subscriptions", {}) if status == 200 and isinstance(stats, dict) else {}
    assert not any(s.get("consumers") for s in subs.values()), "the instance subscribed without its state"
