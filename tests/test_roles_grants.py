"""The grants `wtpulsar up` applies (wtpulsar/roles.py), on our broker with authentication on: only the
ingress role may write the input topics; route writes the rooms namespace and nothing of the inputs."""

from __future__ import annotations

from pathlib import Path

import pulsar
import pytest

from broker.auth import create_token
from tests.broker_helpers import client
from wtpulsar import roles

FUNCTIONS = ["chunk", "moderate", "route", "transcode"]
INPUTS = ["chat-in", "raw-video", "raw-screen", "raw-audio", "file-in"]
NS = f"persistent://{roles.NAMESPACE}/"
ROOMS = f"persistent://{roles.ROOMS_NAMESPACE}/"


@pytest.fixture
def granted(broker_factory, tmp_path: Path):
    files = roles.ensure(tmp_path / "auth", FUNCTIONS)
    broker = broker_factory(extra_args=["--auth-token-secret", f"file://{files['secret']}",
                                        "--superuser-roles", roles.SUPERUSER])
    roles.apply(broker.admin_url, files[roles.SUPERUSER].read_text().strip(), FUNCTIONS)
    secret = files["secret"].read_bytes().strip()
    return broker, lambda role: pulsar.AuthenticationToken(create_token(secret, role))


def test_route_may_write_room_topics_but_not_the_inputs(granted) -> None:
    broker, token = granted
    with client(broker.service_url, authentication=token(roles.function_role("route")), operation_timeout_seconds=5) as c:
        for topic in INPUTS:
            with pytest.raises(pulsar.PulsarException, match="Authoriz"):
                c.create_producer(NS + topic)
        c.create_producer(ROOMS + "room-r1-chat").send(b"routed")
        c.create_producer(NS + "unroutable").send(b"no rule")
        c.subscribe(NS + "segments", "route-sub").close()
    with client(broker.service_url, authentication=token(roles.INGRESS), operation_timeout_seconds=5) as c:
        for topic in INPUTS:
            c.create_producer(NS + topic).send(b"from a browser")
        c.create_reader(ROOMS + "room-r1-chat", pulsar.MessageId.earliest).close()  # egress
        with pytest.raises(pulsar.PulsarException, match="Authoriz"):
            c.create_producer(ROOMS + "room-r1-chat")  # the ingress reads rooms, it never writes them


def test_no_role_but_the_ingress_may_write_an_input_topic(granted) -> None:
    broker, token = granted
    others = [roles.CLI, *(roles.function_role(name) for name in FUNCTIONS)]
    for role in others:
        with client(broker.service_url, authentication=token(role), operation_timeout_seconds=5) as c:
            for topic in INPUTS:
                with pytest.raises(pulsar.PulsarException, match="Authoriz"):
                    c.create_producer(NS + topic)
    with client(broker.service_url, authentication=token(roles.CLI), operation_timeout_seconds=5) as c:
        reader = c.create_reader(ROOMS + "room-r1-video-360p", pulsar.MessageId.earliest)  # viewers' CLI
        reader.close()
        with pytest.raises(pulsar.PulsarException, match="Authoriz"):
            c.create_producer(ROOMS + "room-r1-chat")


def test_each_function_writes_only_its_own_outputs() -> None:
    for path, role, actions in roles.grants(FUNCTIONS):
        if "produce" not in actions:
            continue
        if path.startswith("namespaces/"):
            namespace = path.removeprefix("namespaces/").rsplit("/permissions/", 1)[0]
            assert (role, namespace) in {(roles.INGRESS, roles.NAMESPACE), ("fn-route", roles.ROOMS_NAMESPACE)}, path
        else:
            topic = path.removeprefix(f"persistent/{roles.NAMESPACE}/").split("/", 1)[0]
            assert topic not in INPUTS, path
