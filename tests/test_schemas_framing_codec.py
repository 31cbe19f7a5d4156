"""schemas/framing_codec.py: round-trips and every refusal path, with fixed bytes and hypothesis."""

from __future__ import annotations

import dataclasses
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import framing_codec as f
from schemas.framing_codec import (
    Ack,
    AckStatus,
    Codec,
    Delivery,
    Frame,
    Kind,
    Notice,
    RecordReader,
    Verdict,
    VerdictAction,
)

NAMES = st.from_regex(r"^[A-Za-z0-9_-]{1,64}$", fullmatch=True)


def video(seq: int = 0, payload: bytes = b"\x00\x00\x00\x01\x65abc", **kw: Any) -> Frame:
    base = Frame(kind=Kind.VIDEO, codec=Codec.H264, stream="cam-1", seq=seq, pts=seq * 33_333,
                 capture_ts=1_700_000_000_123.5, payload=payload, keyframe=seq == 0, width=640, height=480)
    return dataclasses.replace(base, **kw)


def test_frame_layout_is_the_documented_one() -> None:
    data = f.serialize(video())
    (length,) = struct.unpack(">I", data[:4])
    assert length == len(data) - 4
    # version, type=kind, codec, flags
    assert data[4:8] == bytes([1, Kind.VIDEO, Codec.H264, 1])
    assert struct.unpack(">Q", data[8:16])[0] == 0
    assert struct.unpack(">d", data[24:32])[0] == 1_700_000_000_123.5
    assert struct.unpack(">HH", data[32:36]) == (640, 480)
    assert data[36] == 5 and data[37:42] == b"cam-1"
    assert data[42:] == b"\x00\x00\x00\x01\x65abc"


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(list(Kind)), stream=NAMES, seq=st.integers(0, 2**64 - 1),
       pts=st.integers(-(2**63), 2**63 - 1), ts=st.floats(0, 1e13, allow_nan=False),
       payload=st.binary(max_size=2000), key=st.booleans(), w=st.integers(0, 65535), h=st.integers(0, 65535))
def test_frame_round_trip(kind: Kind, stream: str, seq: int, pts: int, ts: float, payload: bytes,
                          key: bool, w: int, h: int) -> None:
    codec = sorted(f.KIND_CODECS[kind])[0]
    frame = Frame(kind, codec, stream, seq, pts, ts, payload, key, w, h)
    assert f.parse(f.serialize(frame)) == frame


@settings(max_examples=100, deadline=None)
@given(stream=NAMES, seq=st.integers(0, 2**64 - 1), code=st.integers(0, 2**32 - 1),
       reason=st.text(max_size=200), status=st.sampled_from(list(AckStatus)))
def test_ack_and_notice_round_trip(stream: str, seq: int, code: int, reason: str, status: AckStatus) -> None:
    ack = Ack(stream, seq, status, code, reason)
    assert f.parse(f.serialize(ack)) == ack
    notice = Notice(code, reason, stream)
    assert f.parse(f.serialize(notice)) == notice
    assert f.parse(f.serialize(Notice(code, reason))) == Notice(code, reason, "")


@settings(max_examples=100, deadline=None)
@given(props=st.dictionaries(st.text(min_size=1, max_size=20), st.text(max_size=50), max_size=10),
       payload=st.binary(max_size=500), kind=st.sampled_from(list(Kind)))
def test_delivery_round_trip(props: dict[str, str], payload: bytes, kind: Kind) -> None:
    d = Delivery(kind, props, payload)
    assert f.parse(f.serialize(d)) == d


def test_verdict_layout_is_the_documented_one() -> None:
    payload = b'{"action":"drop","rules":["harassment"]}'
    data = f.serialize(Verdict("chat", 2**40 + 3, VerdictAction.DROP, payload))
    (length,) = struct.unpack(">I", data[:4])
    assert length == len(data) - 4
    assert data[4:7] == bytes([1, 0x12, 2])  # version, type, action drop
    assert struct.unpack(">Q", data[7:15])[0] == 2**40 + 3
    assert data[15] == 4 and data[16:20] == b"chat"
    assert data[20:] == payload


@settings(max_examples=100, deadline=None)
@given(stream=NAMES, seq=st.integers(0, 2**64 - 1), action=st.sampled_from(list(VerdictAction)),
       payload=st.binary(max_size=500))
def test_verdict_round_trip(stream: str, seq: int, action: VerdictAction, payload: bytes) -> None:
    verdict = Verdict(stream, seq, action, payload)
    assert f.parse(f.serialize(verdict)) == verdict
    assert RecordReader().feed(f.serialize(verdict) * 2) == [verdict, verdict]


def test_verdict_refusals_name_the_field() -> None:
    good = f.serialize(Verdict("chat", 1, VerdictAction.MASK, b"{}"))
    with pytest.raises(f.InvalidField, match="verdict action 9"):
        f.parse(good[:6] + b"\x09" + good[7:])
    with pytest.raises(f.InvalidField, match="stream"):
        f.parse(good[:16] + b"c/at" + good[20:])
    with pytest.raises(f.TruncatedRecord, match="verdict header"):
        f.parse(struct.pack(">I", 5) + good[4:9])
    with pytest.raises(f.InvalidField, match="stream"):
        f.serialize(Verdict("../x", 1, VerdictAction.DROP))
    with pytest.raises(f.InvalidField, match="seq"):
        f.serialize(Verdict("chat", -1, VerdictAction.DROP))
    with pytest.raises(f.InvalidField, match="action"):
        f.serialize(Verdict("chat", 1, 7))  # type: ignore[arg-type]  # an unknown action on purpose


