"""The parts of schemas/ENVELOPE.md the media functions need: names, properties, header parsing.

Functions may not import the project's `schemas` package (a Pulsar worker does not have it), so
the constants are copied here; tests/test_functions_media_envelope.py checks them against
schemas/ENVELOPE.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

STREAM_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

TOPIC_RAW_VIDEO = "raw-video"
TOPIC_RAW_SCREEN = "raw-screen"
TOPIC_RAW_AUDIO = "raw-audio"
TOPIC_FILE_IN = "file-in"
TOPIC_ENCODED = "encoded"
TOPIC_SEGMENTS = "segments"
TOPIC_DEAD_LETTER = "dead-letter"

KIND_VIDEO, KIND_SCREEN, KIND_AUDIO, KIND_FILE = "video", "screen", "audio", "file"
VIDEO_CODECS = ("vp8", "vp9", "h264", "jpeg", "i420")
AUDIO_CODECS = ("opus", "aac")

# Which kind a raw topic carries when the `kind` property is absent.
KIND_BY_TOPIC = {TOPIC_RAW_VIDEO: KIND_VIDEO, TOPIC_RAW_SCREEN: KIND_SCREEN, TOPIC_RAW_AUDIO: KIND_AUDIO,
                 TOPIC_FILE_IN: KIND_FILE}

SERDE = "bytes_serde.BytesSerDe"


class BadInput(Exception):
    """A message the function cannot handle; `reason` goes to the dead-letter `reason` property."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.reason = f"{code}: {detail}"


def short_topic(topic: str) -> str:
    """`persistent://t/ns/raw-video-partition-3` -> `raw-video`."""
    name = topic.rsplit("/", 1)[-1]
    return re.sub(r"-partition-\d+$", "", name)


def topic_in_namespace(tenant: str, namespace: str, name: str) -> str:
    return f"persistent://{tenant}/{namespace}/{name}"


@dataclass(frozen=True)
class FrameHeader:
    """The frame header carried as message properties (ENVELOPE.md "Properties")."""

    stream: str
    kind: str
    codec: str
    seq: int
    pts: int  # microseconds
    capture_ts: float  # ms since epoch, 0 when unknown
    keyframe: bool | None  # None when the property is absent
    width: int
    height: int


def _int_prop(props: dict[str, str], name: str, default: int | None = None) -> int:
    raw = props.get(name)
    if raw is None or raw == "":
        if default is None:
            raise BadInput("bad_header", f"property {name!r} is missing")
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadInput("bad_header", f"property {name!r} is not an integer: {raw[:40]!r}") from None


def parse_header(props: dict[str, str], key: str, topic: str, event_time_ms: int) -> FrameHeader:
    """Validate the properties of one media message; raises BadInput naming what is wrong."""
    stream = key or props.get("stream", "")
    if not STREAM_ID_RE.fullmatch(stream):
        raise BadInput("bad_header", f"stream id {stream[:70]!r} missing or not [A-Za-z0-9_-]{{1,64}}")
    kind = props.get("kind") or KIND_BY_TOPIC.get(short_topic(topic), "")
    if kind not in KIND_BY_TOPIC.values():
        raise BadInput("bad_header", f"unknown kind {kind[:40]!r}")
    codec = props.get("codec", "")
    seq = _int_prop(props, "seq")
    if seq < 0:
        raise BadInput("bad_header", f"seq {seq} is negative")
    try:
        capture_ts = float(props.get("capture_ts") or event_time_ms or 0)
    except ValueError:
        raise BadInput("bad_header", f"capture_ts is not a number: {props.get('capture_ts', '')[:40]!r}") from None
    pts = _int_prop(props, "pts", default=int(capture_ts * 1000))
    key_prop = props.get("keyframe")
    keyframe = None if key_prop in (None, "") else key_prop == "1"
    width = _int_prop(props, "width", default=0)
    height = _int_prop(props, "height", default=0)
    return FrameHeader(stream, kind, codec, seq, pts, capture_ts, keyframe, width, height)


# ENVELOPE.md "End of stream": the ingress ends each media stream of a publisher whose session is over
# with one empty message carrying these properties; transcode, chunk and route pass it on after the
# stream's last output, and chunk's copy on `segments` (one per track) has segment_type `end`.
PROP_END_OF_STREAM = "end_of_stream"
SEGMENT_TYPE_END = "end"
END_REASONS = ("left", "timeout", "closed")


StreamIdentity = tuple[str, str, str]


def stream_identity(props: dict[str, str], stream: str) -> StreamIdentity:
    """Whose stream a message belongs to: (room, user, stream id). Publishers choose their stream ids,
    so two rooms (or two users of one room) may both send a stream "cam"; per-stream state (sequence
    numbers, decoders, fragments) is kept under the room and user the ingress authenticated, so one
    publisher's frames are never judged against another's (ENVELOPE.md "Properties")."""
    return props.get("room", ""), props.get("user", ""), stream


def is_end_of_stream(props: dict[str, str]) -> bool:
    return props.get(PROP_END_OF_STREAM) == "1"


@dataclass(frozen=True)
class EndOfStream:
    stream: str
    kind: str
    last_seq: int  # the highest seq of the stream sent before the end; -1 when none was
    reason: str


def parse_end(props: dict[str, str], key: str) -> EndOfStream:
    """Validate an end-of-stream message; raises BadInput naming what is wrong."""
    stream = key or props.get("stream", "")
    if not STREAM_ID_RE.fullmatch(stream):
        raise BadInput("bad_header", f"end of stream: stream id {stream[:70]!r} missing or not [A-Za-z0-9_-]{{1,64}}")
    kind = props.get("kind", "")
    if kind not in (KIND_VIDEO, KIND_SCREEN, KIND_AUDIO):
        raise BadInput("bad_header", f"end of stream {stream}: kind {kind[:40]!r} is not video, screen or audio")
    last_seq = _int_prop(props, "last_seq", default=-1)
    if last_seq < -1:
        raise BadInput("bad_header", f"end of stream {stream}: last_seq {last_seq} is below -1")
    reason = props.get("reason", "")
    if reason not in END_REASONS:
        raise BadInput("bad_header", f"end of stream {stream}: reason {reason[:40]!r} is not one of "
                                     f"{', '.join(END_REASONS)}")
    return EndOfStream(stream, kind, last_seq, reason)
