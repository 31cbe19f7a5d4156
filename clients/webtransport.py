"""A small aioquic WebTransport client (docs/media-and-webtransport.md §2) for tests, benchmarks and tools.

It opens one session, lets the caller open uni/bidi streams and send datagrams, and collects what the
server sends back: records on server uni streams and on client bidi streams (parsed with
schemas.framing_codec), the close capsule, and stream resets.

``ResendBuffer`` (sans-I/O) and ``ResendingPublisher`` are the publisher side of at-least-once
(nothing lost): every frame is kept until the ingress acknowledges it (FRAMING.md "Ack": OK means
broker-acknowledged; cumulative per media stream id, exactly one seq for chat/file), and when the
session drops the publisher reconnects with backoff and resends what is unacknowledged, in send order.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections import OrderedDict, defaultdict
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, FrameType, H3Connection
from aioquic.h3.events import DatagramReceived, DataReceived, HeadersReceived, WebTransportStreamDataReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamReset

from ingress.capsules import CapsuleReader, SessionClosed
from schemas.framing_codec import (
    Ack,
    AckStatus,
    Frame,
    FramingError,
    Kind,
    Record,
    RecordReader,
    parse,
    serialize,
)

DATAGRAM = -1  # the "stream id" under which ClientState.records keeps records that came as datagrams


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
        if isinstance(event, ConnectionTerminated) and self.state.closed is None:
            # The connection went away without a close capsule (ingress killed, idle timeout).
            self.state.closed = SessionClosed(event.error_code, event.reason_phrase or "connection terminated")
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
            elif isinstance(h3_event, DatagramReceived):
                try:
                    self.state.records.append((DATAGRAM, parse(h3_event.data)))
                except FramingError:
                    pass  # not a record: nothing the tests or load tools look at
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
            # docs/media-and-webtransport.md §1.5 workaround: mark our own bidi stream as a WebTransport stream, or aioquic parses the
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
async def open_webtransport(url: str, timeout: float = 10.0, idle_timeout: float | None = None,
                            max_datagram_size: int | None = None) -> Any:
    """``async with open_webtransport("https://127.0.0.1:4433/wt?token=...") as client:``.

    ``max_datagram_size`` is the UDP payload the client sends (aioquic's default 1200; Chromium 1350)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 443
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    cfg = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, max_datagram_frame_size=65536,
                            verify_mode=ssl.CERT_NONE)
    cfg.max_data = 64 * 1024 * 1024
    cfg.max_stream_data = 16 * 1024 * 1024
    cfg.server_name = host
    if idle_timeout is not None:
        cfg.idle_timeout = idle_timeout
    if max_datagram_size is not None:
        cfg.max_datagram_size = max_datagram_size
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


# ---- publisher side of at-least-once: keep, resend, reconnect ---------------------------------------
class BufferFull(Exception):
    """A chat/file frame cannot be kept for a resend: the buffer is full of unacknowledged chat/files.
    Raised rather than dropping it silently; the caller tells the user or waits for acks."""


@dataclass(slots=True)
class _Kept:
    stream: str
    seq: int
    kind: Kind
    keyframe: bool
    record: bytes
    rejected: bool = False  # the ingress said REJECTED: send again


@dataclass
class ResendBuffer:
    """Sent frames awaiting an OK, in send order. Sans-I/O.

    Bounded by ``max_frames`` and ``max_bytes``. Past the bound the oldest *media* is dropped from its
    first frame up to (not including) that stream's next keyframe, so what is left of the stream still
    starts at a keyframe; ``dropped_media`` counts those frames and ``overflows`` the times it happened.
    Chat and files are never dropped: ``add`` raises ``BufferFull`` instead."""

    max_frames: int = 2048
    max_bytes: int = 64 * 1024 * 1024
    kept: OrderedDict[tuple[str, int], _Kept] = field(default_factory=OrderedDict)
    nbytes: int = 0
    dropped_media: int = 0
    overflows: int = 0
    confirmed: int = 0

    def __len__(self) -> int:
        return len(self.kept)

    def add(self, frame: Frame, record: bytes | None = None) -> bytes:
        """Keep ``frame`` (its serialized record is returned for sending)."""
        data = record if record is not None else serialize(frame)
        media = frame.kind in (Kind.VIDEO, Kind.SCREEN, Kind.AUDIO)
        while self._over(len(data)):
            if not self._drop_oldest_media():
                if not media:
                    raise BufferFull(f"{len(self.kept)} frames ({self.nbytes} bytes) await the ingress's ack; "
                                     f"{frame.kind.name.lower()} frame {frame.seq} of {frame.stream} not taken")
                self.dropped_media += 1  # nothing older to give up: this media frame goes instead
                self.overflows += 1
                return data
            self.overflows += 1
        old = self.kept.pop((frame.stream, frame.seq), None)
        if old is not None:
            self.nbytes -= len(old.record)
        self.kept[(frame.stream, frame.seq)] = _Kept(frame.stream, frame.seq, frame.kind, frame.keyframe, data)
        self.nbytes += len(data)
        return data

    def on_ack(self, ack: Ack) -> None:
        """Apply one Ack record from the ingress (FRAMING.md "Ack")."""
        if ack.status != AckStatus.OK:
            kept = self.kept.get((ack.stream, ack.seq))
            if kept is not None:
                kept.rejected = True
            return
        exact = self.kept.get((ack.stream, ack.seq))
        if exact is not None and exact.kind in (Kind.CHAT, Kind.FILE):
            self._forget((ack.stream, ack.seq))
            return
        # Media: cumulative up to seq, except frames REJECTED and not yet sent again. An OK at or
        # below an earlier one names a resent frame; reading it cumulatively confirms nothing wrong.
        done = [k for k, v in self.kept.items() if v.stream == ack.stream and v.seq <= ack.seq
                and v.kind not in (Kind.CHAT, Kind.FILE) and not v.rejected]
        for key in done:
            self._forget(key)

    def take_rejected(self) -> list[bytes]:
        """Records the ingress REJECTED, to send again on this session (FRAMING.md allows it)."""
        out = []
        for kept in self.kept.values():
            if kept.rejected:
                kept.rejected = False
                out.append(kept.record)
        return out

    def unacked(self) -> list[bytes]:
        """Everything not confirmed, in the order it was first sent: what a new session resends."""
        for kept in self.kept.values():
            kept.rejected = False
        return [k.record for k in self.kept.values()]

    def _over(self, extra: int) -> bool:
        return len(self.kept) + 1 > self.max_frames or self.nbytes + extra > self.max_bytes

    def _forget(self, key: tuple[str, int]) -> None:
        kept = self.kept.pop(key)
        self.nbytes -= len(kept.record)
        self.confirmed += 1

    def _drop_oldest_media(self) -> bool:
        oldest = next((v for v in self.kept.values() if v.kind in (Kind.VIDEO, Kind.SCREEN, Kind.AUDIO)), None)
        if oldest is None:
            return False
        first = True
        for key, kept in list(self.kept.items()):
            if kept.stream != oldest.stream:
                continue
            if kept.keyframe and not first and kept.kind != Kind.AUDIO:
                break  # the stream resumes here, at a keyframe
            self.kept.pop(key)
            self.nbytes -= len(kept.record)
            self.dropped_media += 1
            if kept.kind == Kind.AUDIO:
                break  # every audio packet decodes alone: one is enough
            first = False
        return True


