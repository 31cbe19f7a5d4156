"""functions/chunk.py with the in-memory Context, fed by TranscodeFunction's real outputs: fMP4
init segments and fragments that PyAV plays back frame for frame, segment metadata that matches
schemas/segment.schema.json, chunking of large payloads, and acks after the fragment is out."""

from __future__ import annotations

import io
import os
from typing import Any

import av
import numpy as np
import pytest

from tests.fake_context import FakeContext, Published
from tests.test_functions_media_support import (
    ENCODED,
    FILE_IN,
    RAW_AUDIO,
    RAW_VIDEO,
    SEGMENTS,
    TWO_RUNGS,
    acked_entries,
    check_props,
    decode_fmp4,
    feed,
    feed_published,
    frame_props,
    function_module,
    load_function_module,
    load_schema,
    media_synth,
)

h264 = function_module("media_h264")
chunk = load_function_module("chunk")
transcode = load_function_module("transcode")

SEGMENT_SCHEMA = load_schema("segment.schema.json")
N_FRAMES = 45


def check_schema(props: dict[str, str]) -> None:
    check_props(SEGMENT_SCHEMA, props)


def transcoded(codec: str, count: int = N_FRAMES, keyint: int = 15) -> list[Published]:
    chunks = media_synth.encode_chunks(media_synth.pattern_frames(count), codec, keyint=keyint)
    ctx = FakeContext(user_config={"renditions": TWO_RUNGS, "preset": "ultrafast"})
    fn = transcode.TranscodeFunction()
    for i, c in enumerate(chunks):
        feed(fn, ctx, RAW_VIDEO, "cam1", frame_props("cam1", codec, i, c), c.data)
    assert len(ctx.published_to("/encoded")) == 2 * count
    return ctx.published


@pytest.fixture(scope="module")
def encoded_vp8() -> list[Published]:
    return transcoded("vp8")


@pytest.fixture(scope="module")
def encoded_h264() -> list[Published]:
    return transcoded("h264")


def chunked(encoded: list[Published], config: dict[str, Any] | None = None,
            ctx: FakeContext | None = None) -> FakeContext:
    ctx = ctx or FakeContext(user_config=config)
    feed_published(chunk.ChunkFunction(), ctx, encoded)
    return ctx


def of(ctx: FakeContext, rendition: str, segment_type: str | None = None) -> list[Published]:
    return [p for p in ctx.published_to("/segments") if p.properties.get("rendition") == rendition
            and (segment_type is None or p.properties["segment_type"] == segment_type)]


@pytest.mark.parametrize("source", ["encoded_vp8", "encoded_h264"])
def test_browser_frames_to_playable_fmp4(source: str, request: pytest.FixtureRequest) -> None:
    encoded = request.getfixturevalue(source)
    ctx = chunked(encoded)
    for rendition, width in (("360p", 480), ("240p", 320)):
        segments = of(ctx, rendition)
        assert [p.properties["segment_type"] for p in segments] == ["init"] + ["media"] * N_FRAMES
        frames = decode_fmp4(b"".join(p.payload for p in segments))
        assert len(frames) == N_FRAMES and frames[0].width == width
        assert [media_synth.marker_of(f) for f in frames] == list(range(N_FRAMES))
        pts = [f.pts for f in frames if f.pts is not None]
        assert len(pts) == len(frames) and pts == sorted(pts)
        # codec string = the SPS that transcode sent for this rendition
        first = next(p for p in encoded if p.properties["rendition"] == rendition)
        sps, _ = h264.parameter_sets(h264.split_annexb(first.payload))
        assert segments[0].properties["codec_string"] == h264.codec_string(sps)
        assert segments[0].properties["mime"] == f'video/mp4; codecs="{h264.codec_string(sps)}"'
        media = segments[1:]
        assert [int(p.properties["segment_seq"]) for p in media] == list(range(N_FRAMES))
        assert [p.properties["first_seq"] for p in media] == [str(i) for i in range(N_FRAMES)]
        assert [int(p.properties["decode_time"]) for p in media] == [round(i * 33_333 * 0.09) for i in range(N_FRAMES)]
        assert [p.properties["keyframe"] for p in media].count("1") == 3  # input GOP of 15
        for p in segments:
            check_schema(p.properties)
            assert p.key == "cam1" and p.event_timestamp and p.properties["room"] == "room1"
    assert sorted(m.entry for m, _ in ctx.acked) == list(range(1, 2 * N_FRAMES + 1))  # each input once


def test_late_joiner_plays_from_any_keyframe_fragment(encoded_h264: list[Published]) -> None:
    ctx = chunked(encoded_h264)
    init, *media = of(ctx, "360p")
    starts = [i for i, p in enumerate(media) if p.properties["keyframe"] == "1"]
    assert starts == [0, 15, 30]
    for start in starts[1:]:
        frames = decode_fmp4(init.payload + b"".join(p.payload for p in media[start:]))
        assert [media_synth.marker_of(f) for f in frames] == list(range(start, N_FRAMES))


