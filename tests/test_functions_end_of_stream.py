"""End of stream through the functions (schemas/ENVELOPE.md "End of stream"): the ingress's end of a
stream makes transcode ack its last GOP and flush its AAC samples, chunk publish its last video and
audio fragments, and route take one end per track to the room topics, behind the stream's last output,
with every input acked. Without the end, those tails stay held (the behaviour the end fixes)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fake_context import FakeContext, Published
from tests.test_functions_media_support import (
    DEAD_LETTER,
    ENCODED,
    RAW_AUDIO,
    RAW_VIDEO,
    TWO_RUNGS,
    acked_entries,
    check_props,
    feed,
    feed_published,
    frame_props,
    function_module,
    load_function_module,
    load_schema,
    media_synth,
)

envelope = function_module("media_envelope")
transcode = load_function_module("transcode")
chunk = load_function_module("chunk")
route = load_function_module("route")


def end_props(stream: str, kind: str, last_seq: int, reason: str = "left", codec: str = "vp8") -> dict[str, str]:
    """What the ingress publishes (ingress/session.py end_of_streams)."""
    return {"end_of_stream": "1", "kind": kind, "codec": codec, "stream": stream, "room": "room1", "user": "alice",
            "last_seq": str(last_seq), "reason": reason, "t_ingress": "1700000005000"}


@pytest.fixture(scope="module")
def vp8_chunks() -> list[media_synth.EncodedChunk]:
    return media_synth.encode_chunks(media_synth.pattern_frames(14), "vp8", keyint=10)


def transcode_video(chunks: list[media_synth.EncodedChunk], ctx: FakeContext, fn: Any, stream: str = "cam1") -> None:
    for i, c in enumerate(chunks):
        feed(fn, ctx, RAW_VIDEO, stream, frame_props(stream, "vp8", i, c), c.data)


def test_transcode_acks_the_last_gop_and_passes_the_end_on(vp8_chunks: list[media_synth.EncodedChunk]) -> None:
    ctx = FakeContext(user_config={"renditions": TWO_RUNGS})
    fn = transcode.TranscodeFunction()
    transcode_video(vp8_chunks, ctx, fn)
    assert sorted(acked_entries(ctx)) == list(range(1, 11))  # GOP 10..13 held: no keyframe follows
    frames_out = len(ctx.published)
    feed(fn, ctx, RAW_VIDEO, "cam1", end_props("cam1", "video", 13), b"")
    assert sorted(acked_entries(ctx)) == list(range(1, 16))  # every frame and the end, once each
    end = ctx.published[frames_out:]
    assert len(end) == 1 and end[0].topic.endswith("/encoded") and end[0].payload == b"" and end[0].key == "cam1"
    props = end[0].properties
    assert props["end_of_stream"] == "1" and props["last_seq"] == "13" and props["reason"] == "left"
    assert props["room"] == "room1" and float(props["t_transcode"]) > 0
    assert "cam1" not in fn._streams  # state released at once, not after stream_idle_s
    assert ctx.metrics["stream_ended"] == [1]
    check_props(load_schema("encoded.schema.json"), props)
    assert props["codec"] == "h264"


def test_transcode_end_waits_for_the_last_publishes_before_acking(vp8_chunks: list[media_synth.EncodedChunk]) -> None:
    ctx = FakeContext(user_config={"renditions": TWO_RUNGS[:1]}, auto_complete_publish=False)
    fn = transcode.TranscodeFunction()
    transcode_video(vp8_chunks[:12], ctx, fn)
    feed(fn, ctx, RAW_VIDEO, "cam1", end_props("cam1", "video", 11), b"")
    assert ctx.acked == []  # nothing is persisted yet
    for published in list(ctx.published):
        published.complete("Ok", None)
    assert sorted(acked_entries(ctx)) == list(range(1, 14))


def test_transcode_flushes_buffered_aac_on_the_end() -> None:
    packets = media_synth.opus_packets(0.5, freq=440)
    ctx = FakeContext(user_config={"audio_output": "aac"})
    fn = transcode.TranscodeFunction()
    for i, p in enumerate(packets):
        feed(fn, ctx, RAW_AUDIO, "mic1", frame_props("mic1", "opus", i, None, kind="audio", pts=i * 20_000), p)
    held = len(packets) - len(ctx.acked)
    assert held > 0  # samples short of a whole AAC frame wait
    aac_before = len(ctx.published)
    feed(fn, ctx, RAW_AUDIO, "mic1", end_props("mic1", "audio", len(packets) - 1, codec="opus"), b"")
    assert sorted(acked_entries(ctx)) == list(range(1, len(packets) + 2))
    tail, end = ctx.published[aac_before:-1], ctx.published[-1]
    assert tail and all(p.properties["codec"] == "aac" for p in tail)  # the flushed samples, before the end
    assert end.properties["end_of_stream"] == "1" and end.properties["codec"] == "aac"
    assert end.properties["last_seq"] == ctx.published[-2].properties["seq"]  # in the AAC frames' numbering


def test_transcode_ignores_an_end_the_stream_already_went_past(vp8_chunks: list[media_synth.EncodedChunk]) -> None:
    ctx = FakeContext(user_config={"renditions": TWO_RUNGS[:1]})
    fn = transcode.TranscodeFunction()
    transcode_video(vp8_chunks[:8], ctx, fn)
    published = len(ctx.published)
    feed(fn, ctx, RAW_VIDEO, "cam1", end_props("cam1", "video", 5, reason="timeout"), b"")  # an old session's end
    assert len(ctx.published) == published and ctx.metrics["stale_end"] == [1]
    assert 9 in acked_entries(ctx) and ("room1", "alice", "cam1") in fn._streams  # the end is acked, the stream goes on


@pytest.mark.parametrize(("change", "reason"), [
    ({"reason": "bored"}, "bad_header: end of stream cam1: reason 'bored' is not one of left, timeout, closed"),
    ({"kind": "chat"}, "bad_header: end of stream cam1: kind 'chat' is not video, screen or audio"),
    ({"last_seq": "x"}, "bad_header: property 'last_seq' is not an integer: 'x'"),
])
def test_a_malformed_end_goes_to_the_dead_letter_topic_with_the_reason(change: dict[str, str], reason: str) -> None:
    for function in (transcode.TranscodeFunction(), chunk.ChunkFunction()):
        ctx = FakeContext()
        feed(function, ctx, RAW_VIDEO, "cam1", {**end_props("cam1", "video", 3), **change}, b"")
        dead = ctx.published_to(DEAD_LETTER.rsplit("/", 1)[-1])
        assert [p.properties["reason"] for p in dead] == [reason]
        assert len(ctx.acked) == 1


def audio_chunk_ctx(packets: list[bytes]) -> tuple[Any, FakeContext]:
    fn = chunk.ChunkFunction()
    ctx = FakeContext(user_config={"audio_fragment_frames": 3})
    for i, p in enumerate(packets):
        feed(fn, ctx, ENCODED, "mic1", dict(frame_props("mic1", "opus", i, None, kind="audio", pts=i * 20_000),
                                            t_transcode="1"), p)
    return fn, ctx


def test_chunk_publishes_the_last_audio_fragment_then_the_end() -> None:
    packets = media_synth.opus_packets(0.2, freq=440)[:5]
    fn, ctx = audio_chunk_ctx(packets)
    assert len(ctx.acked) == 3  # packets 3 and 4 wait for a third
    feed(fn, ctx, ENCODED, "mic1", dict(end_props("mic1", "audio", 4, codec="opus"), t_transcode="2"), b"")
    media = [p for p in ctx.published if p.properties["segment_type"] == "media"]
    assert [(m.properties["first_seq"], m.properties["last_seq"]) for m in media] == [("0", "2"), ("3", "4")]
    end = ctx.published[-1]
    assert end.properties["segment_type"] == "end" and end.properties["kind"] == "audio"
    assert end.properties["last_seq"] == "4" and end.properties["segment_seq"] == "2" and end.payload == b""
    assert sorted(acked_entries(ctx)) == [1, 2, 3, 4, 5, 6]
    assert fn._tracks == {}
    for p in ctx.published:
        check_props(load_schema("segment.schema.json"), p.properties)


def test_chunk_end_for_a_stream_it_never_saw_is_acked_and_publishes_nothing() -> None:
    fn, ctx = chunk.ChunkFunction(), FakeContext()
    feed(fn, ctx, ENCODED, "ghost", end_props("ghost", "video", 9), b"")
    assert ctx.published == [] and len(ctx.acked) == 1


def routed(outputs: list[Published]) -> FakeContext:
    ctx = FakeContext(function_name="route")
    feed_published(route.RouteFunction(), ctx, outputs)
    return ctx


def test_end_travels_transcode_chunk_route_to_every_room_topic_behind_the_last_fragment(
        vp8_chunks: list[media_synth.EncodedChunk]) -> None:
    tctx = FakeContext(user_config={"renditions": TWO_RUNGS})
    tfn = transcode.TranscodeFunction()
    transcode_video(vp8_chunks, tctx, tfn)
    feed(tfn, tctx, RAW_VIDEO, "cam1", end_props("cam1", "video", 13), b"")
    cctx = FakeContext(user_config={"fragment_frames": 0})  # one fragment per GOP: the tail is held until the end
    cfn = chunk.ChunkFunction()
    feed_published(cfn, cctx, tctx.published[:-1])
    held = len(tctx.published) - 1 - len(cctx.acked)
    assert held == 2 * 4  # GOP 10..13 of both renditions waits in an open fragment
    feed_published(cfn, cctx, tctx.published[-1:])
    assert len(cctx.acked) == len(tctx.published)  # every frame and the end
    rctx = routed(cctx.published)
    for rendition in ("360p", "240p"):
        topic = f"persistent://public/wtpulsar/room-room1-video-{rendition}"
        out = [p.properties for p in rctx.published if p.topic == topic]
        assert [p["segment_type"] for p in out][-2:] == ["media", "end"], out
        assert out[-2]["last_seq"] == "13" and out[-1]["last_seq"] == "13" and out[-1]["rendition"] == rendition
        assert out[-1]["reason"] == "left" and "t_route" in out[-1]
    for p in cctx.published:
        check_props(load_schema("segment.schema.json"), p.properties)
    assert len(rctx.acked) == len(cctx.published)


def test_envelope_documents_the_end_of_stream() -> None:
    from tests.test_functions_media_support import FUNCTIONS_DIR

    text = (FUNCTIONS_DIR.parent / "schemas" / "ENVELOPE.md").read_text()
    section = text[text.index("## End of stream"):]
    for name in (envelope.PROP_END_OF_STREAM, "last_seq", "reason", *envelope.END_REASONS):
        assert f"`{name}`" in section, name
    assert f"`segment_type` `{envelope.SEGMENT_TYPE_END}`" in section
