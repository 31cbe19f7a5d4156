"""`wtpulsar deploy` / `wtpulsar undeploy` for real, with Pulsar's own pulsar-admin, against the standalone.

Runs on a copy of the project (deploy/, functions/, schemas/) so the archives it builds for the worker's
Python do not replace the repo's build/. Named `zz` so that it runs after the pipeline module, which
uses the same namespace.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from realpulsar.standalone import Standalone
from tests.realpulsar_support import (
    FUNCTIONS,
    REPO,
    WORKER_PLATFORM,
    WORKER_PYTHON_VERSION,
    rest,
    wait_running,
)

pytestmark = pytest.mark.pulsar


def project_copy(folder: Path) -> Path:
    for part in ("deploy", "functions", "schemas"):
        shutil.copytree(REPO / part, folder / part, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


CHAT_KEY = "deploy-test-chat-signing-key-0123456789abcdef"


def deploy_cli(pulsar: Standalone, root: Path, verb: str, rest_api: bool = False) -> tuple[int, str]:
    """`wtpulsar deploy|undeploy`, with Pulsar's pulsar-admin or (rest_api) through the admin REST API.

    Each pulsar-admin command starts a JVM (~3 s here), so the later passes use the REST runner: both
    runners are then proven on Apache Pulsar in one test."""
    args = [sys.executable, "-m", "wtpulsar.cli", verb, "--root", str(root), "--admin-url", pulsar.admin_url]
    args += ["--rest"] if rest_api else ["--pulsar-admin", str(pulsar.home / "bin" / "pulsar-admin")]
    if verb == "deploy":
        args += ["--python-version", WORKER_PYTHON_VERSION, "--platform", WORKER_PLATFORM]
        key_file = root / "chat-signing-key"
        key_file.write_text(CHAT_KEY + "\n")
        args += ["--chat-signing-key", f"file://{key_file}"]
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "JAVA_HOME": pulsar.java_home})
    return done.returncode, done.stdout + done.stderr


def names(pulsar: Standalone, path: str) -> list[str]:
    status, body = rest(pulsar, "GET", path)
    return list(body) if status == 200 and isinstance(body, list) else []


def assert_only_moderate_has_the_chat_key(pulsar: Standalone) -> None:
    """Pulsar keeps what deploy gave: moderate's FunctionConfig has the secret, no other function has one."""
    for name in FUNCTIONS:
        status, config = rest(pulsar, "GET", f"/admin/v3/functions/public/wtpulsar/{name}")
        assert status == 200, config
        expected = {"chatSigningKey": CHAT_KEY} if name == "moderate" else None
        assert (config.get("secrets") or None) == expected, (name, config.get("secrets"))


def test_deploy_twice_then_undeploy_twice_on_apache_pulsar(real_pulsar: Standalone, tmp_path: Path) -> None:
    pulsar = real_pulsar
    root = project_copy(tmp_path / "project")
    code, out = deploy_cli(pulsar, root, "deploy")
    assert code == 0, out
    assert "with " + str(pulsar.home / "bin" / "pulsar-admin") in out  # Pulsar's own CLI did the work
    assert {"public/wtpulsar", "public/wtpulsar-rooms"} <= set(names(pulsar, "/admin/v2/namespaces/public"))
    topics = names(pulsar, "/admin/v2/persistent/public/wtpulsar")
    assert {f"persistent://public/wtpulsar/{t}" for t in ("raw-video", "encoded", "segments", "chat-in")} <= set(topics)
    # Read back until it is there: once, on a loaded machine, Pulsar answered 404 "Schema not found"
    # right after pulsar-admin's upload had succeeded, and 200 on the next run.
    deadline = time.monotonic() + 20
    status, schema = rest(pulsar, "GET", "/admin/v2/schemas/public/wtpulsar/chat-in/schema")
    while status == 404 and time.monotonic() < deadline:
        time.sleep(1)
        status, schema = rest(pulsar, "GET", "/admin/v2/schemas/public/wtpulsar/chat-in/schema")
    assert status == 200 and schema["type"] == "JSON", schema
    assert sorted(names(pulsar, "/admin/v3/functions/public/wtpulsar")) == sorted(FUNCTIONS)
    for name in FUNCTIONS:
        wait_running(pulsar, name)
    assert_only_moderate_has_the_chat_key(pulsar)
    assert CHAT_KEY not in out

    code, out = deploy_cli(pulsar, root, "deploy", rest_api=True)  # again: everything exists, functions updated
    assert code == 0, out
    assert out.count("  update function public/wtpulsar/") == len(FUNCTIONS), out
    for name in FUNCTIONS:
        wait_running(pulsar, name)
    assert_only_moderate_has_the_chat_key(pulsar)

    # An update Pulsar refuses (processing guarantees cannot change): one message naming the function,
    # Pulsar's reason and what to do; the deployed function is left as it was.
    route_yaml = root / "deploy" / "functions" / "route.yaml"
    route_yaml.write_text(route_yaml.read_text().replace("processingGuarantees: MANUAL",
                                                         "processingGuarantees: ATLEAST_ONCE"))
    code, out = deploy_cli(pulsar, root, "deploy", rest_api=True)
    assert code == 1, out
    assert "update function public/wtpulsar/route failed" in out and "HTTP 400" in out, out
    assert "run `wtpulsar undeploy` then deploy again" in out, out
    status, route = rest(pulsar, "GET", "/admin/v3/functions/public/wtpulsar/route")
    assert status == 200 and route["processingGuarantees"] == "MANUAL", route

    code, out = deploy_cli(pulsar, root, "undeploy", rest_api=True)
    assert code == 0, out
    assert names(pulsar, "/admin/v3/functions/public/wtpulsar") == []
    assert "public/wtpulsar" not in names(pulsar, "/admin/v2/namespaces/public")
    assert "public/wtpulsar-rooms" not in names(pulsar, "/admin/v2/namespaces/public")
    code, out = deploy_cli(pulsar, root, "undeploy", rest_api=True)  # nothing left: still fine
    assert code == 0, out
