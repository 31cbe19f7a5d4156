"""Browser <-> ingress framing: length-prefixed records on WebTransport streams and WebSocket messages.

The layout is documented in ``schemas/FRAMING.md``; this module is its reference implementation.
Every record is ``u32 length`` (big-endian, bytes that follow) + ``u8 version`` + ``u8 type`` + body.
Types 1-5 are media/data frames (the type *is* the kind), 0x10 ACK, 0x11 NOTICE and 0x12 VERDICT travel
from the ingress back to a publisher, 0x13 CLOCK goes both ways (a client's clock-offset request and
the ingress's reply), 0x20 DELIVERY carries a room's output to a viewer.

Parsing is strict: every field is range-checked and every failure raises a :class:`FramingError`
subclass whose ``code`` (a stable string, also used as a metric label) and message name the field.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from enum import IntEnum

from schemas.names import ID_RE

VERSION = 1
LENGTH_PREFIX = 4  # bytes of the u32 record length
MAX_RECORD_SIZE = 64 * 1024 * 1024  # bytes; hard ceiling, configurable limits sit below it
MAX_REASON_BYTES = 1024  # same cap as a WebTransport close reason
MAX_PROPERTIES = 64
NAME_RE = ID_RE  # room, stream and user ids: the one name rule (schemas/names.py, docs/names.md)


class Kind(IntEnum):
    VIDEO = 1
    SCREEN = 2
    AUDIO = 3
    CHAT = 4
    FILE = 5


class RecordType(IntEnum):
    ACK = 0x10
    NOTICE = 0x11
    VERDICT = 0x12
    CLOCK = 0x13
    DELIVERY = 0x20


class Codec(IntEnum):
    VP8 = 1
    VP9 = 2
    H264 = 3
    JPEG = 4
    I420 = 5
    OPUS = 6
    AAC = 7
    JSON = 8
    BYTES = 9


class AckStatus(IntEnum):
    OK = 0  # broker-acked (media: cumulative up to seq on that stream; chat: exactly this seq)
    REJECTED = 1  # this frame was not published; code and reason say why


class VerdictAction(IntEnum):
    """What moderation did with one chat message (verdict.schema.json ``action``)."""

    ALLOW = 0
    MASK = 1
    DROP = 2
    FLAG = 3


# Which codecs each kind may carry (ENVELOPE.md "codec" property).
KIND_CODECS: dict[Kind, frozenset[Codec]] = {
    Kind.VIDEO: frozenset({Codec.VP8, Codec.VP9, Codec.H264, Codec.JPEG, Codec.I420}),
    Kind.SCREEN: frozenset({Codec.VP8, Codec.VP9, Codec.H264, Codec.JPEG, Codec.I420}),
    Kind.AUDIO: frozenset({Codec.OPUS, Codec.AAC}),
    Kind.CHAT: frozenset({Codec.JSON}),
    Kind.FILE: frozenset({Codec.BYTES}),
}

FLAG_KEYFRAME = 0x01
_KNOWN_FLAGS = FLAG_KEYFRAME

# version, type, codec, flags, seq, pts, capture_ts, width, height, stream id length
_FRAME_HEAD = struct.Struct(">BBBBQqdHHB")
_ACK_HEAD = struct.Struct(">BBBIQB")  # version, type, status, code, seq, stream id length
_NOTICE_HEAD = struct.Struct(">BBIB")  # version, type, code, stream id length
_DELIVERY_HEAD = struct.Struct(">BBBB")  # version, type, kind, property count
_VERDICT_HEAD = struct.Struct(">BBBQB")  # version, type, action, seq, stream id length
_CLOCK = struct.Struct(">BBddd")  # version, type, origin, received, transmitted
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64_MAX = 2**64 - 1
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


class FramingError(ValueError):
    """A record could not be parsed or built. ``code`` is stable and short (a metric label).

    ``records`` holds whole records RecordReader.feed() parsed before the bad bytes in the same chunk.
    """

    code = "invalid"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.records: list[Record] = []


class TruncatedRecord(FramingError):
    code = "truncated"


class RecordTooLarge(FramingError):
    code = "too_large"


class UnsupportedVersion(FramingError):
    code = "bad_version"


class UnknownKind(FramingError):
    code = "unknown_kind"


class UnknownCodec(FramingError):
    code = "unknown_codec"


class InvalidField(FramingError):
    code = "invalid_field"


@dataclass(slots=True)
class Frame:
    """One encoded media chunk, chat message or file part from a publisher."""

    kind: Kind
    codec: Codec
    stream: str  # stream id, NAME_RE
    seq: int  # per-stream sequence number from 0, u64
    pts: int  # presentation timestamp, microseconds, i64
    capture_ts: float  # capture wall clock, ms since epoch
    payload: bytes
    keyframe: bool = False
    width: int = 0  # pixels, video/screen only (0 = unknown)
    height: int = 0


@dataclass(slots=True)
class Ack:
    """Ingress -> publisher: a frame (or every frame up to ``seq`` on a media stream) is broker-acked."""

    stream: str
    seq: int
    status: AckStatus = AckStatus.OK
    code: int = 0
    reason: str = ""


@dataclass(slots=True)
class Notice:
    """Ingress -> client: a stream (or, with ``stream == ''``, the session) is being closed, and why."""

    code: int
    reason: str
    stream: str = ""


@dataclass(slots=True)
class Delivery:
    """Ingress -> viewer: one message of a room output topic, with its Pulsar properties."""

    kind: Kind
    properties: dict[str, str] = field(default_factory=dict)
    payload: bytes = b""


@dataclass(slots=True)
class Verdict:
    """Ingress -> the publisher that sent chat frame ``seq`` of ``stream``: what moderation decided.

    ``payload`` is the verdict JSON exactly as the moderate function wrote it (verdict.schema.json:
    rules, reason, msg_id, ...); ``action`` repeats its action so a client can act without parsing."""

    stream: str
    seq: int
    action: VerdictAction
    payload: bytes = b""


@dataclass(slots=True)
class Clock:
    """Clock-offset exchange, NTP's on-wire timestamps (FRAMING.md "Clock"), all ms since the epoch.

    A client sends ``origin`` (its clock when sending) with the other two 0; the ingress answers with
    ``origin`` echoed, ``received`` (its clock when the request arrived) and ``transmitted`` (when the
    reply left). The client, reading its clock on arrival, gets offset and round trip from the four."""

    origin: float
    received: float = 0.0
    transmitted: float = 0.0

    @property
    def is_request(self) -> bool:
        return self.received == 0.0 and self.transmitted == 0.0


Record = Frame | Ack | Notice | Delivery | Verdict | Clock


def _check_name(what: str, value: str, allow_empty: bool = False) -> bytes:
    if allow_empty and value == "":
        return b""
    if not NAME_RE.fullmatch(value):
        raise InvalidField(f"{what} {value!r} must match {NAME_RE.pattern}")
    return value.encode("ascii")


def _reason_bytes(reason: str) -> bytes:
    raw = reason.encode("utf-8")
    if len(raw) > MAX_REASON_BYTES:
        raise InvalidField(f"reason is {len(raw)} bytes, limit {MAX_REASON_BYTES}")
    return raw


def _with_length(body: bytes | bytearray) -> bytes:
    if len(body) > MAX_RECORD_SIZE:
        raise RecordTooLarge(f"record of {len(body)} bytes exceeds {MAX_RECORD_SIZE}")
    return _U32.pack(len(body)) + bytes(body)


def serialize_frame(frame: Frame) -> bytes:
    """Encode a frame as one length-prefixed record (FRAMING.md "Frame")."""
    try:
        kind = Kind(frame.kind)
        codec = Codec(frame.codec)
    except ValueError as exc:
        raise InvalidField(str(exc)) from None
    if codec not in KIND_CODECS[kind]:
        raise UnknownCodec(f"codec {codec.name.lower()} is not allowed for kind {kind.name.lower()}")
    if not 0 <= frame.seq <= _U64_MAX:
        raise InvalidField(f"seq {frame.seq} out of u64 range")
    if not _I64_MIN <= frame.pts <= _I64_MAX:
        raise InvalidField(f"pts {frame.pts} out of i64 range")
    if not math.isfinite(frame.capture_ts) or frame.capture_ts < 0:
        raise InvalidField(f"capture_ts {frame.capture_ts} must be finite and >= 0")
    if not (0 <= frame.width <= 0xFFFF and 0 <= frame.height <= 0xFFFF):
        raise InvalidField(f"width/height {frame.width}x{frame.height} out of u16 range")
    stream = _check_name("stream", frame.stream)
    head = _FRAME_HEAD.pack(
        VERSION, kind, codec, FLAG_KEYFRAME if frame.keyframe else 0, frame.seq, frame.pts,
        float(frame.capture_ts), frame.width, frame.height, len(stream),
    )
    return _with_length(b"".join((head, stream, frame.payload)))


def serialize_ack(ack: Ack) -> bytes:
    stream = _check_name("stream", ack.stream)
    if not 0 <= ack.seq <= _U64_MAX or not 0 <= ack.code <= 0xFFFFFFFF:
        raise InvalidField(f"ack seq {ack.seq} or code {ack.code} out of range")
    reason = _reason_bytes(ack.reason)
    head = _ACK_HEAD.pack(VERSION, RecordType.ACK, AckStatus(ack.status), ack.code, ack.seq, len(stream))
    return _with_length(b"".join((head, stream, _U16.pack(len(reason)), reason)))


def serialize_notice(notice: Notice) -> bytes:
    stream = _check_name("stream", notice.stream, allow_empty=True)
    if not 0 <= notice.code <= 0xFFFFFFFF:
        raise InvalidField(f"notice code {notice.code} out of u32 range")
    reason = _reason_bytes(notice.reason)
    head = _NOTICE_HEAD.pack(VERSION, RecordType.NOTICE, notice.code, len(stream))
    return _with_length(b"".join((head, stream, _U16.pack(len(reason)), reason)))


def serialize_delivery(delivery: Delivery) -> bytes:
    if len(delivery.properties) > MAX_PROPERTIES:
        raise InvalidField(f"{len(delivery.properties)} properties, limit {MAX_PROPERTIES}")
    parts: list[bytes] = [_DELIVERY_HEAD.pack(VERSION, RecordType.DELIVERY, Kind(delivery.kind),
                                              len(delivery.properties))]
    for key, value in delivery.properties.items():
        kb, vb = key.encode("utf-8"), value.encode("utf-8")
        if not 0 < len(kb) <= 0xFF or len(vb) > 0xFFFF:
            raise InvalidField(f"property {key!r}: key 1..255 bytes, value <= 65535 bytes")
        parts += [bytes((len(kb),)), kb, _U16.pack(len(vb)), vb]
    parts.append(delivery.payload)
    return _with_length(b"".join(parts))


def serialize_verdict(verdict: Verdict) -> bytes:
    stream = _check_name("stream", verdict.stream)
    if not 0 <= verdict.seq <= _U64_MAX:
        raise InvalidField(f"verdict seq {verdict.seq} out of u64 range")
    try:
        action = VerdictAction(verdict.action)
    except ValueError:
        raise InvalidField(f"verdict action {verdict.action!r} unknown") from None
    head = _VERDICT_HEAD.pack(VERSION, RecordType.VERDICT, action, verdict.seq, len(stream))
    return _with_length(b"".join((head, stream, verdict.payload)))


def serialize_clock(clock: Clock) -> bytes:
    for name in ("origin", "received", "transmitted"):
        value = getattr(clock, name)
        if not math.isfinite(value) or value < 0:
            raise InvalidField(f"clock {name} {value} must be finite and >= 0")
    return _with_length(_CLOCK.pack(VERSION, RecordType.CLOCK, clock.origin, clock.received, clock.transmitted))


def serialize(record: Record) -> bytes:
    """Encode any record type; the inverse of :func:`parse`."""
    if isinstance(record, Frame):
        return serialize_frame(record)
    if isinstance(record, Ack):
        return serialize_ack(record)
    if isinstance(record, Notice):
        return serialize_notice(record)
    if isinstance(record, Delivery):
        return serialize_delivery(record)
    if isinstance(record, Verdict):
        return serialize_verdict(record)
    if isinstance(record, Clock):
        return serialize_clock(record)
    raise TypeError(f"not a record: {type(record).__name__}")


class _Cursor:
    """Bounds-checked reads from one record body; every overrun names the field."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: memoryview, pos: int) -> None:
        self.buf, self.pos = buf, pos

    def take(self, n: int, what: str) -> memoryview:
        if self.pos + n > len(self.buf):
            raise TruncatedRecord(f"record ends inside {what} (needs {n} bytes at offset {self.pos})")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def name(self, n: int, what: str, allow_empty: bool = False) -> str:
        raw = bytes(self.take(n, what))
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise InvalidField(f"{what} is not ASCII") from None
        _check_name(what, text, allow_empty)
        return text

    def reason(self) -> str:
        (n,) = _U16.unpack(self.take(2, "reason length"))
        if n > MAX_REASON_BYTES:
            raise InvalidField(f"reason length {n} exceeds {MAX_REASON_BYTES}")
        try:
            return bytes(self.take(n, "reason")).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidField("reason is not UTF-8") from None

    def done(self, what: str) -> None:
        if self.pos != len(self.buf):
            raise InvalidField(f"{len(self.buf) - self.pos} trailing bytes after {what}")