@dataclass
class ResendingPublisher:
    """A publisher session that survives a dropped session: ``publish()`` keeps every frame in a
    ``ResendBuffer``; ``run()`` connects, sends, applies Acks, and on a drop reconnects with
    exponential backoff and resends the unacknowledged frames in order. Media go on one uni stream
    per stream id and session, chat/files on one bidi stream per session (their Acks come back on it)."""

    url: str  # https://host:port/wt?token=...
    buffer: ResendBuffer = field(default_factory=ResendBuffer)
    backoff_s: tuple[float, float] = (0.05, 2.0)  # first delay, cap
    idle_timeout: float = 5.0  # a silent ingress counts as gone after this
    sessions: int = 0
    resent: int = 0
    errors: list[str] = field(default_factory=list)
    _fresh: list[bytes] = field(default_factory=list)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _drain_s: float = 30.0
    _deadline: float | None = None

    def publish(self, frame: Frame) -> None:
        """Keep ``frame`` and queue it for the current (or next) session. Raises ``BufferFull`` for a
        chat/file frame that cannot be kept."""
        self._fresh.append(self.buffer.add(frame))
        self._wake.set()

    async def run(self, stop: asyncio.Event, drain_s: float = 30.0) -> None:
        """Until ``stop`` is set and every frame is acknowledged (or ``drain_s`` after ``stop``)."""
        delay = self.backoff_s[0]
        self._drain_s = drain_s
        self._deadline = None
        loop = asyncio.get_running_loop()
        while True:
            if stop.is_set():
                self._deadline = self._deadline or loop.time() + drain_s
                if not self.buffer.kept or loop.time() > self._deadline:
                    return
            try:
                async with open_webtransport(self.url, timeout=5.0, idle_timeout=self.idle_timeout) as client:
                    if client.state.status != 200:
                        raise ConnectionError(f"CONNECT answered {client.state.status}")
                    self.sessions += 1
                    delay = self.backoff_s[0]
                    await self._session(client, stop)
            except (TimeoutError, OSError, ConnectionError) as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
            if stop.is_set() and not self.buffer.kept:
                return
            await asyncio.sleep(delay)
            delay = min(self.backoff_s[1], delay * 2)

    async def _session(self, client: WebTransportClientProtocol, stop: asyncio.Event) -> None:
        streams: dict[str, int] = {}
        loop = asyncio.get_running_loop()
        self._fresh.clear()  # everything kept goes out below, in order
        backlog = self.buffer.unacked()
        if self.sessions > 1:
            self.resent += len(backlog)
        seen = 0

        def send(record: bytes) -> None:
            frame_kind = Kind(record[5])
            name = "\x00bidi" if frame_kind in (Kind.CHAT, Kind.FILE) else record[37:37 + record[36]].decode()
            if name not in streams:
                streams[name] = client.open_stream(unidirectional=name != "\x00bidi")
            client.send(streams[name], record)

        for record in backlog:
            send(record)
        while client.state.closed is None:
            for _, received in client.state.records[seen:]:
                if isinstance(received, Ack):
                    self.buffer.on_ack(received)
            seen = len(client.state.records)
            for record in self.buffer.take_rejected():
                send(record)
            fresh, self._fresh = self._fresh, []
            for record in fresh:
                send(record)
            if stop.is_set():
                self._deadline = self._deadline or loop.time() + self._drain_s
                if not self.buffer.kept or loop.time() > self._deadline:
                    return
            self._wake.clear()
            client.changed.clear()
            waits = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(client.changed.wait())]
            try:
                await asyncio.wait(waits, timeout=0.1, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await w
        closed = client.state.closed
        self.errors.append(f"session closed: {closed.code} {closed.reason}")