@settings(max_examples=100, deadline=None)
@given(frames=st.lists(st.integers(0, 1000), min_size=1, max_size=8), cuts=st.lists(st.integers(1, 50), max_size=30))
def test_reader_reassembles_any_split(frames: list[int], cuts: list[int]) -> None:
    records = [video(i, payload=bytes([i % 256]) * n) for i, n in enumerate(frames)]
    data = b"".join(f.serialize(r) for r in records)
    reader = RecordReader()
    out: list[object] = []
    pos = 0
    for cut in cuts:
        out += reader.feed(data[pos:pos + cut])
        pos += cut
    out += reader.feed(data[pos:])
    reader.finish()
    assert out == records


@settings(max_examples=200, deadline=None)
@given(garbage=st.binary(min_size=1, max_size=300))
def test_garbage_is_refused_cleanly_never_crashes(garbage: bytes) -> None:
    reader = RecordReader(max_record_size=1000)
    try:
        records = reader.feed(garbage)
        reader.finish()
    except f.FramingError as exc:
        assert exc.code in {"truncated", "too_large", "bad_version", "unknown_kind", "unknown_codec",
                            "invalid_field", "invalid"}
        assert str(exc)
    else:
        assert all(isinstance(r, Frame | Ack | Notice | Delivery) for r in records)


def _mutate(data: bytes, pos: int, value: bytes) -> bytes:
    return data[:pos] + value + data[pos + len(value):]


@pytest.mark.parametrize("mutation, error, words", [
    (lambda d: _mutate(d, 4, b"\x02"), f.UnsupportedVersion, "version 2"),
    (lambda d: _mutate(d, 5, b"\x09"), f.UnknownKind, "kind 9"),
    (lambda d: _mutate(d, 6, b"\x63"), f.UnknownCodec, "codec 99"),
    (lambda d: _mutate(d, 6, bytes([Codec.OPUS])), f.UnknownCodec, "not allowed for kind video"),
    (lambda d: _mutate(d, 7, b"\x03"), f.InvalidField, "flag"),
    (lambda d: _mutate(d, 24, struct.pack(">d", float("nan"))), f.InvalidField, "capture_ts"),
    (lambda d: _mutate(d, 37, b"c m"), f.InvalidField, "stream"),
    (lambda d: _mutate(d, 36, b"\x00"), f.InvalidField, "stream"),
    (lambda d: _mutate(d, 36, b"\xff"), f.TruncatedRecord, "stream"),
    (lambda d: d[:4] + d[4:20], f.TruncatedRecord, "record says"),
    (lambda d: d + b"x", f.InvalidField, "after the record"),
    (lambda d: d[:2], f.TruncatedRecord, "length prefix"),
])
def test_invalid_frames_name_the_problem(mutation, error, words) -> None:
    bad = mutation(f.serialize(video()))
    with pytest.raises(error, match=words):
        f.parse(bad)


def test_oversized_record_refused_from_its_length_prefix_alone() -> None:
    reader = RecordReader(max_record_size=100)
    with pytest.raises(f.RecordTooLarge, match="101 exceeds limit 100"):
        reader.feed(struct.pack(">I", 101) + b"\x01")  # refused before the body arrives
    with pytest.raises(f.FramingError, match="already failed"):
        reader.feed(b"more")


def test_stream_ending_inside_a_record_is_truncated() -> None:
    data = f.serialize(video())
    reader = RecordReader()
    assert reader.feed(data + data[:10]) == [video()]
    with pytest.raises(f.TruncatedRecord, match="10 bytes left over"):
        reader.finish()


def test_serialize_refuses_bad_fields() -> None:
    with pytest.raises(f.InvalidField, match="stream"):
        f.serialize(video(stream="../other"))
    with pytest.raises(f.UnknownCodec, match="opus is not allowed for kind video"):
        f.serialize(video(codec=Codec.OPUS))
    with pytest.raises(f.InvalidField, match="seq"):
        f.serialize(video(seq=-1))
    with pytest.raises(f.InvalidField, match="width/height"):
        f.serialize(video(width=70000))
    with pytest.raises(f.InvalidField, match="reason"):
        f.serialize(Notice(1, "x" * 2000))
    with pytest.raises(TypeError):
        f.serialize("not a record")  # type: ignore[arg-type]  # not a record on purpose


def test_kind_codec_table_matches_envelope() -> None:
    names = {c.name.lower() for codecs in f.KIND_CODECS.values() for c in codecs}
    assert names == {"vp8", "vp9", "h264", "jpeg", "i420", "opus", "aac", "json", "bytes"}
    assert {k.name.lower() for k in Kind} == {"video", "screen", "audio", "chat", "file"}