def test_every_fragment_decodes_after_its_predecessors(encoded_vp8: list[Published]) -> None:
    ctx = chunked(encoded_vp8[:20])  # frames 0..9, both renditions
    init, *media = of(ctx, "360p")
    for n in range(1, len(media) + 1):
        assert len(decode_fmp4(init.payload + b"".join(p.payload for p in media[:n]))) == n


# A keyframe (every 15 frames) always starts a fragment; the newest fragment stays open (its frames
# unacked) until it is full or the next keyframe arrives.
@pytest.mark.parametrize(("fragment_frames", "expected_sizes"), [(0, [15, 15]), (4, [4, 4, 4, 3] * 2 + [4, 4, 4])])
def test_fragment_policy(encoded_vp8: list[Published], fragment_frames: int, expected_sizes: list[int]) -> None:
    ctx = chunked(encoded_vp8, {"fragment_frames": fragment_frames})
    media = of(ctx, "360p", "media")
    sizes = [int(p.properties["last_seq"]) - int(p.properties["first_seq"]) + 1 for p in media]
    assert sizes == expected_sizes
    assert [p.properties["keyframe"] == "1" for p in media] == [int(p.properties["first_seq"]) % 15 == 0 for p in media]
    frames = decode_fmp4(b"".join(p.payload for p in of(ctx, "360p")))
    assert [media_synth.marker_of(f) for f in frames] == list(range(sum(sizes)))
    # frames of the open fragment are not acked yet; everything published is
    assert len(ctx.acked) == 2 * sum(sizes)


def test_buffered_frames_are_acked_with_their_fragment(encoded_vp8: list[Published]) -> None:
    ctx = FakeContext(user_config={"fragment_frames": 3}, auto_complete_publish=False)
    fn = chunk.ChunkFunction()
    only_360 = [p for p in encoded_vp8 if p.properties["rendition"] == "360p"][:3]
    feed_published(fn, ctx, only_360[:2])
    assert ctx.published == [] and ctx.acked == []
    feed_published(fn, ctx, only_360[2:])
    init, fragment = ctx.published
    assert init.properties["segment_type"] == "init" and fragment.properties["last_seq"] == "2"
    fragment.complete("Ok", None)
    assert ctx.acked == []  # the init segment is not persisted yet
    init.complete("Ok", None)
    assert [m.entry for m, t in ctx.acked] == [1, 2, 3] and {t for _, t in ctx.acked} == {ENCODED}


def test_resolution_change_emits_new_init_segment() -> None:
    small = media_synth.encode_chunks(media_synth.pattern_frames(8), "vp8", keyint=8)
    big = media_synth.encode_chunks(media_synth.pattern_frames(8, 1280, 720, start=8), "vp8", keyint=8)
    tctx = FakeContext(user_config={"renditions": TWO_RUNGS[:1]})
    fn = transcode.TranscodeFunction()
    for i, c in enumerate(small + big):
        w, h = (640, 480) if i < 8 else (1280, 720)
        feed(fn, tctx, RAW_VIDEO, "cam1", frame_props("cam1", "vp8", i, c, width=w, height=h, pts=i * 33_333), c.data)
    ctx = chunked(tctx.published)
    segments = of(ctx, "360p")
    inits = [i for i, p in enumerate(segments) if p.properties["segment_type"] == "init"]
    assert inits == [0, 9]
    assert segments[9].properties["width"] == "640" and segments[9].properties["segment_seq"] == "8"
    assert ctx.metrics["init_changed"] == [1]
    first = decode_fmp4(b"".join(p.payload for p in segments[:9]))
    second = decode_fmp4(b"".join(p.payload for p in segments[9:]))
    assert (len(first), first[0].width, len(second), second[0].width) == (8, 480, 8, 640)
    assert [media_synth.marker_of(f) for f in second] == list(range(8, 16))
    assert int(segments[10].properties["decode_time"]) > int(segments[8].properties["decode_time"])


def test_no_parameter_sets_yet_waits_and_acks(encoded_vp8: list[Published]) -> None:
    deltas = [p for p in encoded_vp8 if p.properties["rendition"] == "240p"][1:5]
    ctx = chunked(deltas)
    assert ctx.published == [] and ctx.metrics["waiting_init"] == [1] * 4 and len(ctx.acked) == 4


def test_duplicate_seq_dropped(encoded_vp8: list[Published]) -> None:
    frames = [p for p in encoded_vp8 if p.properties["rendition"] == "240p"][:4]
    ctx = chunked(frames + [frames[2], frames[3]])
    assert len(of(ctx, "240p", "media")) == 4 and ctx.metrics["stale_seq"] == [1, 1] and len(ctx.acked) == 6


