"""HTTP/3 WebTransport shell (aioquic or qh3, ingress/quic_stack.py) for publishers and viewers at ``https://HOST:PORT/wt``.

docs/media-and-webtransport.md §1 is the map: H3Connection created on ProtocolNegotiated (§1.2), the CONNECT
stream id is the session id (§1.3), client streams arrive as WebTransportStreamDataReceived (§1.5),
close is a capsule (§1.7), and every write is followed by ``transmit()`` (§1.1).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import weakref
from typing import TYPE_CHECKING, Any

from ingress import clock, flow_gate, peer_datagram_size, quic_stack
from ingress.app import IngressApp, SessionRefused
from ingress.capsules import WT_SESSION_GONE, CapsuleReader, close_capsule, wt_error_code
from ingress.datagram_hold import DatagramHold
from ingress.publishing import PublishingShell
from ingress.session import CONTROL, PublisherSession
from ingress.tokens import Role
from ingress.transmit_round import TransmitRound
from ingress.udp_batch import BatchSender
from ingress.viewer import ViewerSink, ViewerTracks
from schemas.framing_codec import CloseCode, Kind, Notice, is_clock, serialize_notice

if TYPE_CHECKING:
    # checked against aioquic's protocol; at run time the base is the chosen stack's (protocol_class)
    from aioquic.asyncio.protocol import QuicConnectionProtocol as _ProtocolBase
else:
    _ProtocolBase = object

log = logging.getLogger(__name__)

MAX_DATAGRAM_FRAME = 65536  # mandatory for WebTransport (docs/media-and-webtransport.md §1.2)
SOCKET_BUFFER = 4 * 1024 * 1024  # default UDP buffers drop bulk bursts (docs/media-and-webtransport.md §1.2)
TICK_SECONDS = 1.0  # how often open sessions are checked for token expiry and idleness
# The QUIC idle timeout is IngressConfig.session_timeout; PINGs every third of it keep a quiet but
# present peer (a viewer of a quiet room, an idle chat session) alive, so only a vanished one times out.
KEEPALIVE_FRACTION = 1 / 3
IDLE_TIMEOUT_REASON = "Idle timeout"  # the reason_phrase of aioquic 1.7.2 and qh3 2.1.0 (observed) when the idle timer closes a connection


def end_reason(event: Any) -> str:
    """Why a connection's publishing sessions ended, as an end of stream says it (ENVELOPE.md)."""
    if event is not None and event.reason_phrase == IDLE_TIMEOUT_REASON:
        return "timeout"
    return "left"


class WtPublisher(PublishingShell):
    transport = "webtransport"

    def __init__(self, proto: IngressProtocol, session_id: int, core: PublisherSession, address: str) -> None:
        super().__init__(proto.app, core, address)
        self.proto = proto
        self.session_id = session_id
        self.control_stream: int | None = None
        self.streams: set[int] = set()

    def send_record(self, channel: int, data: bytes) -> None:
        quic = self.proto._quic
        if channel == CONTROL:
            if self.control_stream is None:
                # Server -> client uni stream for acks and notices (uni avoids the bidi bug in docs/media-and-webtransport.md §1.5).
                self.control_stream = self.proto.h3.create_webtransport_stream(self.session_id,
                                                                               is_unidirectional=True)
            channel = self.control_stream
        try:
            quic.send_stream_data(channel, data)
        except Exception as exc:  # stream already reset by the peer
            log.debug("send on %d: %s", channel, exc)

    def close_stream(self, channel: int, code: CloseCode, reason: str) -> None:
        quic = self.proto._quic
        self.streams.discard(channel)
        self.proto.gate.discard(channel)
        try:
            quic.stop_stream(channel, wt_error_code(code))
            if not self.proto.stack.stream_is_unidirectional(channel):
                quic.reset_stream(channel, wt_error_code(code))
        except Exception as exc:
            log.debug("closing stream %d: %s", channel, exc)
        self.send_record(CONTROL, serialize_notice(Notice(code, f"stream {channel}: {reason}"[:1000])))

    def close_session(self, code: CloseCode, reason: str) -> None:
        self.proto.end_session(self.session_id, code, reason)

    def flush(self) -> None:
        self.proto.schedule_transmit()

    def pause_changed(self, paused: bool) -> None:
        self.proto.gate.set_paused(self.streams, paused)
        self.proto.hold_changed()
        if not paused:
            self.proto.schedule_transmit()  # the flow gate grants credit again on the next packet


