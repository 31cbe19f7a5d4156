"""ingress/peer_datagram_size.py: an aioquic server with a packet size above 1200 sends no packet larger than
the peer's max_udp_payload_size (RFC 9000 §18.2), and keeps its own size when the peer announces none."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import StreamDataReceived

from ingress import certificates
from ingress.peer_datagram_size import limit_to_peer, peer_max_udp_payload

SERVER, CLIENT = ("127.0.0.1", 4433), ("127.0.0.1", 50000)


def _client(announce: int | None) -> QuicConnection:
    cfg = QuicConfiguration(is_client=True, alpn_protocols=["h3"], verify_mode=0)
    cfg.server_name = "localhost"
    client = QuicConnection(configuration=cfg)
    if announce is not None:  # aioquic's client sends no max_udp_payload_size: add it as a browser would
        serialize = client._serialize_transport_parameters

        def with_limit() -> bytes:
            from aioquic._buffer import Buffer
            from aioquic.quic.packet import pull_quic_transport_parameters, push_quic_transport_parameters

            params = pull_quic_transport_parameters(Buffer(data=serialize()))
            params.max_udp_payload_size = announce
            buf = Buffer(capacity=4096)
            push_quic_transport_parameters(buf, params)
            return buf.data

        client._serialize_transport_parameters = with_limit  # type: ignore[method-assign]  # the test's peer
    return client


def _sizes_sent(cert_dir: Path, server_size: int, announce: int | None, limit: bool = True) -> tuple[set[int], int]:
    cert = certificates.ensure(cert_dir)
    scfg = QuicConfiguration(is_client=False, alpn_protocols=["h3"])
    scfg.load_cert_chain(str(cert.cert_path), str(cert.key_path))
    scfg.max_datagram_size = server_size
    client = _client(announce)
    client.connect(SERVER, now=time.monotonic())
    server = QuicConnection(configuration=scfg, original_destination_connection_id=client.original_destination_connection_id)
    if limit:
        limit_to_peer(server)
    sizes: set[int] = set()
    got = 0

    def move(a: Any, b: Any, addr: Any, record: bool) -> None:
        for data, _ in a.datagrams_to_send(now=time.monotonic()):
            if record:
                sizes.add(len(data))
            b.receive_datagram(data, addr, now=time.monotonic())

    for _ in range(10):
        move(client, server, CLIENT, False)
        move(server, client, SERVER, True)
    stream = server.get_next_available_stream_id(is_unidirectional=True)
    server.send_stream_data(stream, os.urandom(50_000), end_stream=True)
    for _ in range(100):
        move(server, client, SERVER, True)
        move(client, server, CLIENT, False)
        while (event := client.next_event()) is not None:
            if isinstance(event, StreamDataReceived):
                got += len(event.data)
    return sizes, got


@pytest.mark.parametrize(("announce", "largest"), [(1300, 1300), (None, 1452), (9000, 1452), (1200, 1200)])
def test_the_server_never_sends_more_than_the_peer_takes(tmp_path: Path, announce: int | None, largest: int) -> None:
    sizes, got = _sizes_sent(tmp_path, 1452, announce)
    assert got == 50_000
    assert max(sizes) == largest


def test_without_the_limit_aioquic_would_send_past_the_peers_size(tmp_path: Path) -> None:
    """What limit_to_peer is for: aioquic alone ignores the peer's max_udp_payload_size."""
    sizes, _ = _sizes_sent(tmp_path, 1452, 1300, limit=False)
    assert max(sizes) == 1452


def test_unreadable_parameters_give_no_limit() -> None:
    assert peer_max_udp_payload(b"\x03") is None
