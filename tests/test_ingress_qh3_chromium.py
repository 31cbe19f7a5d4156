"""qh3 2.1.0 and clients with a zero-length connection id, as Chromium's (docs/quic-stack.md §2, §3):
Chromium's recorded first flight replayed offline into plain qh3 and into ingress/qh3_zero_cid.py, and an
in-memory aioquic client with a zero-length connection id against both. No browser, no sockets."""

from __future__ import annotations

from typing import Any

import pytest
from aioquic._buffer import Buffer  # where aioquic defines it (aioquic.buffer re-exports it implicitly)
from aioquic.quic.configuration import QuicConfiguration as AioquicConfiguration
from aioquic.quic.connection import QuicConnection as AioquicConnection
from aioquic.quic.crypto import CryptoPair
from aioquic.quic.events import HandshakeCompleted as AioquicHandshakeCompleted
from aioquic.quic.events import StreamDataReceived as AioquicStreamDataReceived
from qh3._hazmat import pull_quic_header
from qh3.quic.configuration import QuicConfiguration
from qh3.quic.connection import QuicConnection
from qh3.quic.events import HandshakeCompleted, StreamDataReceived
from qh3.quic.packet import QuicErrorCode, QuicPacketType, encode_quic_retry

from ingress import certificates, quic_stack
from ingress.qh3_zero_cid import ZeroLengthCidConnection, initial_keys
from tests.chromium_first_flight import load

CLIENT = ("127.0.0.1", 40000)
SERVER = ("127.0.0.1", 4433)
CID_LENGTH = 8  # qh3's QuicConfiguration.connection_id_length, the ingress's


@pytest.fixture(scope="module")
def server_configuration(tmp_path_factory: pytest.TempPathFactory) -> QuicConfiguration:
    cert = certificates.ensure(tmp_path_factory.mktemp("certs"))
    configuration = QuicConfiguration(is_client=False, alpn_protocols=["h3"], max_datagram_frame_size=65536)
    configuration.load_cert_chain(str(cert.cert_path), str(cert.key_path))
    return configuration


def chromium_initials_after_retry() -> list[bytes]:
    """The recorded Initial datagrams Chromium sent with the Retry token, in order (docs/quic-stack.md §4)."""
    return [d.data for d in load() if d.direction == "c2s"
            and pull_quic_header(d.data, 0, CID_LENGTH)[1] == int(QuicPacketType.INITIAL)
            and pull_quic_header(d.data, 0, CID_LENGTH)[5]]


def server_after_retry(cls: type[QuicConnection], configuration: QuicConfiguration) -> QuicConnection:
    """The connection qh3's QuicServer makes once a token is valid: the original Destination Connection ID
    Chromium chose and the Retry's Source Connection ID (the Destination Connection ID it uses since)."""
    first = next(d.data for d in load() if d.direction == "c2s")
    retried = chromium_initials_after_retry()[0]
    return cls(configuration=configuration,
               original_destination_connection_id=pull_quic_header(first, 0, CID_LENGTH)[3],
               retry_source_connection_id=pull_quic_header(retried, 0, CID_LENGTH)[3])


def replay(server: QuicConnection) -> list[bytes]:
    """Feed Chromium's Initials to ``server``; the datagrams it sends."""
    sent: list[bytes] = []
    for at, data in enumerate(chromium_initials_after_retry()):
        server.receive_datagram(data, CLIENT, now=100.0 + at * 0.01)
        sent += [out for out, _ in server.datagrams_to_send(now=100.0 + at * 0.01)]
    return sent


def long_headers(datagram: bytes) -> list[tuple[int, bytes]]:
    """(packet type, Destination Connection ID) of each long-header packet of a datagram (RFC 9000 §17.2)."""
    found, offset = [], 0
    while offset < len(datagram) and datagram[offset] & 0x80:
        header = pull_quic_header(datagram, offset, CID_LENGTH)
        found.append((header[1], header[3]))
        offset = header[9]
    return found


def test_the_recording_is_chromiums_first_flight_with_a_zero_length_connection_id() -> None:
    initials = chromium_initials_after_retry()
    assert len(initials) >= 2 and all(len(d) >= 1200 for d in initials)
    headers = [pull_quic_header(d, 0, CID_LENGTH) for d in initials]
    assert {h[4] for h in headers} == {b""}  # Source Connection ID: empty (RFC 9000 §5.1)
    assert {len(h[3]) for h in headers} == {CID_LENGTH}


