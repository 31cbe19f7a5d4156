"""Sans-I/O publisher session: bytes and broker outcomes in, publish requests and replies out.

The WebTransport and WebSocket shells feed this core; it never touches a socket, a clock or Pulsar.
It owns framing (one RecordReader per transport stream), validation against the token and the
limits, the bounded in-flight window that makes backpressure possible (a slow broker slows the publisher, never grows memory), and
the acknowledgement bookkeeping: an ack sent to a publisher always means *broker-acked* (so a
publisher that resends what was not acked loses nothing), media acks are cumulative per stream, chat acks are per message.
"""

from __future__ import annotations

import json
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from ingress.names import INPUT_TOPIC
from ingress.tokens import Claims
from schemas.framing_codec import (
    Ack,
    AckStatus,
    CloseCode,
    Frame,
    FramingError,
    Kind,
    Notice,
    Record,
    RecordReader,
    RecordTooLarge,
    Verdict,
    VerdictAction,
    parse,
    serialize_ack,
    serialize_notice,
    serialize_verdict,
)

MEDIA_KINDS = (Kind.VIDEO, Kind.SCREEN, Kind.AUDIO)  # the kinds whose streams end (ENVELOPE.md "End of stream")
END_REASONS = ("left", "timeout", "closed")  # why a publisher's streams ended (ENVELOPE.md "End of stream")
CONTROL = -1  # pseudo transport id: the session's control channel (WT server uni stream / the WebSocket)
# Chat frames whose verdict a session still waits for; the oldest is forgotten beyond this (a verdict
# that never comes, e.g. the pipeline is down, must not grow the session without bound).
MAX_AWAITED_VERDICTS = 256
# Memory a queued record costs besides its payload (the Publish, its properties dict, the pending
# entry): charged against the backlog so that empty-payload records are bounded too. Measured by
# bench/ingress_memory.py (about 1.3 KB each); 1 KiB keeps the accounting on the safe side of it.
RECORD_OVERHEAD = 1024
FRAME_HEADER_MAX = 37 + 64  # FRAMING.md: the largest frame header (stream id of 64 bytes)


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-session limits; sizes in bytes, rates in bit/s."""

    max_frame_bytes: int = 4 * 1024 * 1024  # video/screen/audio frame payload
    max_chat_bytes: int = 16 * 1024
    max_file_bytes: int = 32 * 1024 * 1024  # published with Pulsar chunking
    max_bitrate: int = 50_000_000  # average over burst_seconds
    burst_seconds: float = 2.0
    max_open_streams: int = 64  # concurrent transport streams
    max_stream_ids: int = 16  # distinct stream ids (tracks) per session
    max_inflight: int = 64  # frames sent to the broker and not yet acked
    max_backlog_bytes: int = 8 * 1024 * 1024  # parsed frames waiting for an in-flight slot (+RECORD_OVERHEAD each)
    # partial records on every stream plus the backlog; a file record (32 MiB) must fit
    max_buffered_bytes: int = 40 * 1024 * 1024
    idle_timeout: float = 60.0  # s without a byte from the publisher before the session is closed (0: never)

    def max_payload(self, kind: Kind) -> int:
        if kind == Kind.CHAT:
            return self.max_chat_bytes
        if kind == Kind.FILE:
            return self.max_file_bytes
        return self.max_frame_bytes

    def kind_record_limits(self) -> dict[int, int]:
        """Largest record per frame kind, header included (RecordReader checks it before the payload)."""
        return {int(kind): self.max_payload(kind) + FRAME_HEADER_MAX for kind in Kind}

    @property
    def max_record_bytes(self) -> int:
        # header (<= 33 + 64 bytes) on top of the largest payload any kind may carry
        return max(self.max_frame_bytes, self.max_chat_bytes, self.max_file_bytes) + 128


@dataclass(slots=True)
class Publish:
    """Ask the shell to send one message to the broker; report back with ``published(ticket, ...)``.

    Every producer has Pulsar chunking on (publisher.py), so a payload above the broker's maximum
    message size (files, a huge keyframe) is split by the client and reassembled by consumers."""

    ticket: int
    topic: str  # short name, e.g. raw-video
    payload: bytes
    properties: dict[str, str]
    key: str
    event_timestamp: int  # ms since epoch (0 = unknown)


@dataclass(slots=True)
class Send:
    """Write these record bytes to transport stream ``channel`` (CONTROL = the control channel)."""

    channel: int
    data: bytes


@dataclass(slots=True)
class CloseStream:
    channel: int
    code: CloseCode
    reason: str


@dataclass(slots=True)
class CloseSession:
    code: CloseCode
    reason: str


@dataclass(slots=True)
class Rejected:
    """A stream or frame was refused; the shell counts it (metric label ``what``)."""

    what: str


Action = Publish | Send | CloseStream | CloseSession | Rejected


@dataclass(slots=True)
class _Pending:
    ticket: int
    stream: str
    seq: int
    reply_channel: int  # where the ack goes
    per_message: bool  # chat: ack this seq exactly; media: cumulative


@dataclass(slots=True)
class _StreamAcks:
    kind: Kind
    codec: str = ""  # of the newest frame admitted
    sent_seq: int = -1  # highest seq handed to the broker (an end of stream names it, ENVELOPE.md)
    acked_seq: int = -1
    dirty: bool = False
    # Group ordering (FRAMING.md "Ordering"): the transport stream currently publishing this stream id,
    # and frames that arrived on later-opened transport streams, held until the owner ends.
    owner: int | None = None
    held: dict[int, list[tuple[Publish, _Pending]]] = field(default_factory=dict)
    held_ended: set[int] = field(default_factory=set)


def format_ms(value: float) -> str:
    """Millisecond timestamps as ENVELOPE.md wants them: decimal, fraction only when present."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return text or "0"