def parse_body(body: bytes | bytearray | memoryview) -> Record:
    """Decode one record body (everything after the u32 length)."""
    view = memoryview(body)
    if len(view) < 2:
        raise TruncatedRecord(f"record body of {len(view)} bytes has no version/type")
    version, rtype = view[0], view[1]
    if version != VERSION:
        raise UnsupportedVersion(f"version {version}, this ingress speaks {VERSION}")
    if rtype in Kind._value2member_map_:
        return _parse_frame(view)
    if rtype == RecordType.ACK:
        cur = _Cursor(view, 0)
        _, _, status, code, seq, n = _ACK_HEAD.unpack(cur.take(_ACK_HEAD.size, "ack header"))
        if status not in AckStatus._value2member_map_:
            raise InvalidField(f"ack status {status} unknown")
        stream = cur.name(n, "stream")
        ack = Ack(stream=stream, seq=seq, status=AckStatus(status), code=code, reason=cur.reason())
        cur.done("ack")
        return ack
    if rtype == RecordType.NOTICE:
        cur = _Cursor(view, 0)
        _, _, code, n = _NOTICE_HEAD.unpack(cur.take(_NOTICE_HEAD.size, "notice header"))
        stream = cur.name(n, "stream", allow_empty=True)
        notice = Notice(code=code, reason=cur.reason(), stream=stream)
        cur.done("notice")
        return notice
    if rtype == RecordType.VERDICT:
        cur = _Cursor(view, 0)
        _, _, action, seq, n = _VERDICT_HEAD.unpack(cur.take(_VERDICT_HEAD.size, "verdict header"))
        if action not in VerdictAction._value2member_map_:
            raise InvalidField(f"verdict action {action} unknown")
        stream = cur.name(n, "stream")
        return Verdict(stream=stream, seq=seq, action=VerdictAction(action), payload=bytes(view[cur.pos:]))
    if rtype == RecordType.DELIVERY:
        return _parse_delivery(view)
    if rtype == RecordType.CLOCK:
        if len(view) != _CLOCK.size:
            raise InvalidField(f"clock record body is {len(view)} bytes, must be {_CLOCK.size}")
        _, _, origin, received, transmitted = _CLOCK.unpack(view)
        for name, value in (("origin", origin), ("received", received), ("transmitted", transmitted)):
            if not math.isfinite(value) or value < 0:
                raise InvalidField(f"clock {name} {value} must be finite and >= 0")
        return Clock(origin, received, transmitted)
    raise UnknownKind(f"record type/kind {rtype} unknown")