def test_plain_qh3_refuses_the_recorded_flight_and_answers_to_the_wrong_id(server_configuration: QuicConfiguration) -> None:
    server = server_after_retry(QuicConnection, server_configuration)
    sent = replay(server)
    close = server._close_event
    assert close is not None
    assert (close.error_code, close.reason_phrase) == (QuicErrorCode.TRANSPORT_PARAMETER_ERROR,
                                                       "initial_source_connection_id does not match")
    packets = [p for d in sent for p in long_headers(d)]
    assert packets and all(dcid != b"" for _, dcid in packets), packets  # Chromium drops every one


def test_zero_cid_connection_sends_its_whole_flight_to_chromiums_empty_id(server_configuration: QuicConfiguration) -> None:
    server = server_after_retry(ZeroLengthCidConnection, server_configuration)
    sent = replay(server)
    assert server._close_event is None
    packets = [p for d in sent for p in long_headers(d)]
    assert {t for t, _ in packets} == {int(QuicPacketType.INITIAL), int(QuicPacketType.HANDSHAKE)}, packets
    assert {dcid for _, dcid in packets} == {b""}
    # the Initial keys installed from Chromium's Destination Connection ID are the ones Chromium opens the
    # server's Initial with (aioquic's client keys here): it authenticates and starts with the ServerHello
    client_dcid = pull_quic_header(chromium_initials_after_retry()[0], 0, CID_LENGTH)[3]
    first = next(d for d in sent if len(d) >= 1200)
    header = pull_quic_header(first, 0, CID_LENGTH)
    crypto = CryptoPair()
    crypto.setup_initial(client_dcid, is_client=True, version=1)
    _, payload, _ = crypto.decrypt_packet(first[:header[9]], header[8], 0)
    assert crypto_frames(payload)[0][:1] == b"\x02"  # handshake message type 2: ServerHello (RFC 8446 §4)


def crypto_frames(payload: bytes) -> dict[int, bytes]:
    """The CRYPTO frames of a decrypted Initial payload by offset; PADDING, PING and ACK skipped (RFC 9000 §19)."""
    buf, found = Buffer(data=payload), {}
    while not buf.eof():
        frame_type = buf.pull_uint_var()
        if frame_type == 0x06:
            offset, length = buf.pull_uint_var(), buf.pull_uint_var()
            found[offset] = buf.pull_bytes(length)
        elif frame_type in (0x02, 0x03):  # ACK: largest, delay, range count, first range, then the ranges
            buf.pull_uint_var(), buf.pull_uint_var()
            ranges = buf.pull_uint_var()
            buf.pull_uint_var()
            for _ in range(2 * ranges):
                buf.pull_uint_var()
            if frame_type == 0x03:
                for _ in range(3):
                    buf.pull_uint_var()
        elif frame_type not in (0x00, 0x01):
            raise AssertionError(f"unexpected frame type {frame_type:#x} in an Initial")
    return found


def test_initial_keys_match_rfc_9001_appendix_a() -> None:
    """RFC 9001 Appendix A.1: the keys for the Destination Connection ID 0x8394c8f03e515708."""
    dcid = bytes.fromhex("8394c8f03e515708")
    assert initial_keys(1, dcid, "client") == (bytes.fromhex("1f369613dd76d5467730efcbe3b1a22d"),
                                              bytes.fromhex("fa044b2f42a3fd3b46fb255c"),
                                              bytes.fromhex("9f50449e04a0e810283a1e9933adedd2"))
    assert initial_keys(1, dcid, "server") == (bytes.fromhex("cf3a5331653c364c88f0f379b6067e37"),
                                              bytes.fromhex("0ac1493ca1905853b0bba03e"),
                                              bytes.fromhex("c206b8d9b9f0f37644430b490eeaa314"))


class ZeroLengthIdClient(AioquicConnection):
    """aioquic as a client with a zero-length connection id, as Chromium is. aioquic would still announce more
    (empty) ids in NEW_CONNECTION_ID frames, which RFC 9000 §19.15 forbids to such an endpoint and qh3 rightly
    refuses; Chromium sends none, and neither does this client."""

    def _replenish_connection_ids(self) -> None:
        pass


def aioquic_client_with_zero_length_id() -> AioquicConnection:
    configuration = AioquicConfiguration(is_client=True, alpn_protocols=["h3"], connection_id_length=0,
                                         max_datagram_frame_size=65536)
    configuration.verify_mode = 0  # ssl.CERT_NONE: a generated certificate
    client = ZeroLengthIdClient(configuration=configuration)
    client.connect(SERVER, now=1.0)
    return client


