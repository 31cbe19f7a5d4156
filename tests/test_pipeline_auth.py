"""`wtpulsar up` (make run) on a broker that requires tokens: every part authenticates with its own
role, a client without a token is refused clearly, and only the ingress may write the input topics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pulsar
import pytest

from tests.broker_helpers import admin, client
from tests.broker_process import free_port


def test_the_pipeline_runs_with_tokens_and_refuses_the_rest(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("broker", "admin", "wt", "http")}
    env = {**os.environ, "WTPULSAR_RUN_DIR": str(tmp_path / "run"), "PYTHONUNBUFFERED": "1"}
    env.pop("PULSAR_URL", None)
    env.pop("PULSAR_TOKEN", None)
    log_path = tmp_path / "up.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "wtpulsar.cli", "up", "--state", str(tmp_path / "state"),
         "--broker-listen", f"127.0.0.1:{ports['broker']}", "--broker-http", f"127.0.0.1:{ports['admin']}",
         "--ingress-listen", f"127.0.0.1:{ports['wt']}", "--ingress-http", f"127.0.0.1:{ports['http']}"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    url, admin_url = f"pulsar://127.0.0.1:{ports['broker']}", f"http://127.0.0.1:{ports['admin']}"
    auth = tmp_path / "state" / "broker-auth"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and "wtpulsar is up" not in log_path.read_text(errors="replace"):
            assert proc.poll() is None, log_path.read_text()[-3000:]
            time.sleep(0.5)
        text = log_path.read_text(errors="replace")
        assert "wtpulsar is up" in text and "broker auth on" in text, text[-3000:]
        # the secret and the tokens are private files; no token or secret is on any command line
        assert oct((auth / "secret").stat().st_mode & 0o777) == "0o600"
        assert (auth / "secret").read_text().strip() not in text
        for role in ("admin", "ingress", "cli", "fn-moderate"):
            assert (auth / f"{role}.token").read_text().strip() not in text
        su = (auth / "admin.token").read_text().strip()
        assert admin(admin_url, "GET", "/admin/v2/tenants")[0] == 401
        # every function subscribed with its token, the ingress holds producers on the input topics
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status, stats = admin(admin_url, "GET", "/admin/v2/persistent/public/wtpulsar/chat-in/stats", token=su)
            if status == 200 and any(sub["consumers"] for sub in stats["subscriptions"].values()) and stats["publishers"]:
                break
            time.sleep(0.5)
        assert any(sub["consumers"] for sub in stats["subscriptions"].values()) and stats["publishers"], stats
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['http']}/health", timeout=5) as response:
            assert json.loads(response.read())["status"] == "ok"
        # a user's own client: without a token refused, with the CLI's token it may read but not write chat-in
        with client(url, operation_timeout_seconds=5) as c, pytest.raises(pulsar.PulsarException):
            c.create_producer("persistent://public/wtpulsar/chat-in")
        cli_token = (auth / "cli.token").read_text().strip()
        with client(url, authentication=pulsar.AuthenticationToken(cli_token)) as c:
            for topic in ("chat-in", "raw-video", "raw-audio", "raw-screen", "file-in"):
                with pytest.raises(pulsar.PulsarException, match="Authoriz"):
                    c.create_producer(f"persistent://public/wtpulsar/{topic}")
            c.create_reader("persistent://public/wtpulsar-rooms/room-demo-chat", pulsar.MessageId.earliest).close()
        fn_token = (auth / "fn-moderate.token").read_text().strip()
        with client(url, authentication=pulsar.AuthenticationToken(fn_token)) as c, pytest.raises(pulsar.PulsarException, match="Authoriz"):
            c.create_producer("persistent://public/wtpulsar/chat-in")
        consume = [sys.executable, "-m", "wtpulsar.cli", "consume", "demo", "--kind", "chat", "--broker-service-url", url, "--duration", "1"]
        refused = subprocess.run(consume, capture_output=True, text=True, timeout=60, env=env)
        assert refused.returncode == 1 and "requires a token" in refused.stderr and "PULSAR_TOKEN" in refused.stderr, refused.stderr
        allowed = subprocess.run(consume, capture_output=True, text=True, timeout=60, env={**env, "PULSAR_TOKEN": cli_token})
        assert allowed.returncode == 0, allowed.stderr
        # route's token may write the rooms, never chat-in (its outputs have a namespace of their own)
        route_token = (auth / "fn-route.token").read_text().strip()
        with client(url, authentication=pulsar.AuthenticationToken(route_token), operation_timeout_seconds=5) as c:
            with pytest.raises(pulsar.PulsarException, match="Authoriz"):
                c.create_producer("persistent://public/wtpulsar/chat-in")
        # moderate got the chat signing key (a secret through the environment): chat the ingress signed
        # is approved, chat written with the ingress's token but without the key is dead-lettered
        key_file = tmp_path / "state" / "chat-signing-key"
        assert oct(key_file.stat().st_mode & 0o777) == "0o600" and key_file.read_text().strip() not in text
        check_signatures(url, (auth / "ingress.token").read_text().strip(), su, key_file.read_text().strip().encode())
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(60)
        finally:
            log.close()
    assert proc.returncode == 0, log_path.read_text()[-3000:]


def check_signatures(url: str, ingress_token: str, admin_token: str, key: bytes) -> None:
    from ingress.chat_signing import sign

    room = "sig" + str(int(time.time()))
    with client(url, authentication=pulsar.AuthenticationToken(admin_token), operation_timeout_seconds=10) as reader_client:
        approved = reader_client.create_reader("persistent://public/wtpulsar/chat-approved", pulsar.MessageId.latest)
        dead = reader_client.create_reader("persistent://public/wtpulsar/dead-letter", pulsar.MessageId.latest)
        with client(url, authentication=pulsar.AuthenticationToken(ingress_token)) as c:
            producer = c.create_producer("persistent://public/wtpulsar/chat-in")
            for n, signed in ((1, True), (2, False)):
                body = json.dumps({"room": room, "user": "alice", "msg_id": f"m{n}", "text": f"hello {n}",
                                   "sent_at": time.time() * 1000}).encode()  # fmt: skip
                props = {"kind": "chat", "codec": "json", "room": room, "user": "alice", "stream": "chat1",
                         "seq": str(n), "t_ingress": str(int(time.time() * 1000))}  # fmt: skip
                if signed:
                    props["chat_sig"] = sign(key, props, body)
                producer.send(body, properties=props, partition_key=room)
        got: dict[str, list[dict[str, str]]] = {"approved": [], "dead": []}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (got["approved"] and got["dead"]):
            for name, reader in (("approved", approved), ("dead", dead)):
                try:
                    msg = reader.read_next(500)
                except pulsar.Timeout:
                    continue
                if msg.properties().get("room") == room:
                    got[name].append(msg.properties())
        assert [p["msg_id"] for p in got["approved"]] == ["m1"], got
        assert [p["reason"] for p in got["dead"]] == ["unsigned"] and got["dead"][0]["seq"] == "2", got
