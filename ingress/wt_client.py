"""A small aioquic WebTransport client (media-and-webtransport.md §2) for tests, benchmarks and tools.

It opens one session, lets the caller open uni/bidi streams and send datagrams, and collects what the
server sends back: records on server uni streams and on client bidi streams (parsed with
schemas.framing), the close capsule, and stream resets.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import defaultdict
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aioquic.asyncio import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, FrameType, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived, WebTransportStreamDataReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import QuicEvent, StreamReset

from ingress.capsules import CapsuleReader, SessionClosed
from schemas.framing import Record, RecordReader


@dataclass
class ClientState:
    status: int | None = None
    closed: SessionClosed | None = None
    records: list[tuple[int, Record]] = field(default_factory=list)  # (stream id, record)
    resets: dict[int, int] = field(default_factory=dict)  # stream id -> error code
    ended_streams: set[int] = field(default_factory=set)


class WebTransportClientProtocol(QuicConnectionProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic, enable_webtransport=True)
        self.session_id: int | None = None
        self.state = ClientState()
        self._readers: dict[int, RecordReader] = defaultdict(RecordReader)
        self._capsules = CapsuleReader()
        self.changed = asyncio.Event()

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamReset):
            self.state.resets[event.stream_id] = event.error_code
            self._readers.pop(event.stream_id, None)
        for h3_event in self.h3.handle_event(event):
            if isinstance(h3_event, HeadersReceived) and h3_event.stream_id == self.session_id:
                status = dict(h3_event.headers).get(b":status", b"0")
                self.state.status = int(status)
            elif isinstance(h3_event, DataReceived) and h3_event.stream_id == self.session_id:
                for closed in self._capsules.feed(h3_event.data):
                    self.state.closed = closed
                if h3_event.stream_ended and self.state.closed is None:
                    self.state.closed = SessionClosed(0, "")
            elif isinstance(h3_event, WebTransportStreamDataReceived):
                reader = self._readers[h3_event.stream_id]
                for record in reader.feed(h3_event.data):
                    self.state.records.append((h3_event.stream_id, record))
                if h3_event.stream_ended:
                    self.state.ended_streams.add(h3_event.stream_id)
        self.changed.set()

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        async def loop() -> None:
            while not predicate(self.state):
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(loop(), timeout)

    async def open_session(self, authority: str, path: str, timeout: float = 10.0) -> int:
        self.session_id = self._quic.get_next_available_stream_id()
        self.h3.send_headers(self.session_id, [
            (b":method", b"CONNECT"), (b":protocol", b"webtransport"), (b":scheme", b"https"),
            (b":authority", authority.encode()), (b":path", path.encode()),
            (b"origin", b"http://127.0.0.1"), (b"sec-webtransport-http3-draft02", b"1"),
        ])
        self.transmit()
        await self.wait_for(lambda s: s.status is not None, timeout)
        return self.state.status or 0

    def open_stream(self, unidirectional: bool = True) -> int:
        assert self.session_id is not None
        stream_id = self.h3.create_webtransport_stream(self.session_id, is_unidirectional=unidirectional)
        if not unidirectional:
            # §1.5 workaround: mark our own bidi stream as a WebTransport stream, or aioquic parses the
            # server's replies on it as HTTP/3 frames.
            with self.h3._get_or_create_stream(stream_id) as h3_stream:
                h3_stream.frame_type = FrameType.WEBTRANSPORT_STREAM
                h3_stream.session_id = self.session_id
        return stream_id

    def send(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        self._quic.send_stream_data(stream_id, data, end_stream)
        self.transmit()

    def send_datagram(self, data: bytes) -> None:
        assert self.session_id is not None
        self.h3.send_datagram(self.session_id, data)
        self.transmit()

    def unsent_bytes(self, stream_id: int) -> int:
        """Bytes written to a stream that the server has not acknowledged (blocked by flow control)."""
        stream = self._quic._streams.get(stream_id)
        return 0 if stream is None else stream.sender._buffer_stop - stream.sender._buffer_start


@asynccontextmanager
async def open_webtransport(url: str, timeout: float = 10.0) -> Any:
    """``async with open_webtransport("https://127.0.0.1:4433/wt?token=...") as client:``."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 443
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    cfg = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, max_datagram_frame_size=65536,
                            verify_mode=ssl.CERT_NONE)
    cfg.max_data = 64 * 1024 * 1024
    cfg.max_stream_data = 16 * 1024 * 1024
    cfg.server_name = host
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    family, addr = infos[0][0], infos[0][4]
    # Like aioquic.asyncio.connect, except that leaving does not wait out the draining period
    # (3 x PTO, seconds when the loop was busy): a test or load tool has no use for it.
    transport, proto = await loop.create_datagram_endpoint(
        lambda: WebTransportClientProtocol(QuicConnection(configuration=cfg)),
        local_addr=("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
    assert isinstance(proto, WebTransportClientProtocol)
    try:
        proto.connect(addr)
        await asyncio.wait_for(proto.wait_connected(), timeout)
        await proto.open_session(f"{host}:{port}", path, timeout)
        yield proto
    finally:
        proto.close()  # queues CONNECTION_CLOSE and sends it now
        transport.close()