def test_bad_encoded_messages_go_to_dead_letter() -> None:
    ctx = FakeContext()
    fn = chunk.ChunkFunction()
    props = dict(frame_props("cam1", "h264", 0, None), rendition="360p", keyframe="1")
    feed(fn, ctx, ENCODED, "cam1", props, b"no start code here")
    feed(fn, ctx, ENCODED, "cam1", dict(props, codec="vp8", seq="1"), b"\x00\x00\x01\x65")
    feed(fn, ctx, ENCODED, "cam1", dict(props, seq="2"), b"\x00\x00\x01\x67\x42\x00\x00\x01\x68\xce\x3c\x80")
    reasons = [p.properties["reason"] for p in ctx.published_to("/dead-letter")]
    assert reasons[0] == "bad_bitstream: no Annex B NAL units in 18 bytes"
    assert reasons[1].startswith("unknown_codec: chunk packages h264 video and opus/aac audio, got video codec 'vp8'")
    assert reasons[2].startswith("bad_bitstream: SPS/PPS: avcC needs an SPS")  # SPS of 2 bytes
    assert len(ctx.acked) == 3 and all(p.properties["function"] == "chunk" for p in ctx.published)


def test_huge_file_is_split_and_reassembles() -> None:
    data = os.urandom(2_500_000)
    ctx = FakeContext()
    fn = chunk.ChunkFunction()
    feed(fn, ctx, FILE_IN, "up1", {"kind": "file", "codec": "bytes", "stream": "up1", "seq": "7", "name": "a.bin"},
         data)
    feed(fn, ctx, FILE_IN, "up1", {"kind": "file", "codec": "bytes", "stream": "up1", "seq": "8"}, b"small")
    parts = ctx.published[:3]
    assert [p.properties["chunk_index"] for p in parts] == ["0", "1", "2"]
    assert {p.properties["chunk_count"] for p in parts} == {"3"} and {p.properties["total_size"] for p in parts} == {
        "2500000"}
    assert len({p.properties["chunk_id"] for p in parts}) == 1 and all(p.key == "up1" for p in parts)
    assert all(len(p.payload) <= 1 << 20 for p in parts) and parts[0].properties["name"] == "a.bin"
    ordered = sorted(parts, key=lambda p: int(p.properties["chunk_index"]))
    assert b"".join(p.payload for p in ordered) == data
    small = ctx.published[3]
    assert small.payload == b"small" and "chunk_id" not in small.properties and small.topic == SEGMENTS
    assert len(ctx.acked) == 2


def test_large_fragments_are_chunked_and_still_play(encoded_vp8: list[Published]) -> None:
    ctx = chunked([p for p in encoded_vp8 if p.properties["rendition"] == "360p"][:5], {"max_chunk_bytes": 1024})
    out = ctx.published_to("/segments")
    assert any("chunk_id" in p.properties for p in out)
    reassembled: dict[str, list[Published]] = {}
    payloads = []
    for p in out:
        check_schema(p.properties)
        if "chunk_id" not in p.properties:
            payloads.append(p.payload)
            continue
        parts = reassembled.setdefault(p.properties["chunk_id"], [])
        parts.append(p)
        if len(parts) == int(p.properties["chunk_count"]):
            payloads.append(b"".join(x.payload for x in sorted(parts, key=lambda x: int(x.properties["chunk_index"]))))
    assert [media_synth.marker_of(f) for f in decode_fmp4(b"".join(payloads))] == list(range(5))


def decode_audio_fmp4(data: bytes) -> tuple[np.ndarray, Any]:
    with av.open(io.BytesIO(data), mode="r", format="mp4") as container:
        stream = container.streams.audio[0]
        codec = stream.codec_context.name
        frames = list(container.decode(audio=0))
    return np.concatenate([f.to_ndarray()[0] for f in frames]), codec


