"""qh3's server connection with short Python paths (ingress/qh3_fast_path.py): an established connection
taken through them delivers what qh3's own paths deliver, and everything else still goes through qh3's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from qh3.quic.configuration import QuicConfiguration
from qh3.quic.connection import QuicConnection
from qh3.quic.events import StreamDataReceived
from qh3.quic.logger import QuicLogger

from ingress import certificates
from ingress.qh3_fast_path import FastPathConnection, is_short_header
from ingress.qh3_zero_cid import ZeroLengthCidConnection

CLIENT = ("127.0.0.1", 40000)
SERVER = ("127.0.0.1", 4433)


@pytest.fixture(scope="module")
def cert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("certs")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def tick(self) -> float:
        self.now += 0.001
        return self.now


def exchange(sender: Any, receiver: Any, sender_addr: Any, clock: Clock, seen: list[bytes] | None = None) -> int:
    datagrams = sender.datagrams_to_send(now=clock.tick())
    for data, _ in datagrams:
        if seen is not None:
            seen.append(data)
        receiver.receive_datagram(data, sender_addr, now=clock.tick())
    return len(datagrams)


def pair(cls: type[QuicConnection], cert_dir: Path, logger: bool = False) -> tuple[QuicConnection, Any, Clock]:
    cert = certificates.ensure(cert_dir)
    server_cfg = QuicConfiguration(is_client=False, alpn_protocols=["h3"], quic_logger=QuicLogger() if logger else None)
    server_cfg.load_cert_chain(str(cert.cert_path), str(cert.key_path))
    client_cfg = QuicConfiguration(is_client=True, alpn_protocols=["h3"], server_name="localhost")
    client_cfg.verify_mode = 0  # ssl.CERT_NONE: a generated certificate
    clock = Clock()
    client = QuicConnection(configuration=client_cfg)
    client.connect(SERVER, now=clock.tick())
    server = cls(configuration=server_cfg, original_destination_connection_id=client.original_destination_connection_id)
    for _ in range(40):  # qh3 as a server answers a one-datagram ClientHello after a retransmission (quic_stack.retry)
        exchange(client, server, CLIENT, clock)
        exchange(server, client, SERVER, clock)
        clock.now += 0.3
        for conn in (client, server):
            timer = conn.get_timer()
            if timer is not None and timer <= clock.now:
                conn.handle_timer(clock.now)
        if client._handshake_complete and server._handshake_complete and not client.datagrams_to_send(clock.tick()):
            break
    assert client._handshake_complete and server._handshake_complete
    return client, server, clock


def stream_data(conn: QuicConnection) -> dict[int, tuple[bytes, bool]]:
    """Stream id -> (bytes received in order, whether the FIN came), from the connection's events."""
    got: dict[int, tuple[bytes, bool]] = {}
    while (event := conn.next_event()) is not None:
        if isinstance(event, StreamDataReceived):
            data, ended = got.get(event.stream_id, (b"", False))
            got[event.stream_id] = (data + event.data, ended or event.end_stream)
    return got


def run(cls: type[QuicConnection], cert_dir: Path) -> tuple[dict[int, tuple[bytes, bool]], dict[int, tuple[bytes, bool]], list[bytes]]:
    """Server writes two uni streams, the client one bidi stream; what each side received, and the client's datagrams."""
    client, server, clock = pair(cls, cert_dir)
    stream_data(client), stream_data(server)
    records = [bytes([i]) * (700 * i + 5) for i in range(1, 7)]  # some shorter, some longer than a packet
    first = server.get_next_available_stream_id(is_unidirectional=True)
    server.send_stream_data(first, b"\x54\x00")  # a stream header, as H3 writes it when it opens a stream
    second = first + 4
    server.send_stream_data(second, b"\x54\x00")
    for i, record in enumerate(records):
        server.send_stream_data(first if i % 2 else second, record, end_stream=i >= len(records) - 2)
    upstream = client.get_next_available_stream_id()
    client.send_stream_data(upstream, b"publish" * 500, end_stream=True)
    from_client: list[bytes] = []
    for _ in range(20):
        moved = exchange(server, client, SERVER, clock) + exchange(client, server, CLIENT, clock, from_client)
        if not moved:
            break
    return stream_data(client), stream_data(server), from_client


def test_an_established_connection_delivers_the_same_streams_as_qh3s_own_paths(cert_dir: Path) -> None:
    fast_client_got, fast_server_got, fast_datagrams = run(FastPathConnection, cert_dir)
    plain_client_got, plain_server_got, _ = run(ZeroLengthCidConnection, cert_dir)
    assert fast_client_got == plain_client_got
    assert fast_server_got == plain_server_got
    assert sorted(fast_client_got) == [3, 7] and all(ended for _, ended in fast_client_got.values())
    assert fast_server_got == {0: (b"publish" * 500, True)}
    assert fast_datagrams and all(is_short_header(d) for d in fast_datagrams)  # what the fast receive path took


def test_the_fast_paths_are_the_ones_taken_once_established(cert_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client, server, clock = pair(FastPathConnection, cert_dir)
    calls: list[str] = []
    for name in ("datagrams_to_send", "receive_datagram", "send_stream_data"):
        original = getattr(ZeroLengthCidConnection, name)

        def spy(self: Any, *args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(ZeroLengthCidConnection, name, spy)
    stream = server.get_next_available_stream_id(is_unidirectional=True)
    server.send_stream_data(stream, b"first")  # a new stream: qh3 records it as opened
    server.send_stream_data(stream, b"second")  # recorded: the fast path
    server.send_stream_data(stream, bytearray(b"third"))  # not bytes: qh3's path
    exchange(server, client, SERVER, clock)
    exchange(client, server, CLIENT, clock)
    assert calls == ["send_stream_data", "send_stream_data"]
    assert stream_data(client)[stream] == (b"firstsecondthird", False)


def test_a_logged_connection_keeps_qh3s_paths(cert_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client, server, clock = pair(FastPathConnection, cert_dir, logger=True)
    calls: list[str] = []
    original = ZeroLengthCidConnection.datagrams_to_send

    def spy(self: Any, now: float) -> Any:
        calls.append("datagrams_to_send")
        return original(self, now)

    monkeypatch.setattr(ZeroLengthCidConnection, "datagrams_to_send", spy)
    server.send_ping(1)
    assert exchange(server, client, SERVER, clock) >= 1
    assert calls == ["datagrams_to_send"]


@pytest.mark.parametrize("cls", [FastPathConnection, ZeroLengthCidConnection])
def test_a_write_after_the_end_fails_as_on_qh3s_path(cls: type[QuicConnection], cert_dir: Path) -> None:
    client, server, clock = pair(cls, cert_dir)
    stream = server.get_next_available_stream_id(is_unidirectional=True)
    server.send_stream_data(stream, b"x", end_stream=True)
    with pytest.raises(ValueError, match="cannot write after FIN"):
        server.send_stream_data(stream, b"after the end")


def test_short_headers_are_told_from_long_ones() -> None:
    assert is_short_header(b"\x40rest")
    assert not is_short_header(b"\xc0rest")
    assert not is_short_header(b"")
