"""functions/media_audio.py and transcode's `audio_output: aac`: Opus in, ADTS AAC-LC out that
FFmpeg decodes back to the same tone; inputs acked once their samples are inside a published frame."""

from __future__ import annotations

import av
import numpy as np
import pytest

from tests.fake_context import FakeContext
from tests.test_functions_media_support import (
    RAW_AUDIO,
    check_props,
    feed,
    frame_props,
    function_module,
    load_function_module,
    load_schema,
    media_synth,
)

audio = function_module("media_audio")
transcode = load_function_module("transcode")
BadInput = function_module("media_envelope").BadInput


def decode_adts(frames: list[bytes]) -> np.ndarray:
    decoder = av.CodecContext.create("aac", "r")
    return np.concatenate([f.to_ndarray()[0] for data in frames for f in decoder.decode(av.Packet(data))])


def peak_hz(samples: np.ndarray) -> float:
    window = samples[4800 : 4800 + 24_000]
    return float(np.argmax(np.abs(np.fft.rfft(window)))) * 48_000 / len(window)


def test_adts_header_fields() -> None:
    header = audio.adts_header(100, sample_rate=48_000, channels=2)
    assert header[0] == 0xFF and header[1] & 0xF6 == 0xF0  # syncword, layer 0
    assert (header[2] >> 6) + 1 == 2 and (header[2] >> 2) & 0xF == 3  # AAC LC, 48 kHz
    assert ((header[2] & 1) << 2) | (header[3] >> 6) == 2
    assert ((header[3] & 3) << 11) | (header[4] << 3) | (header[5] >> 5) == 107
    with pytest.raises(ValueError, match="does not fit"):
        audio.adts_header(9000, sample_rate=48_000, channels=1)


@pytest.mark.parametrize("channels", [1, 2])
def test_opus_to_aac_keeps_the_tone(channels: int) -> None:
    packets = media_synth.opus_packets(1.0, freq=440, channels=channels)
    assert audio.opus_channels(packets[0]) == channels
    coder = audio.OpusToAac(packets[0], 0, 64_000)
    out = [f for p in packets for f in coder.push(p)] + coder.flush()
    assert all(f.data[:2] == b"\xff\xf1" for f in out)
    samples = decode_adts([f.data for f in out])
    assert abs(len(samples) - 48_000) <= 3 * 1024  # codec priming and padding
    assert abs(peak_hz(samples) - 440) < 5
    assert [f.pts for f in out] == sorted(f.pts for f in out)


def test_corrupt_opus_is_bad_input() -> None:
    packets = media_synth.opus_packets(0.1)
    coder = audio.OpusToAac(packets[0], 0, 64_000)
    with pytest.raises(BadInput, match="empty"):
        coder.push(b"")


def test_transcode_aac_acks_each_input_once_after_its_samples_are_out() -> None:
    packets = media_synth.opus_packets(0.5)
    ctx = FakeContext(user_config={"audio_output": "aac"}, auto_complete_publish=False)
    fn = transcode.TranscodeFunction()
    for i, p in enumerate(packets):
        feed(fn, ctx, RAW_AUDIO, "mic1", frame_props("mic1", "opus", i, None, kind="audio", pts=i * 20_000), p)
    assert ctx.acked == []  # nothing acked before a publish completes
    for out in list(ctx.published):
        out.complete("Ok", None)
    acked = sorted(m.entry for m, _ in ctx.acked)
    assert acked == list(range(1, len(acked) + 1)) and len(acked) < len(packets)  # the tail is still buffered
    before = len(ctx.published)
    fn.flush_audio(fn._streams[("room1", "alice", "mic1")], "mic1", ctx)  # what idle eviction does at the end of a stream
    assert len(ctx.published) > before
    for out in ctx.published[before:]:
        out.complete("Ok", None)
    assert sorted(m.entry for m, _ in ctx.acked) == list(range(1, len(packets) + 1))
    outs = ctx.published_to("/encoded")
    assert {o.properties["codec"] for o in outs} == {"aac"} and outs[0].properties["room"] == "room1"
    for o in outs:
        check_props(load_schema("encoded.schema.json"), o.properties)
    assert [o.properties["seq"] for o in outs] == [str(i) for i in range(len(outs))]
    assert abs(peak_hz(decode_adts([o.payload for o in outs])) - 440) < 5


def test_transcode_aac_corrupt_packet_dead_lettered_stream_continues() -> None:
    packets = media_synth.opus_packets(0.3)
    ctx = FakeContext(user_config={"audio_output": "aac"})
    fn = transcode.TranscodeFunction()
    feed(fn, ctx, RAW_AUDIO, "mic1", frame_props("mic1", "opus", 0, None, kind="audio"), packets[0])
    feed(fn, ctx, RAW_AUDIO, "mic1", frame_props("mic1", "opus", 1, None, kind="audio"), b"")
    for i, p in enumerate(packets[1:], start=2):
        feed(fn, ctx, RAW_AUDIO, "mic1", frame_props("mic1", "opus", i, None, kind="audio", pts=i * 20_000), p)
    (dead,) = ctx.published_to("/dead-letter")
    assert dead.properties["reason"].startswith("empty_frame")
    assert len(ctx.published_to("/encoded")) >= 5