def _parse_frame(view: memoryview) -> Frame:
    cur = _Cursor(view, 0)
    _, kind_b, codec_b, flags, seq, pts, capture_ts, width, height, n = _FRAME_HEAD.unpack(
        cur.take(_FRAME_HEAD.size, "frame header"))
    kind = Kind(kind_b)
    if codec_b not in Codec._value2member_map_:
        raise UnknownCodec(f"codec {codec_b} unknown")
    codec = Codec(codec_b)
    if codec not in KIND_CODECS[kind]:
        raise UnknownCodec(f"codec {codec.name.lower()} is not allowed for kind {kind.name.lower()}")
    if flags & ~_KNOWN_FLAGS:
        raise InvalidField(f"unknown flag bits 0x{flags & ~_KNOWN_FLAGS:02x}")
    if not math.isfinite(capture_ts) or capture_ts < 0:
        raise InvalidField(f"capture_ts {capture_ts} must be finite and >= 0")
    stream = cur.name(n, "stream")
    payload = bytes(view[cur.pos:])
    return Frame(kind=kind, codec=codec, stream=stream, seq=seq, pts=pts, capture_ts=capture_ts,
                 payload=payload, keyframe=bool(flags & FLAG_KEYFRAME), width=width, height=height)


def _parse_delivery(view: memoryview) -> Delivery:
    cur = _Cursor(view, 0)
    _, _, kind_b, count = _DELIVERY_HEAD.unpack(cur.take(_DELIVERY_HEAD.size, "delivery header"))
    if kind_b not in Kind._value2member_map_:
        raise UnknownKind(f"delivery kind {kind_b} unknown")
    if count > MAX_PROPERTIES:
        raise InvalidField(f"{count} properties, limit {MAX_PROPERTIES}")
    props: dict[str, str] = {}
    for _ in range(count):
        kn = cur.take(1, "property key length")[0]
        if kn == 0:
            raise InvalidField("property key is empty (keys are 1..255 bytes)")
        try:
            key = bytes(cur.take(kn, "property key")).decode("utf-8")
            (vn,) = _U16.unpack(cur.take(2, "property value length"))
            props[key] = bytes(cur.take(vn, "property value")).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidField("property is not UTF-8") from None
    return Delivery(kind=Kind(kind_b), properties=props, payload=bytes(view[cur.pos:]))


