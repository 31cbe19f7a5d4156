"""A WebTransport viewer on qh3 for the fan-out load generator (bench/fanout.py ``--viewer-stack qh3``).

qh3 keeps its QUIC transport in compiled code (docs/fanout.md §5.2), so one of these viewers costs the
load generator's core much less than an aioquic client (clients/webtransport.py) does, leaving more of the
machine to the ingress being measured. It does what a viewer of the page does and nothing else: one
session (CONNECT to /wt with the token, as FRAMING.md and docs/media-and-webtransport.md §2 describe),
then every record on the server's uni streams parsed with schemas.framing_codec, stream by stream.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from schemas.framing_codec import FramingError, Record, RecordReader

OnRecord = Callable[[Record], None]


def _protocol_class() -> Any:
    from qh3.asyncio.protocol import QuicConnectionProtocol
    from qh3.h3.connection import H3Connection
    from qh3.h3.events import DataReceived, HeadersReceived, WebTransportStreamDataReceived
    from qh3.quic.events import ConnectionTerminated, StreamReset

    class Qh3Viewer(QuicConnectionProtocol):
        def __init__(self, *args: Any, on_record: OnRecord, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.h3 = H3Connection(self._quic, enable_webtransport=True)
            self.on_record = on_record
            self.session_id: int | None = None
            self.status: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.readers: dict[int, RecordReader] = {}

        def quic_event_received(self, event: Any) -> None:
            if isinstance(event, ConnectionTerminated) and not self.closed.done():
                self.closed.set_result(None)
            if isinstance(event, StreamReset):  # a group the ingress gave up on (slow-viewer policy)
                self.readers.pop(event.stream_id, None)
            for h3_event in self.h3.handle_event(event):
                if isinstance(h3_event, WebTransportStreamDataReceived):
                    reader = self.readers.get(h3_event.stream_id)
                    if reader is None:
                        reader = self.readers[h3_event.stream_id] = RecordReader()
                    try:
                        for record in reader.feed(h3_event.data):
                            self.on_record(record)
                    except FramingError:
                        self.readers.pop(h3_event.stream_id, None)
                    if h3_event.stream_ended:
                        self.readers.pop(h3_event.stream_id, None)
                elif isinstance(h3_event, HeadersReceived) and h3_event.stream_id == self.session_id:
                    if not self.status.done():
                        self.status.set_result(int(dict(h3_event.headers).get(b":status", b"0")))
                elif isinstance(h3_event, DataReceived) and h3_event.stream_id == self.session_id:
                    if h3_event.stream_ended and not self.closed.done():
                        self.closed.set_result(None)  # the close capsule and FIN of the CONNECT stream

        def open_session(self, authority: str, path: str) -> None:
            self.session_id = self._quic.get_next_available_stream_id()
            self.h3.send_headers(self.session_id, [
                (b":method", b"CONNECT"), (b":protocol", b"webtransport"), (b":scheme", b"https"),
                (b":authority", authority.encode()), (b":path", path.encode()),
                (b"origin", b"http://127.0.0.1"), (b"sec-webtransport-http3-draft02", b"1"),
            ])
            self.transmit()

    return Qh3Viewer


_CLASS: Any = None


async def view(url: str, on_record: OnRecord, joined: Callable[[bool], None], timeout: float = 60.0) -> None:
    """Open a viewer session at ``url`` (https://host:port/wt?token=...), hand each record to ``on_record``
    until the session ends; ``joined(ok)`` once the CONNECT was answered (or failed)."""
    global _CLASS
    from qh3.h3.connection import H3_ALPN
    from qh3.quic.configuration import QuicConfiguration
    from qh3.quic.connection import QuicConnection

    if _CLASS is None:
        _CLASS = _protocol_class()
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 443
    cfg = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, max_datagram_frame_size=65536,
                            verify_mode=ssl.CERT_NONE, idle_timeout=timeout)
    cfg.max_data = 64 * 1024 * 1024
    cfg.max_stream_data = 16 * 1024 * 1024
    cfg.server_name = host
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    family, addr = infos[0][0], infos[0][4]
    transport, proto = await loop.create_datagram_endpoint(
        lambda: _CLASS(QuicConnection(configuration=cfg), on_record=on_record),
        local_addr=("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
    answered = False
    try:
        proto.connect(addr)
        await asyncio.wait_for(proto.wait_connected(), timeout)
        proto.open_session(f"{host}:{port}", parts.path + (f"?{parts.query}" if parts.query else ""))
        status = await asyncio.wait_for(proto.status, timeout)
        answered = True
        joined(status == 200)
        await proto.closed
    finally:
        if not answered:
            joined(False)
        proto.close()
        transport.close()
