"""Names that cannot escape the data dir, an admin REST that asks who you are (or at least where
you come from), roles on topics, and bounds before CONNECT (SECURITY.md, docs/names.md)."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import jwt
import pulsar
import pytest

from broker.proto import pulsar_wire_pb2 as pb
from broker.wire import T, command, encode_command
from tests.broker_helpers import admin, client, read_all, unique_topic
from tests.test_broker_bad_input import RawClient

TENANT_INFO = {"adminRoles": [], "allowedClusters": ["standalone"]}  # what Pulsar requires to create a tenant

SECRET = b"security-test-secret-of-32-bytes-or-more"
BAD_NAMES = ["..", ".", "%2E%2E", "a%2Fb", "%2E", "bad%20name", "x%00y"]


def token(role: str, secret: bytes = SECRET) -> str:
    return jwt.encode({"sub": role}, secret, algorithm="HS256")


def snapshot(data_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(data_dir)): p.read_bytes() for p in sorted(data_dir.rglob("*")) if p.is_file() and not p.name.endswith(".log")}


def outside_files(data_dir: Path) -> set[str]:
    return {p.name for p in data_dir.parent.iterdir()}


# ---------------------------------------------------------------- names and paths
def test_admin_paths_refuse_every_bad_name_and_leave_the_data_dir_alone(broker_factory) -> None:
    broker = broker_factory()
    url = broker.admin_url
    assert admin(url, "PUT", "/admin/v2/tenants/acme", TENANT_INFO)[0] == 204
    assert admin(url, "PUT", "/admin/v2/namespaces/acme/live")[0] == 204
    assert admin(url, "PUT", "/admin/v2/persistent/acme/live/keep/partitions", 2)[0] == 204
    with client(broker.service_url) as c:
        c.create_producer("persistent://acme/live/plain").send(b"precious")
    before, around = snapshot(broker.data_dir), outside_files(broker.data_dir)
    templates = [
        ("PUT", "/admin/v2/tenants/{n}"), ("DELETE", "/admin/v2/tenants/{n}"), ("GET", "/admin/v2/namespaces/{n}"),
        ("PUT", "/admin/v2/namespaces/{n}/{n}"), ("PUT", "/admin/v2/namespaces/acme/{n}"), ("DELETE", "/admin/v2/namespaces/{n}/{n}"),
        ("POST", "/admin/v2/namespaces/{n}/{n}/deduplication"), ("GET", "/admin/v2/persistent/{n}/{n}"),
        ("GET", "/admin/v2/persistent/{n}/{n}/partitioned"), ("PUT", "/admin/v2/persistent/{n}/{n}/{n}"),
        ("PUT", "/admin/v2/persistent/acme/live/{n}"), ("DELETE", "/admin/v2/persistent/{n}/{n}/{n}?force=true"),
        ("DELETE", "/admin/v2/persistent/acme/{n}/plain?force=true"), ("PUT", "/admin/v2/persistent/{n}/{n}/{n}/partitions"),
        ("DELETE", "/admin/v2/persistent/{n}/{n}/{n}/partitions"), ("GET", "/admin/v2/persistent/{n}/{n}/{n}/stats"),
        ("GET", "/admin/v2/schemas/{n}/{n}/metadata/schema"), ("POST", "/admin/v2/schemas/{n}/{n}/metadata/schema"),
        ("POST", "/admin/v2/schemas/acme/live/{n}/schema"), ("POST", "/admin/v2/namespaces/{n}/live/permissions/writer"), ("POST", "/admin/v2/persistent/acme/live/{n}/permissions/w"),
    ]
    for method, template in templates:
        for name in BAD_NAMES:
            body: object = {"POST": True, "PUT": 2}.get(method) if "partitions" in template or "dedup" in template else None
            if "schema" in template and method == "POST":
                body = {"type": "STRING", "schema": ""}
            if "permissions" in template:
                body = ["produce"]
            status, reply = admin(url, method, template.format(n=name), body)
            assert 400 <= status < 500 and status != 405, (method, template, name, status, reply)
    assert snapshot(broker.data_dir) == before
    assert outside_files(broker.data_dir) == around
    assert not {"..", "."} & set(admin(url, "GET", "/admin/v2/tenants")[1])
    with client(broker.service_url) as c:  # the data is still served
        assert read_all(c.create_reader("persistent://acme/live/plain", pulsar.MessageId.earliest), 1)[0].data() == b"precious"


def test_the_reported_namespace_deletion_cannot_happen(broker_factory) -> None:
    """Tenant `..`, namespace `../..`, a topic under it, then a forced delete: refused at step one."""
    broker = broker_factory()
    url = broker.admin_url
    with client(broker.service_url) as c:
        c.create_producer("persistent://public/default/kept").send(b"kept")
    assert admin(url, "PUT", "/admin/v2/tenants/..")[0] == 412
    assert admin(url, "PUT", "/admin/v2/tenants/%2E%2E")[0] == 412
    assert admin(url, "PUT", "/admin/v2/namespaces/%2E%2E/%2E%2E%2F%2E%2E")[0] in (404, 412)
    assert admin(url, "DELETE", "/admin/v2/persistent/%2E%2E/%2E%2E/x?force=true")[0] == 412
    assert list(broker.data_dir.rglob("ledgers.json"))


def raw_schema_request(raw: RawClient, kind: int, topic: str, request_id: int) -> pb.BaseCommand:
    schema = pb.Schema(name="x", schema_data=b'{"evil": true}', type=pb.Schema.Json)
    if kind == T.GET_OR_CREATE_SCHEMA:
        raw.send(encode_command(command(T.GET_OR_CREATE_SCHEMA, request_id=request_id, topic=topic, schema=schema)))
    else:
        raw.send(encode_command(command(T.GET_SCHEMA, request_id=request_id, topic=topic)))
    return raw.next().command


def test_schema_commands_cannot_overwrite_broker_files_and_need_a_namespace(broker_factory) -> None:
    broker = broker_factory()
    assert admin(broker.admin_url, "PUT", "/admin/v2/tenants/acme", TENANT_INFO)[0] == 204
    assert admin(broker.admin_url, "PUT", "/admin/v2/namespaces/acme/live")[0] == 204
    metadata = broker.data_dir / "metadata.json"
    saved = metadata.read_bytes()
    raw = RawClient(broker.port)
    raw.connect()
    for request_id, topic in enumerate(["persistent://../../metadata", "persistent://public/../../../metadata", "../../metadata"]):
        for kind in (T.GET_OR_CREATE_SCHEMA, T.GET_SCHEMA):
            reply = raw_schema_request(raw, kind, topic, request_id)
            body = reply.getOrCreateSchemaResponse if kind == T.GET_OR_CREATE_SCHEMA else reply.getSchemaResponse
            assert body.error_code == pb.InvalidTopicName, (topic, body)
    assert metadata.read_bytes() == saved
    for kind in (T.GET_OR_CREATE_SCHEMA, T.GET_SCHEMA):  # a namespace that does not exist: as Pulsar, TopicNotFound
        reply = raw_schema_request(raw, kind, "persistent://ghost/nowhere/t", 99)
        body = reply.getOrCreateSchemaResponse if kind == T.GET_OR_CREATE_SCHEMA else reply.getSchemaResponse
        assert body.error_code == pb.TopicNotFound and "ghost/nowhere" in body.error_message
    assert not list(broker.data_dir.rglob("ghost"))
    broker.kill()
    broker.start()
    assert "acme/live" in admin(broker.admin_url, "GET", "/admin/v2/namespaces/acme")[1]


def test_subscription_names_stay_in_their_topic(broker_factory) -> None:
    broker = broker_factory()
    topic = unique_topic("subs")
    with client(broker.service_url) as c:
        c.subscribe(topic, "../../../../escaped").close()
        c.subscribe(topic, "..").close()
        with pytest.raises(pulsar.PulsarException):
            c.subscribe(topic, "bad\x01name")
    assert not (broker.data_dir.parent / "escaped.json").exists()
    assert not list(broker.data_dir.parent.glob("*.json"))
    cursors = next(broker.data_dir.rglob("cursors"))
    assert {p.parent for p in broker.data_dir.rglob("*.json") if "escaped" in p.name or p.name.startswith("%2E")} == {cursors}


# ---------------------------------------------------------------- admin REST: who and from where
def test_admin_rest_requires_a_superuser_token_when_auth_is_on(broker_factory, tmp_path) -> None:
    (tmp_path / "secret").write_bytes(SECRET)
    broker = broker_factory(extra_args=["--auth-token-secret", str(tmp_path / "secret"), "--superuser-roles", "admin"])
    url = broker.admin_url
    status, reply = admin(url, "PUT", "/admin/v2/tenants/acme")
    assert status == 401 and "Bearer" in reply["reason"]
    assert admin(url, "PUT", "/admin/v2/tenants/acme", token="not-a-token")[0] == 401
    assert admin(url, "PUT", "/admin/v2/tenants/acme", token=token("admin", b"another-secret-of-32-bytes-or-more!!"))[0] == 401
    status, reply = admin(url, "DELETE", "/admin/v2/persistent/public/default/x?force=true", token=token("ingress"))
    assert status == 403 and "'ingress'" in reply["reason"]
    assert admin(url, "POST", "/admin/v2/namespaces/public/default/deduplication", False, token=token("ingress"))[0] == 403
    assert admin(url, "PUT", "/admin/v2/tenants/acme", TENANT_INFO, token=token("admin"))[0] == 204
    assert admin(url, "GET", "/admin/v2/tenants", token=token("admin"))[1].count("acme") == 1
    assert admin(url, "GET", "/metrics")[0] == 200  # Pulsar leaves metrics open by default


@pytest.mark.parametrize(
    "headers",
    [{"Host": "evil.example:80"}, {"Host": "rebind.attacker.test"}, {"Origin": "http://evil.example"}, {"Origin": "null"},
     {"Sec-Fetch-Site": "cross-site"}],
)
def test_admin_rest_without_auth_refuses_foreign_host_and_origin(broker, headers) -> None:
    for method, path, body in (("PUT", "/admin/v2/tenants/foreign", None), ("POST", "/admin/v2/namespaces/public/default/deduplication", False),
                               ("GET", "/admin/v2/tenants", None)):
        status, reply = admin(broker.admin_url, method, path, body, headers=headers)
        assert status == 403, (headers, method, path, status, reply)
    assert "foreign" not in admin(broker.admin_url, "GET", "/admin/v2/tenants")[1]
    same = {"Host": f"localhost:{broker.http_port}", "Origin": f"http://127.0.0.1:{broker.http_port}"}
    assert admin(broker.admin_url, "GET", "/admin/v2/tenants", headers=same)[0] == 200


# ---------------------------------------------------------------- roles on topics
def _auth_broker(broker_factory, tmp_path):
    (tmp_path / "secret").write_bytes(SECRET)
    return broker_factory(extra_args=["--auth-token-secret", f"file://{tmp_path / 'secret'}", "--superuser-roles", "admin"])


def _as(broker, role: str):
    return client(broker.service_url, authentication=pulsar.AuthenticationToken(token(role)))


def test_topic_permissions_by_role(broker_factory, tmp_path) -> None:
    broker = _auth_broker(broker_factory, tmp_path)
    url, su = broker.admin_url, token("admin")
    assert admin(url, "POST", "/admin/v2/namespaces/public/default/permissions/writer", ["produce"], token=su)[0] == 204
    assert admin(url, "POST", "/admin/v2/namespaces/public/default/permissions/reader", ["consume"], token=su)[0] == 204
    status, reply = admin(url, "POST", "/admin/v2/namespaces/public/default/permissions/x", ["fly"], token=su)
    assert status == 400 and "fly" in reply["reason"]
    assert admin(url, "GET", "/admin/v2/namespaces/public/default/permissions", token=su) == (200, {"reader": ["consume"], "writer": ["produce"]})
    topic = unique_topic("perm")
    with _as(broker, "writer") as c:
        c.create_producer(topic).send(b"allowed")
        with pytest.raises(pulsar.PulsarException, match="Authoriz"):
            c.subscribe(topic, "peek")
        with pytest.raises(pulsar.PulsarException, match="Authoriz"):
            c.create_producer("persistent://pulsar/system/anything")
    with _as(broker, "reader") as c:
        assert read_all(c.create_reader(topic, pulsar.MessageId.earliest), 1)[0].data() == b"allowed"
        with pytest.raises(pulsar.PulsarException, match="Authoriz"):
            c.create_producer(topic)
    with _as(broker, "stranger") as c:
        with pytest.raises(pulsar.PulsarException, match="Authoriz"):
            c.create_producer(topic)
        with pytest.raises(pulsar.PulsarException, match="Authoriz"):
            c.subscribe(topic, "s")
    # a topic-level grant covers that topic only; revoking takes it away from new producers
    one, other = unique_topic("one"), unique_topic("other")
    path = one.replace("persistent://", "/admin/v2/persistent/")
    assert admin(url, "POST", f"{path}/permissions/narrow", ["produce"], token=su)[0] == 204
    with _as(broker, "narrow") as c:
        c.create_producer(one).send(b"x")
        with pytest.raises(pulsar.PulsarException, match="Authoriz"):
            c.create_producer(other)
    assert admin(url, "DELETE", f"{path}/permissions/narrow", token=su)[0] == 204
    assert admin(url, "DELETE", "/admin/v2/namespaces/public/default/permissions/writer", token=su)[0] == 204
    with _as(broker, "narrow") as c, pytest.raises(pulsar.PulsarException, match="Authoriz"):
        c.create_producer(one)
    with _as(broker, "writer") as c, pytest.raises(pulsar.PulsarException, match="Authoriz"):
        c.create_producer(topic)
    assert "refusing produce on" in broker.log_text()


def test_schema_request_with_any_valid_token_needs_produce_permission(broker_factory, tmp_path) -> None:
    broker = _auth_broker(broker_factory, tmp_path)
    raw = RawClient(broker.port)
    assert raw.connect(auth_method_name="token", auth_data=token("nobody").encode()).command.type == T.CONNECTED
    reply = raw_schema_request(raw, T.GET_OR_CREATE_SCHEMA, "persistent://public/default/some", 1)
    assert reply.getOrCreateSchemaResponse.error_code == pb.AuthorizationError
    assert not list(broker.data_dir.rglob("some.json"))


def test_broker_secret_shorter_than_32_bytes_is_refused(tmp_path) -> None:
    import subprocess
    import sys

    (tmp_path / "short").write_bytes(b"x")
    done = subprocess.run([sys.executable, "-m", "wtpulsar.cli", "broker", "--listen", "127.0.0.1:0", "--data", str(tmp_path / "d"),
                           "--auth-token-secret", str(tmp_path / "short")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "1 bytes; at least 32" in done.stderr


# ---------------------------------------------------------------- bounds before CONNECT
def test_connections_are_bounded_and_must_connect_in_time(broker_factory) -> None:
    broker = broker_factory(extra_args=["--max-connections", "3", "--handshake-timeout", "1"])
    idle = [RawClient(broker.port) for _ in range(3)]
    time.sleep(0.2)
    extra = RawClient(broker.port)
    assert extra.closed_by_peer(timeout=3)
    assert "refusing connection" in broker.log_text()
    for raw in idle:  # none of them sent CONNECT: closed after the handshake timeout
        assert raw.closed_by_peer(timeout=5)
    assert "no CONNECT within" in broker.log_text()
    with client(broker.service_url) as c:  # slots are free again
        c.create_producer(unique_topic("after")).send(b"ok")


def test_bytes_before_connect_are_bounded(broker) -> None:
    raw = RawClient(broker.port)
    raw.send(struct.pack(">I", 4 * 1024 * 1024) + b"\x00" * 1024)  # announces a 4 MiB frame before CONNECT
    assert raw.closed_by_peer(timeout=5)
    raw = RawClient(broker.port)
    try:
        for _ in range(40):  # dribbles a never-ending partial frame under the frame limit
            raw.send(struct.pack(">I", 60 * 1024) if _ == 0 else b"\x00" * 4096)
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert raw.closed_by_peer(timeout=5)
    assert "before CONNECT" in broker.log_text() or "exceeds the limit" in broker.log_text()


def test_in_memory_core_closes_connections_that_never_connect() -> None:
    from broker.config import BrokerConfig
    from broker.connection import ServerConnection
    from broker.service import BrokerService

    service = BrokerService(BrokerConfig(data_dir=None, handshake_timeout=5))
    closed: list[bool] = []
    conn = ServerConnection(service, lambda b: None, lambda: closed.append(True), "test", now=100.0)
    service.expire_handshakes(104.0)
    assert not closed and conn in service.pending
    service.expire_handshakes(105.5)
    assert closed and conn not in service.pending
