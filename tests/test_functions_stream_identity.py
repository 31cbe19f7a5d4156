"""A stream is its room, its user and its stream id (media_envelope.stream_identity).

Publishers pick stream ids themselves; two rooms, or two users of one room, may both call theirs
"cam". Seen on Apache Pulsar first: room B's "cam" started at seq 0 after room A's "cam" had reached
seq 39, and chunk dropped every frame of room B up to 39 as stale, acked and gone. Each function must
keep such streams apart.
"""

from __future__ import annotations

import pytest

from tests.fake_context import FakeContext
from tests.test_functions_media_support import (
    ENCODED,
    RAW_VIDEO,
    feed,
    frame_props,
    load_function_module,
    media_synth,
)

transcode = load_function_module("transcode")
chunk = load_function_module("chunk")


@pytest.fixture(scope="module")
def h264_chunks() -> list[media_synth.EncodedChunk]:
    return media_synth.encode_chunks(media_synth.pattern_frames(6, 320, 240), "h264", keyint=3)


def props_in(room: str, user: str, seq: int, c: media_synth.EncodedChunk, codec: str) -> dict[str, str]:
    return {**frame_props("cam", codec, seq, c, width=320, height=240), "room": room, "user": user}


@pytest.mark.parametrize(("second_room", "second_user"), [("roomB", "alice"), ("room1", "bob")])
def test_transcode_keeps_same_named_streams_of_other_rooms_and_users_apart(
        h264_chunks: list[media_synth.EncodedChunk], second_room: str, second_user: str) -> None:
    ctx = FakeContext(user_config={"renditions": [{"name": "240p", "height": 240, "bitrate": 300_000}]})
    fn = transcode.TranscodeFunction()
    for seq, c in enumerate(h264_chunks):
        feed(fn, ctx, RAW_VIDEO, "cam", props_in("room1", "alice", seq, c, "h264"), c.data)
    first = len(ctx.published)
    for seq, c in enumerate(h264_chunks[:3]):  # the other publisher's own seq 0, 1, 2
        feed(fn, ctx, RAW_VIDEO, "cam", props_in(second_room, second_user, seq, c, "h264"), c.data)
    theirs = ctx.published[first:]
    assert "stale_seq" not in ctx.metrics
    assert [(p.properties["room"], p.properties["user"], p.properties["seq"]) for p in theirs] == [
        (second_room, second_user, str(seq)) for seq in range(3)]


def test_chunk_keeps_same_named_streams_of_other_rooms_apart(h264_chunks: list[media_synth.EncodedChunk]) -> None:
    ctx = FakeContext()
    fn = chunk.ChunkFunction()
    for room in ("roomA", "roomB"):  # both send "cam" seq 0..5 of the same H.264
        for seq, c in enumerate(h264_chunks):
            props = {**props_in(room, "alice", seq, c, "h264"), "rendition": "240p"}
            feed(fn, ctx, ENCODED, "cam", props, c.data)
    assert "stale_seq" not in ctx.metrics
    media = [p for p in ctx.published if p.properties.get("segment_type") == "media"]
    rooms = {p.properties["room"] for p in media}
    assert rooms == {"roomA", "roomB"}
    for room in rooms:
        seqs = [int(p.properties["last_seq"]) for p in media if p.properties["room"] == room]
        assert seqs == sorted(seqs) and seqs[-1] >= 4, (room, seqs)