class WtViewer(ViewerSink):
    def __init__(self, proto: IngressProtocol, session_id: int) -> None:
        self.proto = proto
        self.session_id = session_id
        self.expires_at = float("inf")  # the token's expiry: the session is closed then (4003)
        self.tracks: ViewerTracks | None = None

    def open_group(self, kind: Kind) -> int:
        return int(self.proto.h3.create_webtransport_stream(self.session_id, is_unidirectional=True))

    def write(self, handle: int, data: bytes) -> None:
        self.proto._quic.send_stream_data(handle, data)

    def end_group(self, handle: int) -> None:
        try:
            self.proto._quic.send_stream_data(handle, b"", end_stream=True)
        except Exception as exc:
            log.debug("end group %d: %s", handle, exc)

    def abort_group(self, handle: int) -> None:
        try:
            self.proto._quic.reset_stream(handle, wt_error_code(0))
        except Exception as exc:
            log.debug("abort group %d: %s", handle, exc)

    def queued(self, handle: int) -> int:
        return self.proto.stack.queued_bytes(self.proto._quic, handle)

    def flush(self) -> None:
        self.proto.schedule_transmit()


class IngressProtocol(_ProtocolBase):
    """One QUIC connection's sessions. Not used directly: protocol_class() puts it on the chosen stack's
    QuicConnectionProtocol."""

    stack: quic_stack.QuicStack  # set by protocol_class()
    batch: BatchSender | None = None  # set by start_webtransport() when the socket takes UDP GSO (udp_batch.py)
    # set by start_webtransport(): the connections of this server transmit from one callback per loop pass
    transmit_round: TransmitRound | None = None

    def __init__(self, *args: Any, app: IngressApp, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app = app
        self.h3: Any = None  # the stack's H3Connection, made on ProtocolNegotiated, before any use
        self.publishers: dict[int, WtPublisher] = {}
        self.viewers: dict[int, WtViewer] = {}
        self._capsules: dict[int, CapsuleReader] = {}
        self._stream_owner: dict[int, WtPublisher] = {}
        self._addresses: dict[int, str] = {}
        self._transmit_due = False  # writes queued since the last transmit()
        self._transmit_scheduled = False
        # Ingest is one-way: ACK every few ms instead of aioquic's 1 ms (K_GRANULARITY), which sends a
        # packet back per received packet. Well inside the 25 ms max_ack_delay aioquic advertises.
        # (aioquic only: qh3 fixes its ACK delay in its core)
        self.stack.set_ack_delay(self._quic, app.config.ack_delay)
        if self.stack.name == "aioquic" and (app.config.max_datagram_size or 0) > peer_datagram_size.SMALLEST:
            peer_datagram_size.limit_to_peer(self._quic)  # never larger than the peer takes (docs/fanout.md §6.2)
        self.gate = flow_gate.CreditGate(app.config.stream_window)
        # qh3: no hook into read credit, so a backlogged publisher's connection has its packets held
        # instead (ingress/datagram_hold.py); aioquic: the credit gate above, installed per connection
        self.hold: DatagramHold | None = None if self.stack.name == "aioquic" else DatagramHold(app.config.stream_window)
        # installed with the connection's first publishing session: a viewer-only connection sends and
        # never needs it, and aioquic would call it for every stream on every packet it builds
        self._gate_installed = False
        self._keepalive_every = app.config.session_timeout * KEEPALIVE_FRACTION
        self._keepalive = self._loop.call_later(self._keepalive_every, self._ping)
        self._ticker = self._loop.call_later(TICK_SECONDS, self._tick)

    def _tick(self) -> None:
        """Token expiry (publishers and viewers) and publisher idle timeout, about once a second."""
        if self.hold is not None and self.hold.paused:
            self._feed(self.hold.trickle(self._loop.time()))
        now = time.time()
        for pub in list(self.publishers.values()):
            pub.handle(pub.core.tick(now))
        for session_id, viewer in list(self.viewers.items()):
            if now >= viewer.expires_at:
                self.end_session(session_id, CloseCode.TOKEN_EXPIRED, "token expired during the session")
        self._ticker = self._loop.call_later(TICK_SECONDS, self._tick)

    def _ping(self) -> None:
        if self.stack.close_event(self._quic) is not None:
            return  # closing: nothing to keep alive (and qh3 raises "connection is closed" for a PING then)
        self._quic.send_ping(0)
        self.transmit()
        self._keepalive = self._loop.call_later(self._keepalive_every, self._ping)

    # ---- transmit coalescing ----------------------------------------------------------------
    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        # aioquic transmits after every received datagram; a video frame is several datagrams, so
        # defer to one transmit per loop pass (ACKs are delayed anyway, see ack_delay).
        if self.hold is not None and self.hold.paused:  # not paused, the hold hands every datagram straight back
            self._feed(self.hold.offer(data, addr, self._loop.time()))  # type: ignore[arg-type]  # a UDP socket hands bytes, never str
            return
        self._quic.receive_datagram(data, addr, now=self._loop.time())  # type: ignore[arg-type]  # a UDP socket hands bytes, never str
        self._after_receive()

    def _feed(self, datagrams: list[tuple[bytes, Any]]) -> None:
        if not datagrams:
            return
        now = self._loop.time()
        for data, addr in datagrams:
            self._quic.receive_datagram(data, addr, now=now)
        self._after_receive()

    def _after_receive(self) -> None:
        self._process_events()
        close_event = self.stack.close_event(self._quic)
        if close_event is not None and (self.publishers or self.viewers):
            # The peer closed the connection: aioquic reports ConnectionTerminated only after the
            # draining period (3 x PTO); free the sessions' address slots and feeds now.
            reason = end_reason(close_event)
            for session_id in list(self.publishers) + list(self.viewers):
                self._forget(session_id, reason)
        self.schedule_transmit()

    def hold_changed(self) -> None:
        """qh3: hold the connection's packets while any publisher on it is backlogged (datagram_hold)."""
        if self.hold is None:
            return
        paused = any(pub.paused for pub in self.publishers.values())
        if paused != self.hold.paused:
            self._feed(self.hold.set_paused(paused, self._loop.time()))

    def transmit(self) -> None:
        self._transmit_due = False
        try:
            if self.batch is None:
                super().transmit()
            else:
                self._batched_transmit(self.batch)
        except Exception as exc:
            # e.g. qh3 2.1.0's "packet builder capacity exhausted" (quic_stack.QuicStack.retry): one
            # connection's failure must not escape into the event loop
            log.warning("transmit: %s", exc)

    def _batched_transmit(self, batch: BatchSender) -> None:
        """The stack's transmit(), except that the datagrams go out in runs, one sendmsg each (udp_batch.py):
        a frame of n packets to a viewer is one system call instead of n. The timer (the stack's fields, aioquic
        1.7.2 and qh3 2.1.0 ``asyncio/protocol.py``) is re-armed only when the deadline comes earlier: the
        stack re-arms it whenever it changes, which ACKs do on nearly every transmit (docs/fanout.md §7.3)."""
        self._transmit_task = None
        datagrams = self._quic.datagrams_to_send(now=self._loop.time())
        if datagrams:  # after a received ACK there is often nothing to send
            batch.send(datagrams)
        timer_at = self._quic.get_timer()
        if timer_at is None:
            return  # an armed timer finds nothing due and stops (_handle_timer)
        if self._timer is not None:
            if self._timer_at is not None and self._timer_at <= timer_at:
                return  # the deadline moved later (ACKs push the loss timer on): _handle_timer re-arms then
            self._timer.cancel()
        self._timer = self._loop.call_at(timer_at, self._handle_timer)
        self._timer_at = timer_at

    def _handle_timer(self) -> None:
        """The stack's timer handler, for a timer armed lazily by _batched_transmit: a deadline that moved
        later since the timer was armed is waited for instead (the stack's handler would run the connection's
        timer at the armed time, early; docs/fanout.md §7.3), and no deadline at all means nothing to do."""
        timer_at = self._quic.get_timer()
        if timer_at is None:
            self._timer = self._timer_at = None
            return
        if self._timer_at is not None and timer_at > self._timer_at:
            self._timer = self._loop.call_at(timer_at, self._handle_timer)
            self._timer_at = timer_at
            return
        super()._handle_timer()

    def schedule_transmit(self) -> None:
        """One transmit() per loop pass for all writes (docs/media-and-webtransport.md §1.1: once per batch of writes). While aioquic
        is handling a received datagram it transmits at the end anyway, which clears the flag."""
        self._transmit_due = True
        if not self._transmit_scheduled:
            self._transmit_scheduled = True
            if self.transmit_round is not None:
                self.transmit_round.add(self, self._scheduled_transmit)  # one callback for all connections
            else:
                self._loop.call_soon(self._scheduled_transmit)

    def _scheduled_transmit(self) -> None:
        self._transmit_scheduled = False
        if self._transmit_due:
            self.transmit()

    # ---- event routing --------------------------------------------------------------------
    def quic_event_received(self, event: Any) -> None:
        stack = self.stack
        if isinstance(event, stack.ProtocolNegotiated):
            if event.alpn_protocol in stack.H3_ALPN:
                self.h3 = stack.H3Connection(self._quic, enable_webtransport=True)
        elif isinstance(event, stack.StreamReset | stack.StopSendingReceived):
            owner = self._stream_owner.pop(event.stream_id, None)
            self.gate.discard(event.stream_id)
            if owner is not None and isinstance(event, stack.StreamReset) and not owner.ended:
                owner.streams.discard(event.stream_id)
                owner.handle(owner.core.stream_reset(event.stream_id))
        elif isinstance(event, stack.ConnectionTerminated):
            self._keepalive.cancel()
            self._ticker.cancel()
            for session_id in list(self.publishers) + list(self.viewers):
                self._forget(session_id, end_reason(event))
        if self.h3 is not None:
            try:
                for h3_event in self.h3.handle_event(event):
                    self._h3_event(h3_event)
            except Exception as exc:  # one bad event must not kill the server: log it and carry on
                log.warning("h3 event error: %s", exc)

    def _h3_event(self, event: Any) -> None:
        stack = self.stack
        if isinstance(event, stack.WebTransportStreamDataReceived):
            if event.stream_id == event.session_id:
                return  # aioquic#638: a crafted 0x41 frame on the CONNECT stream (docs/media-and-webtransport.md §1.7)
            pub = self.publishers.get(event.session_id)
            if pub is None:
                if event.session_id not in self.viewers:
                    self._quic.stop_stream(event.stream_id, wt_error_code(CloseCode.BAD_REQUEST))
                return
            now = time.time()
            if event.stream_id not in self._stream_owner and event.stream_id not in pub.streams:
                pub.streams.add(event.stream_id)
                self._stream_owner[event.stream_id] = pub
                self.gate.add(event.stream_id, pub.paused)
            pub.handle(pub.core.stream_data(event.stream_id, event.data, event.stream_ended, now,
                                            bidi=not stack.stream_is_unidirectional(event.stream_id)))
            if event.stream_ended:
                self._stream_owner.pop(event.stream_id, None)
                self.gate.discard(event.stream_id)
                pub.streams.discard(event.stream_id)
        elif isinstance(event, stack.DatagramReceived):
            session_id = stack.datagram_session(event)  # aioquic and qh3 number it differently (quic_stack)
            if is_clock(event.data):  # publishers and viewers alike measure their clock offset
                self._clock(session_id, event.data)
                return
            pub = self.publishers.get(session_id)
            if pub is not None:
                pub.handle(pub.core.datagram(event.data, time.time()))
        elif isinstance(event, stack.HeadersReceived):
            if event.stream_id not in self.publishers and event.stream_id not in self.viewers:
                self._on_request(event)
        elif isinstance(event, stack.DataReceived):
            reader = self._capsules.get(event.stream_id)
            if reader is None:
                return
            try:
                closed = reader.feed(event.data)
            except ValueError:
                closed = []
            if closed or event.stream_ended:
                self._forget(event.stream_id, "left")
                self.transmit()

    def _clock(self, session_id: int, data: bytes) -> None:
        """A CLOCK request datagram: the reply goes back as a datagram at once (FRAMING.md "Clock")."""
        received = time.time() * 1000.0
        if session_id not in self.publishers and session_id not in self.viewers:
            return
        result = clock.answer(data, received, time.time() * 1000.0)
        if result.error:
            self.app.metrics.rejected.labels("bad_clock").inc()
            pub = self.publishers.get(session_id)
            if pub is not None:
                pub.send_record(CONTROL, serialize_notice(Notice(CloseCode.PROTOCOL_ERROR, result.error[:1000])))
                self.schedule_transmit()
            return
        try:
            self.stack.send_datagram(self.h3, session_id, result.reply)
        except Exception as exc:  # the session is closing
            log.debug("clock reply on %d: %s", session_id, exc)
        self.transmit()

    def _on_request(self, event: Any) -> None:
        headers = dict(event.headers)
        method = headers.get(b":method", b"")
        protocol = headers.get(b":protocol", b"")
        path, _, query = headers.get(b":path", b"/").decode("utf-8", "replace").partition("?")
        sid = event.stream_id
        if method != b"CONNECT" or protocol != b"webtransport" or path.rstrip("/") != "/wt":
            self.h3.send_headers(sid, [(b":status", b"404"), (b"content-type", b"text/plain")])
            self.h3.send_data(sid, b"wtpulsar: WebTransport sessions live at /wt\n", end_stream=True)
            self.transmit()
            return
        address = self._peer_ip()
        app = self.app
        try:
            request = app.authenticate(query, address)
            app.admit(address)
        except SessionRefused as refusal:
            # Accept, then close with a capsule: a 4xx would reach the page only as "handshake failed",
            # the capsule gives it closeCode and reason (docs/media-and-webtransport.md §1.3, §1.7).
            app.refused(refusal.code)
            self._accept(sid)
            self.h3.send_data(sid, close_capsule(refusal.code, refusal.reason), end_stream=True)
            self.transmit()
            return
        self._addresses[sid] = address
        self._capsules[sid] = CapsuleReader()
        self._accept(sid)
        if request.mode == Role.PUBLISHER:
            if not self._gate_installed and self.hold is None:
                flow_gate.install(self._quic, self.gate)
                self._gate_installed = True
            core = PublisherSession(request.claims, app.config.limits, time.time())
            self.publishers[sid] = WtPublisher(self, sid, core, address)
            app.metrics.sessions.labels("webtransport", "publisher").inc()
        else:
            viewer = WtViewer(self, sid)
            viewer.expires_at = request.claims.expires_at
            self.viewers[sid] = viewer
            app.metrics.sessions.labels("webtransport", "viewer").inc()
            viewer.tracks = app.egress.subscribe(viewer, request.claims.room, request.kinds, request.rendition)
        self.transmit()

    def _accept(self, sid: int) -> None:
        self.h3.send_headers(sid, [(b":status", b"200"), (b"sec-webtransport-http3-draft", b"draft02")])

    def _peer_ip(self) -> str:
        addr = self.stack.peer_address(self._quic)
        if not addr:
            return "?"
        host = str(addr[0])
        return host.removeprefix("::ffff:")  # an IPv4 peer on a dual-stack socket counts as itself

    # ---- session end ----------------------------------------------------------------------
    def end_session(self, session_id: int, code: CloseCode, reason: str) -> None:
        """Server-side close: capsule with code and reason, FIN, reset the session's streams."""
        if session_id not in self.publishers and session_id not in self.viewers:
            return
        pub = self.publishers.get(session_id)
        streams = list(pub.streams) if pub else []
        self._forget(session_id, "closed")
        try:
            self.h3.send_data(session_id, close_capsule(code, reason), end_stream=True)
        except Exception as exc:
            log.debug("close capsule on %d: %s", session_id, exc)
        for stream_id in streams:
            try:
                self._quic.stop_stream(stream_id, WT_SESSION_GONE)
            except Exception:
                pass
        self.transmit()

    def _forget(self, session_id: int, reason: str) -> None:
        """The session is over (``reason``: left, timeout or closed, for its streams' end of stream)."""
        app = self.app
        self._capsules.pop(session_id, None)
        pub = self.publishers.pop(session_id, None)
        if pub is not None:
            pub.ended = True
            pub.stop_following_verdicts()
            pub.core.close()
            pub.end_streams(reason)
            for stream_id in list(pub.streams):
                self._stream_owner.pop(stream_id, None)
                self.gate.discard(stream_id)
            app.metrics.sessions.labels("webtransport", "publisher").dec()
        viewer = self.viewers.pop(session_id, None)
        if viewer is not None:
            if viewer.tracks is not None:
                app.egress.unsubscribe(viewer.tracks)
            app.metrics.sessions.labels("webtransport", "viewer").dec()
        address = self._addresses.pop(session_id, None)
        if address is not None:
            app.addresses.release(address)

    def close_all(self, code: CloseCode, reason: str) -> None:
        for session_id in list(self.publishers) + list(self.viewers):
            self.end_session(session_id, code, reason)


# Datagrams per wake-up. Broker receipts are handled between datagrams (read_many), so a big batch no
# longer delays them; 16 was tried and cost ~15 % more CPU per frame (more loop passes and transmits).
READ_BATCH = 64


def _read_in_batches(server: Any, app: IngressApp) -> None:
    """Read up to READ_BATCH datagrams per event-loop wake-up instead of asyncio's one.

    A video frame is several QUIC packets; with one datagram per loop pass the loop turns over (epoll,
    callbacks, a transmit) per packet. Reading a batch lets IngressProtocol.datagram_received coalesce
    the transmits (and the ACKs) of the whole batch. Uses the transport's private socket (asyncio).

    Broker receipts that arrived meanwhile are handled after each datagram rather than after the batch
    (BrokerPublisher.drain_outcomes). And after each batch, while publishes await the broker, the loop
    thread yields the CPU once (sched_yield, GIL released): pulsar-client runs every receipt callback on
    its own thread, which needs the GIL; a busy loop thread releases it only for short syscalls and
    retakes it before the woken receipt thread runs, so receipts otherwise waited for the 5 ms forced
    switch (sys.getswitchinterval). In bench/ingress.py at 30 x 30 fps on a loaded 2-core machine the
    two cut the WebTransport publish latency p50 from 13-17 ms to 3.5-4 ms at the same or lower CPU per
    frame (A/B against the code without them, same run conditions).
    """
    transport = server._transport
    raw = getattr(transport, "_sock", None)
    loop = getattr(transport, "_loop", None)
    if raw is None or not hasattr(loop, "_add_reader"):
        return  # not the selector event loop's transport: keep asyncio's reader
    fd = raw.fileno()
    publisher = app.publisher
    # BrokerPublisher only (tests may inject simpler publishers): handle receipts between datagrams
    drain = getattr(publisher, "drain_outcomes", None)
    # A short-header packet names its connection by the connection id right after its first byte, of the
    # length this server issues (docs/fanout.md §7.1); the server would parse the header to find the same id.
    route = getattr(server, "_protocols", None)
    cid_end = 1 + int(server._configuration.connection_id_length)

    def read_many() -> None:
        for _ in range(READ_BATCH):
            try:
                data, addr = raw.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # e.g. ICMP port unreachable surfaced as ECONNREFUSED
                log.debug("udp recv: %s", exc)
                break
            if route is not None and data and not data[0] & 0x80:
                proto = route.get(data[1:cid_end])
                if proto is not None:
                    proto.datagram_received(data, addr)
                else:
                    server.datagram_received(data, addr)
            else:
                server.datagram_received(data, addr)
            if drain is not None and getattr(publisher, "outcomes_waiting", False):
                drain()  # broker receipts need not wait for the rest of the batch
        if publisher.inflight:
            os.sched_yield()  # let the receipt thread take the GIL now (docstring)

    # the private variant: the public add_reader refuses fds owned by a transport
    loop._add_reader(fd, read_many)  # type: ignore[union-attr]  # None ruled out by the hasattr above; replaces the transport's own _read_ready registration


def protocol_class(stack: quic_stack.QuicStack) -> type[IngressProtocol]:
    """IngressProtocol on top of the stack's QuicConnectionProtocol (its methods call the stack's through super())."""
    cls: type[IngressProtocol] = type(f"IngressProtocol_{stack.name}", (IngressProtocol, stack.QuicConnectionProtocol),
                                      {"stack": stack})
    return cls


def quic_configuration(app: IngressApp, stack: quic_stack.QuicStack) -> Any:
    cfg = stack.QuicConfiguration(is_client=False, alpn_protocols=stack.H3_ALPN,
                                  max_datagram_frame_size=MAX_DATAGRAM_FRAME, idle_timeout=app.config.session_timeout)
    cfg.max_data = app.config.connection_window
    cfg.max_stream_data = app.config.stream_window
    if app.config.max_datagram_size is not None:  # docs/fanout.md §6.2: only where the paths carry it
        cfg.max_datagram_size = app.config.max_datagram_size
    assert app.cert is not None
    cfg.load_cert_chain(str(app.cert.cert_path), str(app.cert.key_path))
    return cfg


async def start_webtransport(app: IngressApp, host: str, port: int) -> tuple[str, int, Any]:
    protocols: weakref.WeakSet[IngressProtocol] = weakref.WeakSet()
    stack = quic_stack.load(app.config.quic_stack)
    protocol = protocol_class(stack)
    configuration = quic_configuration(app, stack)

    def create_protocol(connection: Any, *args: Any, **kwargs: Any) -> IngressProtocol:
        # qh3: a connection that also serves Chromium's zero-length connection id (quic_stack.server_connection)
        proto = protocol(stack.server_connection(connection), *args, app=app, **kwargs)
        protocols.add(proto)
        return proto

    if app.config.reuse_port:
        # several worker processes on one UDP port (ingress/workers.py): Linux hands each datagram to one
        # of the sockets by a hash of its 4-tuple, so every packet of a QUIC connection reaches the same one
        # (socket(7), SO_REUSEPORT). The stacks' serve() does not pass the option; this is serve() with it.
        loop = asyncio.get_running_loop()
        _, server = await loop.create_datagram_endpoint(
            lambda: stack.QuicServer(configuration=configuration, create_protocol=create_protocol, retry=stack.retry),
            local_addr=(host, port), reuse_port=True)
    else:
        server = await stack.serve(host, port, configuration=configuration, create_protocol=create_protocol,
                                   retry=stack.retry)
    assert server._transport is not None  # the endpoint is bound once create_datagram_endpoint()/serve() return
    sock = server._transport.get_extra_info("socket")
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
        except OSError:
            pass
    bound_host, bound_port = sock.getsockname()[:2]
    _read_in_batches(server, app)
    protocol.transmit_round = TransmitRound(asyncio.get_running_loop())
    raw = getattr(server._transport, "_sock", None)  # asyncio's selector transport (qh3's own has a GSO path)
    if app.config.udp_gso and raw is not None and hasattr(server._transport, "get_write_buffer_size"):
        batch = BatchSender(raw, server._transport)
        if batch.gso:
            protocol.batch = batch  # every connection of this server shares the socket

    def close() -> None:
        for proto in list(protocols):
            proto._keepalive.cancel()
            proto._ticker.cancel()
            try:
                proto.close_all(CloseCode.NORMAL, "ingress shutting down")
            except Exception as exc:
                log.debug("close_all: %s", exc)
        server.close()

    return bound_host, bound_port, close