def is_clock(data: bytes | bytearray | memoryview) -> bool:
    """A whole record (datagram or WebSocket message) whose type byte says CLOCK; cheap, no parsing."""
    return len(data) >= LENGTH_PREFIX + 2 and data[LENGTH_PREFIX + 1] == RecordType.CLOCK


def parse(data: bytes | bytearray | memoryview, max_record_size: int = MAX_RECORD_SIZE) -> Record:
    """Decode exactly one length-prefixed record (a datagram or a WebSocket message)."""
    view = memoryview(data)
    if len(view) < LENGTH_PREFIX:
        raise TruncatedRecord(f"{len(view)} bytes cannot hold the 4-byte length prefix")
    (length,) = _U32.unpack(view[:LENGTH_PREFIX])
    if length > max_record_size:
        raise RecordTooLarge(f"record length {length} exceeds limit {max_record_size}")
    if len(view) - LENGTH_PREFIX < length:
        raise TruncatedRecord(f"record says {length} bytes, only {len(view) - LENGTH_PREFIX} present")
    if len(view) - LENGTH_PREFIX > length:
        raise InvalidField(f"{len(view) - LENGTH_PREFIX - length} bytes after the record")
    return parse_body(view[LENGTH_PREFIX:])


class RecordReader:
    """Incremental parser for one stream: feed chunks as they arrive, get whole records out.

    The length prefix is checked against ``max_record_size`` as soon as it arrives, so an oversized
    frame is refused before its payload is buffered. After an error the reader is poisoned: the
    stream has lost sync and must be closed (FRAMING.md "Errors").
    """

    __slots__ = ("_buf", "_max", "_failed", "_kind_max")

    def __init__(self, max_record_size: int = MAX_RECORD_SIZE, kind_max: dict[int, int] | None = None) -> None:
        self._buf = bytearray()
        self._max = max_record_size
        self._failed = False
        # Largest record per frame kind (header included): checked as soon as the length prefix and
        # the kind byte are in, so no stream buffers more than its own kind's limit.
        self._kind_max = kind_max or {}

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Record]:
        if self._failed:
            raise FramingError("stream already failed; no more records are read from it")
        self._buf += data
        out: list[Record] = []
        buf = self._buf
        pos = 0
        try:
            while len(buf) - pos >= LENGTH_PREFIX:
                (length,) = _U32.unpack_from(buf, pos)
                if length > self._max:
                    raise RecordTooLarge(f"record length {length} exceeds limit {self._max}")
                if self._kind_max and len(buf) - pos >= LENGTH_PREFIX + 2:
                    kind_limit = self._kind_max.get(buf[pos + LENGTH_PREFIX + 1])
                    if kind_limit is not None and length > kind_limit:
                        kind = Kind(buf[pos + LENGTH_PREFIX + 1]).name.lower()
                        raise RecordTooLarge(f"{kind} record length {length} exceeds the {kind} limit {kind_limit}")
                if len(buf) - pos - LENGTH_PREFIX < length:
                    break
                start = pos + LENGTH_PREFIX
                out.append(parse_body(memoryview(buf)[start:start + length]))
                pos = start + length
        except FramingError as exc:
            # Lost sync; the buffer is left as is (a traceback may still hold views into it).
            self._failed = True
            exc.records = out
            raise
        if pos:
            del buf[:pos]
        return out

    def finish(self) -> None:
        """The stream ended (FIN): leftover bytes mean the last record was cut off."""
        if self._buf and not self._failed:
            self._failed = True
            raise TruncatedRecord(f"stream ended inside a record ({len(self._buf)} bytes left over)")


class CloseCode(IntEnum):
    """Application codes for session close (WebTransport capsule / WebSocket close) and notices.

    The same numbers are used on both transports (WebSocket reserves 4000-4999 for applications).
    """

    NORMAL = 4000  # server shutting down or client asked to close
    TOKEN_MISSING = 4001
    TOKEN_INVALID = 4002  # malformed or bad signature
    TOKEN_EXPIRED = 4003
    WRONG_ROLE = 4004
    BAD_NAME = 4005  # room/user/stream/rendition failed validation
    BAD_REQUEST = 4006  # unknown path or query parameter value
    TOO_MANY_SESSIONS = 4008  # per-address cap
    SERVER_BUSY = 4009  # global session cap
    PROTOCOL_ERROR = 4010  # garbage, truncated record, unknown kind/codec, bad version
    LIMIT_EXCEEDED = 4011  # frame size, bitrate, stream count
    BROKER_ERROR = 4012  # the broker refused or timed out a publish
    FORBIDDEN = 4013  # frame names another room or a kind the session may not send
    IDLE_TIMEOUT = 4014  # a publisher sent nothing for the idle timeout
