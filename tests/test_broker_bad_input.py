"""Bad input gets the protocol's error or a closed connection, one log line, no crash, no damage."""

from __future__ import annotations

import socket
import struct
import time

import jwt
import pulsar
import pytest

from broker.proto import pulsar_wire_pb2 as pb
from broker.wire import Frame, FrameDecoder, T, build_entry, command, encode_command, encode_payload_command
from tests.broker_helpers import client, read_all, unique_topic


class RawClient:
    """Speaks the wire format by hand, to send what the official client never would."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.decoder = FrameDecoder(64 * 1024 * 1024)
        self.frames: list[Frame] = []

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def connect(self, **fields: object) -> Frame:
        self.send(encode_command(command(T.CONNECT, client_version="raw-test", protocol_version=20, **fields)))
        return self.next()

    def next(self, timeout: float = 5) -> Frame:
        self.sock.settimeout(timeout)
        while not self.frames:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed by broker")
            self.frames.extend(self.decoder.feed(data))
        return self.frames.pop(0)

    def closed_by_peer(self, timeout: float = 5) -> bool:
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()


def assert_broker_healthy(broker) -> None:
    topic = unique_topic("alive")
    with client(broker.service_url) as c:
        c.create_producer(topic).send(b"still here")
        assert read_all(c.create_reader(topic, pulsar.MessageId.earliest), 1)[0].data() == b"still here"


def test_garbage_closes_connection_and_broker_carries_on(broker) -> None:
    raw = RawClient(broker.port)
    raw.send(b"\x00\x00\x00\x10" + b"\xff" * 16)
    assert raw.closed_by_peer()
    assert "malformed frame" in broker.log_text()
    assert_broker_healthy(broker)


def test_command_before_connect_closes(broker) -> None:
    raw = RawClient(broker.port)
    raw.send(encode_command(command(T.PING)))
    assert raw.closed_by_peer()


def test_connected_is_first_and_carries_version_and_size(broker) -> None:
    raw = RawClient(broker.port)
    frame = raw.connect()
    assert frame.command.type == T.CONNECTED
    assert frame.command.connected.server_version
    assert frame.command.connected.protocol_version == 20
    assert frame.command.connected.max_message_size == 5 * 1024 * 1024
    raw.send(encode_command(command(T.PING)))
    assert raw.next().command.type == T.PONG
    raw.close()


def _producer(raw: RawClient, topic: str) -> None:
    raw.send(encode_command(command(T.PRODUCER, topic=topic, producer_id=1, request_id=1)))
    reply = raw.next()
    assert reply.command.type == T.PRODUCER_SUCCESS, reply.command


def test_bad_checksum_gets_send_error_and_nothing_is_stored(broker) -> None:
    topic = unique_topic("crc")
    raw = RawClient(broker.port)
    raw.connect()
    _producer(raw, topic)
    meta = pb.MessageMetadata(producer_name="raw", sequence_id=0, publish_time=int(time.time() * 1000))
    entry = bytearray(build_entry(meta, b"payload"))
    entry[-1] ^= 0xFF  # corrupt the payload after the checksum was computed
    raw.send(encode_payload_command(command(T.SEND, producer_id=1, sequence_id=0), bytes(entry)))
    reply = raw.next()
    assert reply.command.type == T.SEND_ERROR and reply.command.send_error.error == pb.ChecksumError
    good = build_entry(pb.MessageMetadata(producer_name="raw", sequence_id=1, publish_time=1), b"ok")
    raw.send(encode_payload_command(command(T.SEND, producer_id=1, sequence_id=1), good))
    receipt = raw.next()
    assert receipt.command.type == T.SEND_RECEIPT and receipt.command.send_receipt.message_id.entryId == 0
    raw.close()
    with client(broker.service_url) as c:
        assert [m.data() for m in read_all(c.create_reader(topic, pulsar.MessageId.earliest), 2, timeout_ms=500)] == [b"ok"]


def test_frame_over_max_message_size_closes_connection(broker) -> None:
    raw = RawClient(broker.port)
    raw.connect()
    raw.send(struct.pack(">I", 6 * 1024 * 1024))  # announces a frame over the 5 MiB + 10 KiB limit
    assert raw.closed_by_peer()
    assert "exceeds the limit" in broker.log_text()
    assert_broker_healthy(broker)


def test_unknown_and_unsupported_commands(broker) -> None:
    raw = RawClient(broker.port)
    raw.connect()
    txn = pb.BaseCommand(type=T.NEW_TXN)
    # NEW_TXN has no sub-message in our subset: the broker cannot answer a request id, so it closes.
    raw.send(encode_command(txn))
    assert raw.closed_by_peer()
    raw = RawClient(broker.port)
    raw.connect()
    raw.send(encode_command(command(T.GET_OR_CREATE_SCHEMA, request_id=9, topic="bad topic name", schema=pb.Schema(name="x", schema_data=b"", type=pb.Schema.String))))
    reply = raw.next()
    assert reply.command.type == T.GET_OR_CREATE_SCHEMA_RESPONSE
    assert reply.command.getOrCreateSchemaResponse.error_code == pb.InvalidTopicName


@pytest.mark.parametrize("topic", ["persistent://a/b", "persistent://public/default/../../etc", "http://public/default/x", "persistent://pub lic/default/x"])
def test_invalid_topic_names_are_refused(broker, topic: str) -> None:
    raw = RawClient(broker.port)
    raw.connect()
    raw.send(encode_command(command(T.LOOKUP, topic=topic, request_id=3)))
    lookup = raw.next().command.lookupTopicResponse
    assert lookup.response == pb.CommandLookupTopicResponse.Failed and lookup.error == pb.InvalidTopicName
    raw.send(encode_command(command(T.PRODUCER, topic=topic, producer_id=1, request_id=4)))
    error = raw.next().command
    assert error.type == T.ERROR and error.error.error == pb.InvalidTopicName
    assert not list(broker.data_dir.rglob("etc"))


def test_send_for_unknown_producer_closes(broker) -> None:
    raw = RawClient(broker.port)
    raw.connect()
    entry = build_entry(pb.MessageMetadata(producer_name="x", sequence_id=0, publish_time=1), b"x")
    raw.send(encode_payload_command(command(T.SEND, producer_id=77, sequence_id=0), entry))
    assert raw.closed_by_peer()


def test_token_authentication(broker_factory, tmp_path) -> None:
    secret = tmp_path / "secret.key"
    secret.write_bytes(b"a-test-secret-that-is-long-enough-32b")
    broker = broker_factory(extra_args=["--auth-token-secret", str(secret), "--superuser-roles", "tester"])
    good = jwt.encode({"sub": "tester"}, secret.read_bytes(), algorithm="HS256")
    with client(broker.service_url, authentication=pulsar.AuthenticationToken(good)) as c:
        topic = unique_topic("auth")
        c.create_producer(topic).send(b"authorised")
    for token in ("not-a-jwt", jwt.encode({"sub": "x"}, b"another-secret-of-sufficient-len", algorithm="HS256"), jwt.encode({"sub": "x", "exp": 1}, secret.read_bytes(), algorithm="HS256")):
        raw = RawClient(broker.port)
        reply = raw.connect(auth_method_name="token", auth_data=token.encode())
        assert reply.command.type == T.ERROR and reply.command.error.error == pb.AuthenticationError
        assert raw.closed_by_peer()
    raw = RawClient(broker.port)
    reply = raw.connect()
    assert reply.command.type == T.ERROR
    log = broker.log_text()
    assert "token has expired" in log and "invalid token" in log and "is not accepted" in log