def peak_hz(samples: np.ndarray, rate: int = 48_000) -> float:
    window = samples[rate // 10 : rate // 10 + rate // 2]
    return float(np.argmax(np.abs(np.fft.rfft(window)))) * rate / len(window)


@pytest.mark.parametrize("channels", [1, 2])
def test_opus_becomes_playable_audio_fmp4(channels: int) -> None:
    packets = media_synth.opus_packets(1.0, freq=440, channels=channels)
    ctx = FakeContext()
    fn = chunk.ChunkFunction()
    for i, p in enumerate(packets):
        feed(fn, ctx, ENCODED, "mic1", dict(frame_props("mic1", "opus", i, None, kind="audio", pts=i * 20_000),
                                            t_transcode="1"), p)
    init, *media = ctx.published
    assert init.properties["segment_type"] == "init" and init.properties["codec_string"] == "opus"
    assert init.properties["mime"] == 'audio/mp4; codecs="opus"' and init.properties["channels"] == str(channels)
    assert [p.properties["first_seq"] for p in media] == [str(i) for i in range(0, len(packets) - 2, 3)]
    assert [int(p.properties["decode_time"]) for p in media] == [i * 960 for i in range(0, len(packets) - 2, 3)]
    for out in ctx.published:
        check_schema(out.properties)
    samples, codec = decode_audio_fmp4(b"".join(p.payload for p in ctx.published))
    assert codec in ("opus", "libopus") and abs(peak_hz(samples) - 440) < 5
    assert abs(len(samples) - 960 * 3 * len(media)) <= 960
    assert len(ctx.acked) == 3 * len(media)  # the last packets wait in the open fragment


def test_aac_from_transcode_becomes_playable_audio_fmp4() -> None:
    packets = media_synth.opus_packets(1.0, freq=440)
    tctx = FakeContext(user_config={"audio_output": "aac"})
    tfn = transcode.TranscodeFunction()
    for i, p in enumerate(packets):
        feed(tfn, tctx, RAW_AUDIO, "mic1", frame_props("mic1", "opus", i, None, kind="audio", pts=i * 20_000), p)
    ctx = chunked(tctx.published, {"audio_fragment_frames": 1})
    init = ctx.published[0]
    assert init.properties["codec_string"] == "mp4a.40.2" and init.properties["sample_rate"] == "48000"
    samples, codec = decode_audio_fmp4(b"".join(p.payload for p in ctx.published))
    assert codec == "aac" and abs(peak_hz(samples) - 440) < 5
    assert len(ctx.acked) == len(tctx.published)


def test_bad_audio_goes_to_dead_letter() -> None:
    ctx = FakeContext()
    fn = chunk.ChunkFunction()
    feed(fn, ctx, ENCODED, "mic1", frame_props("mic1", "opus", 0, None, kind="audio"), b"")
    feed(fn, ctx, ENCODED, "mic2", frame_props("mic2", "aac", 0, None, kind="audio"), b"\x21\x10\x05")
    feed(fn, ctx, ENCODED, "mic3", frame_props("mic3", "pcm", 0, None, kind="audio"), b"\x00\x00")
    reasons = [p.properties["reason"] for p in ctx.published_to("/dead-letter")]
    assert reasons[0] == "bad_bitstream: opus: empty Opus packet"
    assert reasons[1] == "bad_bitstream: aac: not an ADTS frame (no 0xFFF sync word)"
    assert reasons[2].startswith("unknown_codec: chunk packages h264 video and opus/aac audio, got audio codec 'pcm'")
    assert len(ctx.acked) == 3


def audio_media(ctx: FakeContext, stream: str) -> list[Published]:
    return [p for p in ctx.published_to("/segments") if p.properties["stream"] == stream
            and p.properties["segment_type"] == "media"]


def test_quiet_track_publishes_its_open_fragment_after_fragment_idle_ms() -> None:
    """A stream that stops must not keep its last audio packets (fewer than a fragment) unacked."""
    packets = media_synth.opus_packets(0.2, freq=440)[:5]
    now = [1000.0]
    fn = chunk.ChunkFunction()
    fn._clock = lambda: now[0]
    ctx = FakeContext(user_config={"audio_fragment_frames": 3, "fragment_idle_ms": 300})

    def send(stream: str, seq: int, packet: bytes) -> None:
        feed(fn, ctx, ENCODED, stream, dict(frame_props(stream, "opus", seq, None, kind="audio", pts=seq * 20_000),
                                            t_transcode="1"), packet)
        now[0] += 0.02

    for i, p in enumerate(packets):  # one fragment of 3, then mic1 stops with 2 packets open
        send("mic1", i, p)
    media = audio_media(ctx, "mic1")
    assert [(m.properties["first_seq"], m.properties["last_seq"]) for m in media] == [("0", "2")]
    assert len(ctx.acked) == 3
    now[0] += 0.1  # mic2 keeps talking; mic1 quiet for 0.12 s: not yet
    send("mic2", 0, packets[0])
    assert len(ctx.acked) == 3
    now[0] += 0.3  # mic1 quiet for > 300 ms: the next message of any stream flushes it
    send("mic2", 1, packets[1])
    media = audio_media(ctx, "mic1")
    assert [(m.properties["first_seq"], m.properties["last_seq"]) for m in media] == [("0", "2"), ("3", "4")]
    assert sorted(acked_entries(ctx)) == [1, 2, 3, 4, 5] and ctx.metrics["idle_flush"] == [1]
    assert int(media[1].properties["decode_time"]) == 3 * 960  # the timeline carries on
    assert audio_media(ctx, "mic2") == []  # mic2 is not idle