def handshake(cls: type[QuicConnection], configuration: QuicConfiguration) -> tuple[AioquicConnection, Any, list[Any]]:
    """An aioquic client with a zero-length connection id through a Retry (as the ingress on qh3 sends one) to a
    server of ``cls``, then a stream each way; (client, server, client events)."""
    client = aioquic_client_with_zero_length_id()
    first = client.datagrams_to_send(now=1.0)[0][0]
    header = pull_quic_header(first, 0, CID_LENGTH)
    assert header[4] == b""
    retry_cid = bytes(range(1, 9))
    client.receive_datagram(encode_quic_retry(version=1, source_cid=retry_cid, destination_cid=header[4],
                                              original_destination_cid=header[3], retry_token=b"token"), SERVER, now=1.0)
    server = cls(configuration=configuration, original_destination_connection_id=header[3],
                 retry_source_connection_id=retry_cid)
    client_events: list[Any] = []
    now = 1.0
    for _ in range(10):
        for data, _ in client.datagrams_to_send(now=now):
            server.receive_datagram(data, CLIENT, now=now)
        for data, _ in server.datagrams_to_send(now=now):
            client.receive_datagram(data, SERVER, now=now)
        while (event := client.next_event()) is not None:
            client_events.append(event)
            if isinstance(event, AioquicHandshakeCompleted):
                client.send_stream_data(0, b"ping", end_stream=True)
        while (server_event := server.next_event()) is not None:
            if isinstance(server_event, StreamDataReceived) and server_event.data == b"ping":
                server.send_stream_data(server_event.stream_id, b"pong", end_stream=True)
            if isinstance(server_event, HandshakeCompleted):
                client_events.append("server handshake completed")
        now += 0.01
    return client, server, client_events


def test_a_zero_length_id_client_completes_handshake_and_streams_with_the_zero_cid_connection(
        server_configuration: QuicConfiguration) -> None:
    _, server, events = handshake(ZeroLengthCidConnection, server_configuration)
    assert server._close_event is None
    assert any(isinstance(e, AioquicHandshakeCompleted) for e in events), events
    assert "server handshake completed" in events
    assert b"".join(e.data for e in events if isinstance(e, AioquicStreamDataReceived)) == b"pong"


def test_a_zero_length_id_client_never_connects_to_plain_qh3(server_configuration: QuicConfiguration) -> None:
    _, server, events = handshake(QuicConnection, server_configuration)
    assert not any(isinstance(e, AioquicHandshakeCompleted) for e in events), events
    assert server._close_event is not None
    assert server._close_event.reason_phrase == "initial_source_connection_id does not match"


def test_clients_with_a_connection_id_keep_qh3s_own_path(server_configuration: QuicConfiguration) -> None:
    """A non-empty Source Connection ID: the server's id stays its own and the peer's is the client's."""
    configuration = AioquicConfiguration(is_client=True, alpn_protocols=["h3"])
    configuration.verify_mode = 0
    client = AioquicConnection(configuration=configuration)
    client.connect(SERVER, now=1.0)
    first = client.datagrams_to_send(now=1.0)[0][0]
    server = ZeroLengthCidConnection(configuration=server_configuration,  # address validated, as after a Retry
                                     original_destination_connection_id=pull_quic_header(first, 0, CID_LENGTH)[3],
                                     retry_source_connection_id=b"r" * CID_LENGTH)
    own = server.host_cid
    server.receive_datagram(first, CLIENT, now=1.0)
    sent = server.datagrams_to_send(now=1.0)
    assert server.host_cid == own and server._client_dcid is None
    assert {dcid for d, _ in sent for _, dcid in long_headers(d)} == {client.host_cid}


def test_only_qh3_server_connections_are_replaced() -> None:
    marker = object()
    assert quic_stack.load("aioquic").server_connection(marker) is marker


def test_replacing_keeps_what_qh3s_server_gave_the_connection(server_configuration: QuicConfiguration) -> None:
    original = QuicConnection(configuration=server_configuration, original_destination_connection_id=b"o" * 8,
                              retry_source_connection_id=b"r" * 8)
    replaced = quic_stack.load("qh3").server_connection(original)
    assert isinstance(replaced, ZeroLengthCidConnection)
    assert (replaced.host_cid, replaced.original_destination_connection_id, replaced._retry_source_connection_id) == (
        original.host_cid, b"o" * 8, b"r" * 8)
    assert replaced.configuration is server_configuration
