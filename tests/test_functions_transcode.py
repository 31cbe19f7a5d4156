"""functions/transcode.py with the in-memory Context: real VP8/VP9/H.264/JPEG/I420 frames in,
H.264 renditions out; keyframe waits, corrupt/truncated frames, unknown codecs, resolution
changes, stale seqs and acks tied to the publish callbacks."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fake_context import FakeContext
from tests.test_functions_media_support import (
    DEAD_LETTER,
    ENCODED,
    RAW_AUDIO,
    RAW_SCREEN,
    RAW_VIDEO,
    TWO_RUNGS,
    acked_entries,
    check_props,
    feed,
    frame_props,
    function_module,
    load_function_module,
    load_schema,
    media_synth,
    release_idle,
)

h264 = function_module("media_h264")

transcode = load_function_module("transcode")

FRAMES = media_synth.pattern_frames(30)
ENCODED_SCHEMA = load_schema("encoded.schema.json")


@pytest.fixture(scope="module")
def vp8_chunks() -> list[media_synth.EncodedChunk]:
    return media_synth.encode_chunks(FRAMES, "vp8", keyint=10)


@pytest.fixture(scope="module")
def h264_chunks() -> list[media_synth.EncodedChunk]:
    return media_synth.encode_chunks(FRAMES, "h264", keyint=10)


def run(chunks: list[media_synth.EncodedChunk], codec: str, *, config: dict[str, Any] | None = None,
        ctx: FakeContext | None = None, fn: Any = None, stream: str = "cam1", first_seq: int = 0,
        topic: str = RAW_VIDEO) -> tuple[Any, FakeContext]:
    ctx = ctx or FakeContext(user_config={"renditions": TWO_RUNGS} if config is None else config)
    fn = fn or transcode.TranscodeFunction()
    for i, chunk in enumerate(chunks):
        feed(fn, ctx, topic, stream, frame_props(stream, codec, first_seq + i, chunk), chunk.data)
    return fn, ctx


def markers(outputs: list[Any]) -> list[int]:
    import av

    decoder = av.CodecContext.create("h264", "r")
    return [media_synth.marker_of(f) for out in outputs for f in decoder.decode(av.Packet(out.payload))]


@pytest.mark.parametrize("codec", ["vp8", "h264", "vp9", "jpeg"])
def test_each_browser_codec_becomes_two_h264_renditions(codec: str, vp8_chunks: Any, h264_chunks: Any) -> None:
    chunks = {"vp8": vp8_chunks, "h264": h264_chunks}.get(codec) or media_synth.encode_chunks(FRAMES[:12], codec,
                                                                                             keyint=6)
    fn, ctx = run(chunks, codec)
    out = ctx.published_to("/encoded")
    assert len(out) == 2 * len(chunks) and ctx.published == out
    for rendition, size in (("360p", ("480", "360")), ("240p", ("320", "240"))):
        rung = [p for p in out if p.properties["rendition"] == rendition]
        assert [p.properties["seq"] for p in rung] == [str(i) for i in range(len(chunks))]
        assert {(p.properties["width"], p.properties["height"]) for p in rung} == {size}
        assert markers(rung) == list(range(len(chunks)))  # every frame, in order, decodable
    first = out[0]
    assert first.key == "cam1" and first.serde_class_name == "bytes_serde.BytesSerDe"
    assert first.properties["codec"] == "h264" and first.properties["room"] == "room1"
    assert first.properties["capture_ts"] == "1700000000000" and first.event_timestamp == 1_700_000_000_000
    assert first.properties["t_ingress"] == "1700000000000" and float(first.properties["t_transcode"]) > 0
    assert first.properties["keyframe"] == "1"
    # Inter-coded: the last GOP (from the last keyframe on) stays held until the next keyframe.
    last_key = max(i for i, c in enumerate(chunks) if c.keyframe) if codec != "jpeg" else len(chunks)
    assert sorted(acked_entries(ctx)) == list(range(1, last_key + 1))
    release_idle(fn, ctx)
    assert sorted(acked_entries(ctx)) == list(range(1, len(chunks) + 1))  # each input exactly once
    for p in out:
        check_props(ENCODED_SCHEMA, p.properties)


def test_i420_raw_frames() -> None:
    ctx = FakeContext(user_config={"renditions": TWO_RUNGS})
    fn = transcode.TranscodeFunction()
    for i, frame in enumerate(FRAMES[:5]):
        props = frame_props("tool1", "i420", i, None, pts=i * 33_333)
        feed(fn, ctx, RAW_VIDEO, "tool1", props, media_synth.i420_bytes(frame))
    assert markers([p for p in ctx.published if p.properties["rendition"] == "360p"]) == list(range(5))


def test_default_ladder_makes_only_360p_from_480p(vp8_chunks: Any) -> None:
    _, ctx = run(vp8_chunks[:3], "vp8", config={})
    assert {(p.properties["rendition"], p.properties["width"], p.properties["height"]) for p in ctx.published} == {
        ("360p", "480", "360")}


def test_keyframes_follow_input_and_at_least_every_2s(h264_chunks: Any) -> None:
    fn = transcode.TranscodeFunction()
    ctx = FakeContext(user_config={"renditions": TWO_RUNGS[:1]})
    # input keyframes at 0, 10, 20; pts 0.5 s apart from frame 10 on, so the 2 s rule fires too
    for i, chunk in enumerate(h264_chunks[:16]):
        pts = i * 33_333 if i <= 10 else 333_330 + (i - 10) * 500_000
        feed(fn, ctx, RAW_VIDEO, "cam1", frame_props("cam1", "h264", i, chunk, pts=pts), chunk.data)
    keys = [int(p.properties["seq"]) for p in ctx.published if p.properties["keyframe"] == "1"]
    assert keys == [0, 10, 14]
    for p in ctx.published:
        assert (p.properties["keyframe"] == "1") == h264.is_idr(h264.split_annexb(p.payload))


def test_ack_only_after_last_output_callback() -> None:
    ctx = FakeContext(user_config={"renditions": TWO_RUNGS}, auto_complete_publish=False)
    fn, _ = run(media_synth.encode_chunks(FRAMES[:2], "jpeg"), "jpeg", ctx=ctx)  # intra-only: no GOP hold
    assert len(ctx.published) == 4 and ctx.acked == []
    ctx.published[1].complete("Ok", None)  # second rendition of frame 0 first
    assert ctx.acked == []
    ctx.published[0].complete("Ok", None)
    assert acked_entries(ctx) == [1]
    ctx.published[3].complete("Ok", None)
    ctx.published[2].complete("Ok", None)
    assert acked_entries(ctx) == [1, 2]
    assert all(t == RAW_VIDEO for _, t in ctx.acked)


def test_stream_start_without_keyframe_waits_and_acks(vp8_chunks: Any) -> None:
    _, ctx = run(vp8_chunks[3:14], "vp8", first_seq=3)  # deltas 3..9, keyframe at 10
    assert ctx.metrics["waiting_keyframe"] == [1] * 7
    assert [p.properties["seq"] for p in ctx.published if p.properties["rendition"] == "360p"] == [
        str(s) for s in range(10, 14)]
    # The drops are acked once the keyframe at 10 is published; 10..13 are its open GOP.
    assert acked_entries(ctx) == list(range(1, 8)) and ctx.published_to("/dead-letter") == []


@pytest.mark.parametrize("damage", ["corrupt", "truncated"])
def test_bad_vp8_frame_goes_to_dead_letter_and_stream_resumes(vp8_chunks: Any, damage: str) -> None:
    chunks = list(vp8_chunks[:25])
    bad = chunks[4].data
    bad = bad[:3] + bytes(range(256)) * 2 if damage == "corrupt" else bad[: len(bad) // 3]
    chunks[4] = media_synth.EncodedChunk(bad, False, chunks[4].pts)
    _, ctx = run(chunks, "vp8")
    (dead,) = ctx.published_to("/dead-letter")
    assert dead.topic == DEAD_LETTER and dead.payload == bad
    assert dead.properties["reason"].startswith("decode_error: vp8")
    assert dead.properties["function"] == "transcode" and dead.properties["source_topic"] == RAW_VIDEO
    assert dead.properties["seq"] == "4" and dead.key == "cam1"
    seqs = [int(p.properties["seq"]) for p in ctx.published_to("/encoded") if p.properties["rendition"] == "360p"]
    assert seqs == [0, 1, 2, 3] + list(range(10, 25))  # 5..9 wait for the keyframe at 10
    assert sorted(acked_entries(ctx)) == list(range(1, 21))  # 4 via the dead letter; 20..24 are the open GOP


def test_truncated_h264_frame_is_concealed_not_fatal(h264_chunks: Any) -> None:
    chunks = list(h264_chunks[:12])
    chunks[5] = media_synth.EncodedChunk(chunks[5].data[: len(chunks[5].data) // 2], False, chunks[5].pts)
    _, ctx = run(chunks, "h264")
    seqs = [int(p.properties["seq"]) for p in ctx.published if p.properties["rendition"] == "360p"]
    assert seqs == list(range(12))  # FFmpeg conceals the missing half; nothing stalls
    assert sorted(acked_entries(ctx)) == list(range(1, 11))  # GOP 0..9 closed by the keyframe at 10


def test_unknown_codec_and_bad_headers_go_to_dead_letter() -> None:
    fn = transcode.TranscodeFunction()
    ctx = FakeContext()
    feed(fn, ctx, RAW_VIDEO, "cam1", frame_props("cam1", "av1", 0, None), b"\x12\x00\x0a")
    feed(fn, ctx, RAW_VIDEO, "", {"kind": "video", "codec": "vp8", "seq": "0"}, b"\x00")
    feed(fn, ctx, RAW_AUDIO, "mic1", frame_props("mic1", "pcm", 0, None, kind="audio"), b"\x00\x01")
    ctx.set_message(topic=RAW_VIDEO, key="cam1", properties=frame_props("cam1", "vp8", 1, None))
    fn.process("text, not bytes", ctx)
    reasons = [p.properties["reason"] for p in ctx.published_to("/dead-letter")]
    assert reasons[0].startswith("unknown_codec: codec 'av1'")
    assert reasons[1].startswith("bad_header: stream id ''")
    assert reasons[2].startswith("unknown_codec: audio codec 'pcm'")
    assert reasons[3].startswith("not_bytes: payload is str")
    assert len(ctx.acked) == 4 and len(ctx.published) == 4


def test_resolution_change_mid_stream(vp8_chunks: Any) -> None:
    big = media_synth.encode_chunks(media_synth.pattern_frames(6, 1280, 720, start=10), "vp8", keyint=10)
    fn, ctx = run(vp8_chunks[:10], "vp8", config={})
    for i, chunk in enumerate(big):
        props = frame_props("cam1", "vp8", 10 + i, chunk, width=1280, height=720, pts=(10 + i) * 33_333)
        feed(fn, ctx, RAW_VIDEO, "cam1", props, chunk.data)
    sizes = [(p.properties["seq"], p.properties["rendition"], p.properties["width"]) for p in ctx.published]
    assert sizes[:10] == [(str(i), "360p", "480") for i in range(10)]
    assert ("10", "720p", "1280") in sizes and ("10", "360p", "640") in sizes
    after = [p for p in ctx.published if int(p.properties["seq"]) >= 10]
    assert len(after) == 12 and all(p.properties["keyframe"] == "1" for p in after[:2])
    assert ctx.metrics["resolution_change"] == [1]
    assert markers([p for p in after if p.properties["rendition"] == "720p"]) == list(range(10, 16))


def test_duplicate_and_out_of_order_seq_are_dropped(vp8_chunks: Any) -> None:
    fn, ctx = run(vp8_chunks[:6], "vp8")
    before = len(ctx.published)
    feed(fn, ctx, RAW_VIDEO, "cam1", frame_props("cam1", "vp8", 5, vp8_chunks[5]), vp8_chunks[5].data)  # duplicate
    feed(fn, ctx, RAW_VIDEO, "cam1", frame_props("cam1", "vp8", 2, vp8_chunks[2]), vp8_chunks[2].data)  # late
    assert len(ctx.published) == before
    assert ctx.metrics["stale_seq"] == [1, 1] and ctx.acked == []  # all in the open GOP
    release_idle(fn, ctx)
    assert len(ctx.acked) == 8


def test_seq_gap_waits_for_next_keyframe(vp8_chunks: Any) -> None:
    fn = transcode.TranscodeFunction()
    ctx = FakeContext(user_config={"renditions": TWO_RUNGS[:1]})
    for i, chunk in enumerate(vp8_chunks[:25]):
        if i == 5:
            continue  # lost on the way
        feed(fn, ctx, RAW_VIDEO, "cam1", frame_props("cam1", "vp8", i, chunk), chunk.data)
    seqs = [int(p.properties["seq"]) for p in ctx.published]
    assert seqs == [0, 1, 2, 3, 4] + list(range(10, 25))
    assert ctx.metrics["seq_gap"] == [1] and len(ctx.acked) == 19  # 20..24: the open GOP
    release_idle(fn, ctx)
    assert len(ctx.acked) == 24


def test_seq_gap_with_decode_policy_keeps_going(vp8_chunks: Any) -> None:
    fn = transcode.TranscodeFunction()
    ctx = FakeContext(user_config={"renditions": TWO_RUNGS[:1], "gap_policy": "decode"})
    for i, chunk in enumerate(vp8_chunks[:8]):
        if i != 5:
            feed(fn, ctx, RAW_VIDEO, "cam1", frame_props("cam1", "vp8", i, chunk), chunk.data)
    assert [int(p.properties["seq"]) for p in ctx.published] == [0, 1, 2, 3, 4, 6, 7]
    assert ctx.metrics["seq_gap"] == [1]


def test_screen_kind_is_kept(vp8_chunks: Any) -> None:
    fn = transcode.TranscodeFunction()
    ctx = FakeContext(user_config={"renditions": TWO_RUNGS[:1]})
    feed(fn, ctx, RAW_SCREEN, "scr1", frame_props("scr1", "vp8", 0, vp8_chunks[0], kind="screen"), vp8_chunks[0].data)
    assert ctx.published[0].properties["kind"] == "screen" and ctx.published[0].key == "scr1"


def test_opus_passes_through_unchanged() -> None:
    fn = transcode.TranscodeFunction()
    ctx = FakeContext()
    opus = bytes([0xFC]) + bytes(range(60))
    feed(fn, ctx, RAW_AUDIO, "mic1", frame_props("mic1", "opus", 0, None, kind="audio"), opus)
    (out,) = ctx.published
    assert out.topic == ENCODED and out.payload == opus and out.key == "mic1"
    assert out.properties["codec"] == "opus" and out.properties["kind"] == "audio" and "t_transcode" in out.properties
    check_props(ENCODED_SCHEMA, out.properties)
    assert len(ctx.acked) == 1


def test_internal_error_is_dead_lettered_not_raised(vp8_chunks: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("encoder exploded")

    monkeypatch.setattr(transcode.RenditionEncoder, "encode", boom)
    _, ctx = run(vp8_chunks[:2], "vp8")
    reasons = [p.properties["reason"] for p in ctx.published_to("/dead-letter")]
    assert reasons and all(r.startswith("internal_error: RuntimeError('encoder exploded')") for r in reasons)
    assert len(ctx.acked) == 2


# --- acks held per GOP (media_gop.py): a restart must never lose a frame ---

def test_gop_acks_wait_until_the_next_keyframe_is_published(vp8_chunks: Any) -> None:
    ctx = FakeContext(user_config={"renditions": TWO_RUNGS[:1]}, auto_complete_publish=False)
    run(vp8_chunks[:12], "vp8", ctx=ctx)  # GOP 0..9, keyframe 10 opens the next
    assert len(ctx.published) == 12 and ctx.acked == []
    for out in ctx.published[:10]:
        out.complete("Ok", None)
    assert ctx.acked == []  # GOP complete, but its successor keyframe is not persisted yet
    ctx.published[11].complete("Ok", None)
    assert ctx.acked == []
    ctx.published[10].complete("Ok", None)  # keyframe 10 persisted: GOP 0..9 is safe to ack
    assert acked_entries(ctx) == list(range(1, 11))


def test_failed_publish_keeps_its_whole_gop_unacked(vp8_chunks: Any) -> None:
    ctx = FakeContext(user_config={"renditions": TWO_RUNGS[:1]}, auto_complete_publish=False)
    run(vp8_chunks[:21], "vp8", ctx=ctx)  # GOPs 0..9, 10..19, keyframe 20
    for i, out in enumerate(ctx.published):
        out.complete("ServiceNotReady" if i == 3 else "Ok", None)
    assert acked_entries(ctx) == list(range(11, 21))  # GOP 0..9 redelivers from its keyframe


@pytest.mark.parametrize("codec", ["vp8", "h264"])
@pytest.mark.parametrize("completed", ["all", "some"])
def test_restart_mid_gop_reproduces_every_frame(codec: str, completed: str, vp8_chunks: Any,
                                                h264_chunks: Any) -> None:
    chunks = vp8_chunks if codec == "vp8" else h264_chunks  # keyframes at 0, 10, 20
    auto = completed == "all"
    first = FakeContext(user_config={"renditions": TWO_RUNGS[:1]}, auto_complete_publish=auto)
    run(chunks[:15], codec, ctx=first)  # killed -9 after input 14, mid-GOP 10..19
    if not auto:  # publishes of 0..12 came back before the kill, 13 and 14 were lost with it
        for out in first.published[:13]:
            out.complete("Ok", None)
    acked = {entry - 1 for entry in acked_entries(first)}
    assert acked == set(range(10))  # only the closed GOP
    # Pulsar redelivers every unacked input, then new ones follow; a new instance starts cold.
    redelivered = [i for i in range(15) if i not in acked] + list(range(15, 25))
    assert chunks[redelivered[0]].keyframe
    second = FakeContext(user_config={"renditions": TWO_RUNGS[:1]})
    fn = transcode.TranscodeFunction()
    for i in redelivered:
        feed(fn, second, RAW_VIDEO, "cam1", frame_props("cam1", codec, i, chunks[i]), chunks[i].data)
    assert "waiting_keyframe" not in second.metrics
    persisted = first.published[:13] if not auto else first.published
    seen = {int(p.properties["seq"]) for p in persisted + second.published}
    assert seen == set(range(25))  # every frame reached the output (some twice, same seq)
    assert markers(second.published) == redelivered  # re-decoded from the keyframe, in order


def test_gop_hold_is_bounded_by_frames(vp8_chunks: Any) -> None:
    ctx = FakeContext(user_config={"renditions": TWO_RUNGS[:1], "gop_max_frames": 4})
    run(vp8_chunks[:10], "vp8", ctx=ctx)  # no keyframe after 0
    assert acked_entries(ctx) == list(range(1, 9)) and ctx.metrics["gop_forced_close"] == [1, 1]


def test_gop_hold_is_bounded_by_time_even_when_the_stream_stops(vp8_chunks: Any) -> None:
    now = [1000.0]
    fn = transcode.TranscodeFunction()
    fn._clock = lambda: now[0]
    ctx = FakeContext(user_config={"renditions": TWO_RUNGS[:1], "gop_hold_ms": 3000})
    run(vp8_chunks[:5], "vp8", ctx=ctx, fn=fn)
    assert ctx.acked == []
    now[0] += 2.0  # another stream's message runs the sweep; the GOP is younger than 3 s
    feed(fn, ctx, RAW_AUDIO, "mic1", frame_props("mic1", "opus", 0, None, kind="audio"), bytes([0xFC]) + bytes(60))
    assert acked_entries(ctx) == [6]
    now[0] += 2.0  # cam1 sent nothing more: its GOP is now 4 s old
    feed(fn, ctx, RAW_AUDIO, "mic1", frame_props("mic1", "opus", 1, None, kind="audio"), bytes([0xFC]) + bytes(60))
    assert sorted(acked_entries(ctx)) == [1, 2, 3, 4, 5, 6, 7]


def test_gop_bounds_in_user_config_are_validated(vp8_chunks: Any) -> None:
    ctx = FakeContext(user_config={"renditions": TWO_RUNGS[:1], "gop_max_frames": 0, "gop_hold_ms": "soon"})
    fn, _ = run(vp8_chunks[:3], "vp8", ctx=ctx)
    assert fn._gop_max_frames == 600 and fn._gop_hold_s == 10.0 and ctx.acked == []
