"""The broker-auth settings of `make run` on Apache Pulsar itself: a standalone with token
authentication and authorization on (realpulsar.standalone.TokenAuth), the tokens and grants of
wtpulsar/roles.py, and the moderate function deployed there with its chat signing key as a secret.

This tier starts its own standalone (the session's `real_pulsar` has authentication off), so it costs
another ~10 s and 1 GB while it runs.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pulsar
import pytest

from broker.auth import create_token
from ingress.chat_signing import sign
from realpulsar.standalone import Standalone, TokenAuth
from tests.broker_helpers import admin, client, read_all
from tests.realpulsar_support import (
    REPO,
    instance_pids,
    rest,
    start_standalone,
    wait_running,
    wait_subscribed,
)
from tests.test_realpulsar_pipeline import build_archives
from wtpulsar import roles

pytestmark = pytest.mark.pulsar

FUNCTIONS = ["chunk", "moderate", "route", "transcode"]
INPUTS = ["chat-in", "raw-video", "raw-screen", "raw-audio", "file-in"]
TOPICS = [*INPUTS, "encoded", "segments", "chat-approved", "moderation", "dead-letter", "unroutable"]
NS = f"persistent://{roles.NAMESPACE}/"
ROOMS = f"persistent://{roles.ROOMS_NAMESPACE}/"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Standalone, dict[str, Path]]]:
    root = tmp_path_factory.mktemp("real-pulsar-auth")
    files = roles.ensure(root / "broker-auth", FUNCTIONS)
    standalone = start_standalone(root / "pulsar", state=False,
                                  auth=TokenAuth(files["secret"], files[roles.SUPERUSER], (roles.SUPERUSER,)))
    try:
        for namespace in (roles.NAMESPACE, roles.ROOMS_NAMESPACE):
            standalone.admin("namespaces", "create", namespace, check=True)
        for topic in TOPICS:  # the pipeline's topics exist before their topic-level grants, as `wtpulsar deploy` does it
            status, body = rest(standalone, "PUT", f"/admin/v2/persistent/{roles.NAMESPACE}/{topic}")
            assert status in (204, 409), (topic, status, body)
        roles.apply(standalone.admin_url, files[roles.SUPERUSER].read_text().strip(), FUNCTIONS)
        yield standalone, files
    finally:
        standalone.stop()


def token(files: dict[str, Path], role: str) -> pulsar.Authentication:
    return pulsar.AuthenticationToken(files[role].read_text().strip())


def test_a_client_without_a_token_is_refused(secured: tuple[Standalone, dict[str, Path]]) -> None:
    standalone, _files = secured
    with client(standalone.service_url, operation_timeout_seconds=10) as c, pytest.raises(pulsar.PulsarException):
        c.create_producer(NS + "chat-in")
    assert admin(standalone.admin_url, "GET", "/admin/v2/tenants", timeout=30.0)[0] == 401
    assert admin(standalone.admin_url, "GET", "/admin/v2/brokers/health", timeout=30.0)[0] == 401  # ours: open
    assert rest(standalone, "GET", "/admin/v2/tenants")[0] == 200  # with the superuser's token


def test_only_the_ingress_writes_the_inputs_and_route_writes_the_rooms(
        secured: tuple[Standalone, dict[str, Path]]) -> None:  # fmt: skip
    standalone, files = secured
    url = standalone.service_url
    with client(url, authentication=token(files, roles.INGRESS), operation_timeout_seconds=10) as c:
        for topic in INPUTS:
            c.create_producer(NS + topic).send(b"from the ingress")
    for role in [roles.CLI, *(roles.function_role(name) for name in FUNCTIONS)]:
        with client(url, authentication=token(files, role), operation_timeout_seconds=10) as c:
            for topic in INPUTS:
                with pytest.raises(pulsar.PulsarException, match="(?i)authoriz"):
                    c.create_producer(NS + topic)
    with client(url, authentication=token(files, roles.function_role("route")), operation_timeout_seconds=10) as c:
        c.create_producer(ROOMS + "room-auth-chat").send(b"routed")
        c.create_producer(NS + "unroutable").send(b"no rule")  # a topic grant beside the inputs
    with client(url, authentication=token(files, roles.function_role("moderate")), operation_timeout_seconds=10) as c:
        c.create_reader(NS + "chat-in", pulsar.MessageId.earliest).close()  # the namespace's consume grant ...
        c.create_producer(NS + "chat-approved").send(b"x")  # ... and its topics' produce grants add up
        with pytest.raises(pulsar.PulsarException, match="(?i)authoriz"):
            c.create_producer(ROOMS + "room-auth-chat")
    with client(url, authentication=token(files, roles.CLI), operation_timeout_seconds=10) as c:
        (msg,) = read_all(c.create_reader(ROOMS + "room-auth-chat", pulsar.MessageId.earliest), 1)
        assert msg.data() == b"routed"


def test_moderate_on_pulsar_rejects_chat_the_ingress_did_not_sign(
        secured: tuple[Standalone, dict[str, Path]], tmp_path: Path) -> None:  # fmt: skip
    standalone, files = secured
    archives = build_archives(tmp_path / "archives")
    key = secrets.token_hex(32)
    # On the process runtime the worker hands Python instances the ClearText secrets provider: the
    # secret's value is the key itself (docs/function-secrets.md).
    standalone.admin("functions", "create", "--function-config-file", str(REPO / "deploy" / "functions" / "moderate.yaml"),
                     "--py", str(archives["moderate"]), "--parallelism", "1",
                     "--secrets", json.dumps({"chatSigningKey": key}), check=True)  # fmt: skip
    try:
        wait_running(standalone, "moderate", timeout=300)
        wait_subscribed(standalone, ["chat-in"])
        # On the process runtime an instance authenticates with the worker's broker client credentials
        # (here the superuser's token file), not with a role of its own (docs/real-pulsar.md §9).
        (pid,) = instance_pids(standalone, "moderate")
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        assert f"--client_auth_params file://{files[roles.SUPERUSER].resolve()}" in cmdline
        room = f"auth{int(time.time())}"
        with client(standalone.service_url, authentication=token(files, roles.CLI), operation_timeout_seconds=10) as viewer:
            approved = viewer.create_reader(NS + "chat-approved", pulsar.MessageId.earliest)
            dead = viewer.create_reader(NS + "dead-letter", pulsar.MessageId.earliest)
            with client(standalone.service_url, authentication=token(files, roles.INGRESS)) as c:
                producer = c.create_producer(NS + "chat-in")
                for n, signing_key in ((1, key), (2, None), (3, "x" * 64)):
                    body = json.dumps({"room": room, "user": "alice", "msg_id": f"m{n}", "text": f"hello {n}",
                                       "sent_at": time.time() * 1000}).encode()  # fmt: skip
                    props = {"kind": "chat", "codec": "json", "room": room, "user": "alice", "stream": "c1",
                             "seq": str(n), "t_ingress": str(int(time.time() * 1000))}  # fmt: skip
                    if signing_key is not None:
                        props["chat_sig"] = sign(signing_key.encode(), props, body)
                    producer.send(body, properties=props, partition_key=room)
            mine = of_room(approved, room, 1)
            assert [p["msg_id"] for p in mine] == ["m1"]
            # (the dead-letter topic also holds what the other tests wrote to chat-in with the ingress's
            # token but no signature)
            rejected = of_room(dead, room, 2)
            assert [(p["seq"], p["reason"]) for p in rejected] == [("2", "unsigned"), ("3", "bad_signature")]
    finally:
        standalone.admin("functions", "delete", "--tenant", "public", "--namespace", "wtpulsar", "--name", "moderate")


def of_room(reader: pulsar.Reader, room: str, wanted: int, timeout: float = 60.0) -> list[dict[str, str]]:
    """Properties of the next ``wanted`` messages of ``room`` (others skipped), or fewer after ``timeout``."""
    found: list[dict[str, str]] = []
    deadline = time.monotonic() + timeout
    while len(found) < wanted and time.monotonic() < deadline:
        try:
            msg = reader.read_next(1000)
        except pulsar.Timeout:
            continue
        if msg.properties().get("room") == room:
            found.append(msg.properties())
    return found


def test_tokens_are_pulsars_format(secured: tuple[Standalone, dict[str, Path]]) -> None:
    """The role files roles.py writes are what Pulsar accepts: a token made the same way for a role
    with no grant authenticates (it is refused by authorization, not authentication)."""
    standalone, files = secured
    stranger = create_token(files["secret"].read_bytes().strip(), "stranger")
    with client(standalone.service_url, authentication=pulsar.AuthenticationToken(stranger),
                operation_timeout_seconds=10) as c, pytest.raises(pulsar.PulsarException, match="(?i)authoriz"):  # fmt: skip
        c.create_producer(NS + "chat-in")