class PublisherSession:
    """One authenticated publisher. Not thread-safe; the shell calls it from its event loop."""

    def __init__(self, claims: Claims, limits: Limits, now: float, max_datagram_bytes: int = 1400) -> None:
        self.claims = claims
        self.limits = limits
        self.closed = False
        self._readers: dict[int, RecordReader] = {}
        self._dead: set[int] = set()  # transport streams that ended or were closed: ignore late bytes
        self._bidi: set[int] = set()
        self._streams: dict[str, _StreamAcks] = {}
        self._inflight: dict[int, _Pending] = {}
        self._backlog: deque[tuple[Publish, _Pending]] = deque()
        self._backlog_bytes = 0
        self._next_ticket = 0
        self._max_datagram = max_datagram_bytes
        # token bucket for the bitrate limit, in bytes
        self._bucket_capacity = limits.max_bitrate / 8 * limits.burst_seconds
        self._bucket = self._bucket_capacity
        self._bucket_time = now
        self.frames_received = 0
        self.bytes_received = 0
        # (seq, t_ingress) as stamped on the chat-in message -> (reply channel, stream id). Both
        # properties survive moderate and route untouched, and t_ingress is this session's own clock
        # reading, so a verdict matches only the frame it is about (FRAMING.md "Verdict").
        self._verdict_waits: OrderedDict[tuple[str, str], tuple[int, str]] = OrderedDict()
        self.chatted = False  # a chat frame was admitted: the shell starts following the room's verdicts
        self._kind_limits = limits.kind_record_limits()
        self._last_activity = now

    # ---- time ------------------------------------------------------------------------------
    def tick(self, now: float) -> list[Action]:
        """Called by the shell about once a second: the token's expiry and the idle timeout."""
        if self.closed:
            return []
        if now >= self.claims.expires_at:
            self.closed = True
            return [Rejected("token_expired"), CloseSession(CloseCode.TOKEN_EXPIRED, "token expired during the session")]
        idle = self.limits.idle_timeout
        if idle > 0 and now - self._last_activity > idle and not self._inflight:
            self.closed = True
            return [Rejected("idle"), CloseSession(CloseCode.IDLE_TIMEOUT, f"nothing received for {idle:g} s")]
        return []

    def _activity(self, now: float) -> list[Action]:
        self._last_activity = now
        return self.tick(now) if now >= self.claims.expires_at else []

    # ---- state the shell reads -------------------------------------------------------------
    @property
    def inflight(self) -> int:
        return len(self._inflight)

    @property
    def backlogged(self) -> bool:
        """True when the shell should stop granting read credit (QUIC flow control pushes back)."""
        return bool(self._backlog) or len(self._inflight) >= self.limits.max_inflight

    @property
    def open_streams(self) -> int:
        return len(self._readers)

    # ---- input from the transport ----------------------------------------------------------
    def stream_opened(self, channel: int, bidi: bool) -> list[Action]:
        if self.closed or channel in self._readers or channel in self._dead:
            return []
        if len(self._readers) >= self.limits.max_open_streams:
            return [Rejected("too_many_streams"),
                    CloseStream(channel, CloseCode.LIMIT_EXCEEDED,
                                f"more than {self.limits.max_open_streams} open streams in this session")]
        self._readers[channel] = RecordReader(self.limits.max_record_bytes, self._kind_limits)
        if bidi:
            self._bidi.add(channel)
        return []

    def stream_data(self, channel: int, data: bytes, ended: bool, now: float, bidi: bool = False) -> list[Action]:
        """Bytes from a client stream (uni or bidi). Errors close that stream only."""
        if self.closed:
            return []
        actions: list[Action] = self._activity(now)
        if self.closed:
            return actions
        if channel not in self._readers:
            if channel in self._dead:
                return actions  # bytes still in flight on a stream we already closed
            actions += self.stream_opened(channel, bidi)
            if channel not in self._readers:
                self._dead.add(channel)
                return actions
        reader = self._readers[channel]
        error: FramingError | None = None
        frames: list[Record] = []
        try:
            frames = reader.feed(data) if data else []
            if ended:
                reader.finish()
        except FramingError as exc:
            error = exc
            frames = frames or exc.records  # whole records that came before the bad bytes
        for record in frames:
            if not isinstance(record, Frame):
                self._drop_reader(channel, actions)
                actions += [Rejected("unexpected_record"),
                            CloseStream(channel, CloseCode.PROTOCOL_ERROR,
                                        f"{type(record).__name__} records only travel ingress->client")]
                return actions
            err = self._admit(record, channel, now, actions)
            if err is not None:
                self._drop_reader(channel, actions)
                actions.append(err)
                return actions
            if self.closed:
                return actions
        if error is None and self._buffered() > self.limits.max_buffered_bytes:
            self._overflow(actions, self.limits.max_buffered_bytes, "held (partial records and backlog)")
            return actions
        if error is not None:
            # Whole records before the bad bytes were published; the stream itself has lost sync.
            self._drop_reader(channel, actions)
            code = CloseCode.LIMIT_EXCEEDED if isinstance(error, RecordTooLarge) else CloseCode.PROTOCOL_ERROR
            actions += [Rejected(error.code), CloseStream(channel, code, f"{error.code}: {error}")]
            return actions
        if ended:
            self._drop_reader(channel, actions)
        return actions

    def stream_reset(self, channel: int) -> list[Action]:
        """The client aborted a stream: its partial record is discarded (docs/media-and-webtransport.md §1.4)."""
        actions: list[Action] = []
        self._drop_reader(channel, actions)
        return actions

    def message(self, data: bytes, now: float, max_bytes: int | None = None) -> list[Action]:
        """One whole record (a datagram or a WebSocket binary message). Errors reject that record."""
        if self.closed:
            return []
        expired = self._activity(now)
        if expired:
            return expired
        try:
            record = parse(data, max_bytes or self.limits.max_record_bytes)
        except FramingError as exc:
            return [Rejected(exc.code),
                    Send(CONTROL, serialize_notice(Notice(CloseCode.PROTOCOL_ERROR, f"{exc.code}: {exc}")))]
        if not isinstance(record, Frame):
            return [Rejected("unexpected_record"),
                    Send(CONTROL, serialize_notice(Notice(CloseCode.PROTOCOL_ERROR,
                                                          f"{type(record).__name__} is ingress->client only")))]
        actions: list[Action] = []
        err = self._admit(record, CONTROL, now, actions)
        if err is not None:
            actions.append(Send(CONTROL, serialize_notice(Notice(err.code, err.reason, record.stream))))
        return actions

    def datagram(self, data: bytes, now: float) -> list[Action]:
        """Audio may come as datagrams (FRAMING.md): one record each, audio kind only."""
        if len(data) > self._max_datagram:
            return [Rejected("too_large")]
        actions = self.message(data, now)
        return actions

    # ---- input from the broker -------------------------------------------------------------
    def published(self, ticket: int, ok: bool, error: str = "") -> list[Action]:
        """The broker acked (or refused) a Publish. Returns chat acks, failures and freed backlog."""
        pending = self._inflight.pop(ticket, None)
        actions: list[Action] = []
        if pending is None:
            return actions
        state = self._streams.get(pending.stream)
        if not ok:
            actions.append(Rejected("broker_error"))
            actions.append(Send(pending.reply_channel, serialize_ack(Ack(
                pending.stream, pending.seq, AckStatus.REJECTED, CloseCode.BROKER_ERROR,
                f"broker did not accept the frame: {error}"[:1000]))))
        elif pending.per_message:
            actions.append(Send(pending.reply_channel, serialize_ack(Ack(pending.stream, pending.seq))))
        elif state is not None and pending.seq > state.acked_seq:
            state.acked_seq = pending.seq
            state.dirty = True
        elif state is not None:
            # At or below the cumulative mark: a resend of a frame that was REJECTED earlier in this
            # session (or a repeat). The coalesced cumulative ack cannot announce it (the mark is already
            # past), so confirm exactly this seq now (FRAMING.md "Ack": an OK at or below a stream's
            # previous OK names that one frame).
            actions.append(Send(CONTROL, serialize_ack(Ack(pending.stream, pending.seq))))
        while self._backlog and len(self._inflight) < self.limits.max_inflight and not self.closed:
            publish, pend = self._backlog.popleft()
            self._backlog_bytes -= len(publish.payload) + RECORD_OVERHEAD
            self._send(publish, pend, actions)
        return actions

    def verdict(self, properties: Mapping[str, str], payload: bytes) -> list[Action]:
        """A message of the room's verdict topic. Only a verdict about a chat frame this session
        published (same room, same user, same seq and t_ingress) becomes a Verdict record; every
        other verdict, including other users' (a verdict is private), yields nothing."""
        if self.closed or properties.get("room") != self.claims.room or properties.get("user") != self.claims.user:
            return []
        key = (properties.get("seq", ""), properties.get("t_ingress", ""))
        wait = self._verdict_waits.pop(key, None)
        if wait is None:
            return []
        channel, stream = wait
        try:
            action = VerdictAction[properties.get("action", "").upper()]
            record = serialize_verdict(Verdict(stream, int(key[0]), action, payload))
        except (KeyError, ValueError) as exc:  # not one of allow/mask/drop/flag, or an oversized payload
            return [Rejected("bad_verdict"), Send(CONTROL, serialize_notice(Notice(
                CloseCode.PROTOCOL_ERROR, f"unusable verdict for chat frame {key[0]} of {stream}: {exc}"[:1000],
                stream)))]  # fmt: skip
        return [Send(channel, record)]

    def take_cumulative_acks(self) -> list[Action]:
        """Coalesced media acks: one record per stream that advanced since the last call."""
        out: list[Action] = []
        for stream, state in self._streams.items():
            if state.dirty:
                state.dirty = False
                out.append(Send(CONTROL, serialize_ack(Ack(stream, state.acked_seq))))
        return out

    def end_of_streams(self, reason: str, now: float) -> list[Publish]:
        """The session is over: one end-of-stream message per media stream it sent frames of, for the
        stream's input topic (ENVELOPE.md "End of stream"). The shell sends them after the session's
        frames on the same producers, so each lands behind its stream's last frame."""
        if reason not in END_REASONS:
            raise ValueError(f"end of stream reason {reason!r} is not one of {', '.join(END_REASONS)}")
        out = []
        for stream, state in self._streams.items():
            if state.kind not in MEDIA_KINDS or state.sent_seq < 0:
                continue
            properties = {
                "end_of_stream": "1",
                "kind": state.kind.name.lower(),
                "codec": state.codec,
                "stream": stream,
                "room": self.claims.room,
                "user": self.claims.user,
                "last_seq": str(state.sent_seq),
                "reason": reason,
                "t_ingress": format_ms(now * 1000.0),
            }
            out.append(Publish(ticket=self._next_ticket, topic=INPUT_TOPIC[state.kind], payload=b"",
                               properties=properties, key=stream, event_timestamp=int(now * 1000)))
            self._next_ticket += 1
        return out

    def close(self) -> list[int]:
        """Session over: forget everything; returns the tickets still in flight (acks are dropped)."""
        self.closed = True
        self._readers.clear()
        self._verdict_waits.clear()
        self._backlog.clear()
        self._backlog_bytes = 0
        return list(self._inflight)

    # ---- internals --------------------------------------------------------------------------
    def _drop_reader(self, channel: int, actions: list[Action]) -> None:
        self._readers.pop(channel, None)
        self._dead.add(channel)
        self._bidi.discard(channel)
        self._channel_ended(channel, actions)

    def _admit(self, frame: Frame, channel: int, now: float, actions: list[Action]) -> CloseStream | None:
        """Validate one frame and queue its Publish; returns a CloseStream when the stream must end."""
        limit = self.limits.max_payload(frame.kind)
        if len(frame.payload) > limit:
            actions.append(Rejected("frame_too_large"))
            return CloseStream(channel, CloseCode.LIMIT_EXCEEDED,
                               f"{frame.kind.name.lower()} frame of {len(frame.payload)} bytes exceeds {limit}")
        state = self._streams.get(frame.stream)
        if state is None:
            if len(self._streams) >= self.limits.max_stream_ids:
                actions.append(Rejected("too_many_stream_ids"))
                return CloseStream(channel, CloseCode.LIMIT_EXCEEDED,
                                   f"more than {self.limits.max_stream_ids} stream ids in this session")
            state = self._streams[frame.stream] = _StreamAcks(frame.kind)
        elif state.kind != frame.kind:
            actions.append(Rejected("kind_mismatch"))
            return CloseStream(channel, CloseCode.FORBIDDEN,
                               f"stream {frame.stream} carries {state.kind.name.lower()}, "
                               f"not {frame.kind.name.lower()}")
        state.codec = frame.codec.name.lower()
        if frame.kind == Kind.CHAT:
            problem = _chat_problem(frame.payload)
            if problem:
                # A bad chat message is refused on its own; the stream stays usable.
                actions.append(Rejected("bad_chat"))
                actions.append(Send(channel if channel in self._bidi else CONTROL, serialize_ack(Ack(
                    frame.stream, frame.seq, AckStatus.REJECTED, CloseCode.PROTOCOL_ERROR, problem))))
                return None
        if frame.kind in (Kind.VIDEO, Kind.SCREEN, Kind.AUDIO) and not self._spend(len(frame.payload), now):
            actions.append(Rejected("bitrate"))
            self.closed = True
            actions.append(CloseSession(CloseCode.LIMIT_EXCEEDED,
                                        f"bitrate above {self.limits.max_bitrate} bit/s "
                                        f"(averaged over {self.limits.burst_seconds} s)"))
            return None
        self.frames_received += 1
        self.bytes_received += len(frame.payload)
        ticket = self._next_ticket
        self._next_ticket += 1
        publish = Publish(
            ticket=ticket,
            topic=INPUT_TOPIC[frame.kind],
            payload=frame.payload,
            properties=self._properties(frame, now),
            key=self.claims.room if frame.kind == Kind.CHAT else frame.stream,
            event_timestamp=int(min(frame.capture_ts, now * 1000.0)),
        )
        per_message = frame.kind in (Kind.CHAT, Kind.FILE)
        reply = channel if (per_message and channel in self._bidi) else CONTROL
        if frame.kind == Kind.CHAT:
            self._await_verdict(publish.properties, reply, frame.stream)
        pending = _Pending(ticket, frame.stream, frame.seq, reply, per_message)
        if channel != CONTROL and state.owner is not None and channel > state.owner:
            # A later group of this stream id arrived before the earlier group's stream ended: hold it
            # so groups reach the topic in the order their streams were opened.
            if self._backlog_bytes + len(publish.payload) + RECORD_OVERHEAD > self.limits.max_backlog_bytes:
                self._overflow(actions)
                return None
            state.held.setdefault(channel, []).append((publish, pending))
            self._backlog_bytes += len(publish.payload) + RECORD_OVERHEAD
            return None
        if channel != CONTROL and state.owner is None:
            state.owner = channel
        return self._dispatch(publish, pending, actions)

    def _await_verdict(self, properties: dict[str, str], reply: int, stream: str) -> None:
        self.chatted = True
        self._verdict_waits[(properties["seq"], properties["t_ingress"])] = (reply, stream)
        while len(self._verdict_waits) > MAX_AWAITED_VERDICTS:
            self._verdict_waits.popitem(last=False)

    def _send(self, publish: Publish, pending: _Pending, actions: list[Action]) -> None:
        self._inflight[publish.ticket] = pending
        actions.append(publish)
        state = self._streams.get(pending.stream)
        if state is not None and pending.seq > state.sent_seq:
            state.sent_seq = pending.seq

    def _dispatch(self, publish: Publish, pending: _Pending, actions: list[Action]) -> CloseStream | None:
        if len(self._inflight) < self.limits.max_inflight and not self._backlog:
            self._send(publish, pending, actions)
            return None
        if self._backlog_bytes + len(publish.payload) + RECORD_OVERHEAD > self.limits.max_backlog_bytes:
            self._overflow(actions)
            return None
        self._backlog.append((publish, pending))
        self._backlog_bytes += len(publish.payload) + RECORD_OVERHEAD
        return None

    def _buffered(self) -> int:
        """Bytes this session holds: partial records of every stream plus the backlog."""
        return sum(reader.buffered for reader in self._readers.values()) + self._backlog_bytes

    def _overflow(self, actions: list[Action], limit: int | None = None, what: str = "waiting for the broker") -> None:
        # The shell should have paused reading long before; a client that ignores flow control
        # (e.g. over WebSocket) is cut off rather than buffered without bound.
        actions.append(Rejected("backlog_full"))
        self.closed = True
        actions.append(CloseSession(CloseCode.LIMIT_EXCEEDED,
                                    f"more than {limit or self.limits.max_backlog_bytes} bytes {what} "
                                    f"(records count {RECORD_OVERHEAD} bytes each on top of their payload)"))
        self._readers.clear()
        return None

    def _channel_ended(self, channel: int, actions: list[Action]) -> None:
        """A transport stream finished or died: hand its stream ids to the next group in line."""
        for state in self._streams.values():
            if channel in state.held:
                state.held_ended.add(channel)
            if state.owner != channel:
                continue
            state.owner = None
            while state.held and not self.closed:
                nxt = min(state.held)
                entries = state.held.pop(nxt)
                for publish, pending in entries:
                    self._backlog_bytes -= len(publish.payload) + RECORD_OVERHEAD
                    self._dispatch(publish, pending, actions)
                if nxt in state.held_ended:
                    state.held_ended.discard(nxt)
                    continue
                state.owner = nxt
                break

    def _spend(self, nbytes: int, now: float) -> bool:
        """Token bucket in bytes: a frame may start while the bucket is positive and may overdraw it
        (one big keyframe is fine); a session still in debt when the next frame comes is over the rate."""
        rate = self.limits.max_bitrate / 8
        self._bucket = min(self._bucket_capacity, self._bucket + (now - self._bucket_time) * rate)
        self._bucket_time = now
        if self._bucket <= 0:
            return False
        self._bucket -= nbytes
        return True

    def _properties(self, frame: Frame, now: float) -> dict[str, str]:
        props = {
            "kind": frame.kind.name.lower(),
            "codec": frame.codec.name.lower(),
            "stream": frame.stream,
            "room": self.claims.room,
            "user": self.claims.user,
            "seq": str(frame.seq),
            "pts": str(frame.pts),
            "capture_ts": format_ms(min(frame.capture_ts, now * 1000.0)),
            "keyframe": "1" if frame.keyframe else "0",
            "t_ingress": format_ms(now * 1000.0),
        }
        if frame.kind in (Kind.VIDEO, Kind.SCREEN):
            props["width"] = str(frame.width)
            props["height"] = str(frame.height)
        return props


def _chat_problem(payload: bytes) -> str:
    try:
        value = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return f"chat payload is not UTF-8 JSON: {exc}"[:200]
    if not isinstance(value, dict):
        return "chat payload must be a JSON object"
    return ""


@dataclass(slots=True)
class AddressBook:
    """Admission control: at most ``per_address`` live sessions per peer IP, ``total`` overall."""

    per_address: int = 16
    total: int = 1000
    _counts: dict[str, int] = field(default_factory=dict)

    def admit(self, address: str) -> tuple[CloseCode, str] | None:
        if sum(self._counts.values()) >= self.total:
            return CloseCode.SERVER_BUSY, f"server at its limit of {self.total} sessions"
        if self._counts.get(address, 0) >= self.per_address:
            return CloseCode.TOO_MANY_SESSIONS, f"more than {self.per_address} sessions from {address}"
        self._counts[address] = self._counts.get(address, 0) + 1
        return None

    def release(self, address: str) -> None:
        left = self._counts.get(address, 0) - 1
        if left > 0:
            self._counts[address] = left
        else:
            self._counts.pop(address, None)
