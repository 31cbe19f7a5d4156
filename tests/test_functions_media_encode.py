"""functions/media_encode.py: ladder planning (never upscale) and the libx264 encoder."""

from __future__ import annotations

import pytest

from tests.test_functions_media_support import function_module, media_synth

enc = function_module("media_encode")
h264 = function_module("media_h264")

LADDER = enc.parse_ladder(None)


def test_default_ladder_and_never_upscale() -> None:
    assert [(r.name, r.height) for r in LADDER] == [("720p", 720), ("360p", 360)]
    assert [(r.name, w, h) for r, w, h in enc.plan_ladder(LADDER, 1280, 720)] == [("720p", 1280, 720),
                                                                                ("360p", 640, 360)]
    assert [(r.name, w, h) for r, w, h in enc.plan_ladder(LADDER, 640, 480)] == [("360p", 480, 360)]
    # smaller than every rung: the lowest rung at the source size, nothing bigger than the source
    assert [(r.name, w, h) for r, w, h in enc.plan_ladder(LADDER, 320, 240)] == [("360p", 320, 240)]
    assert [(w, h) for _, w, h in enc.plan_ladder(LADDER, 1920, 1080)] == [(1280, 720), (640, 360)]


@pytest.mark.parametrize(
    ("value", "message"),
    [("720p", "must be a list"), ([{"height": 720}], "need name, height"), ([{"name": "x", "height": 721}], "even"),
     ([], None)],
)
def test_parse_ladder_errors(value: object, message: str | None) -> None:
    if message is None:
        assert enc.parse_ladder(value) == LADDER  # empty means default
        return
    with pytest.raises(ValueError, match=message):
        enc.parse_ladder(value)


def test_encoder_forced_keyframes_and_one_packet_per_frame() -> None:
    rung = enc.Rung("240p", 240, 300_000)
    encoder = enc.RenditionEncoder(rung, 320, 240, enc.EncoderSettings(preset="ultrafast"))
    frames = media_synth.pattern_frames(10)
    out = [encoder.encode(f, i * 33_333, force_keyframe=i in (0, 4, 7)) for i, f in enumerate(frames)]
    assert [len(p) for p in out] == [1] * 10  # zerolatency: a packet per frame, no delay
    keys = [i for i, p in enumerate(out) if p[0].is_keyframe]
    assert keys == [0, 4, 7]
    for i in keys:
        nals = h264.split_annexb(bytes(out[i][0]))
        assert h264.is_idr(nals) and h264.parameter_sets(nals)[0] is not None
    first = h264.parameter_sets(h264.split_annexb(bytes(out[0][0])))[0]
    assert first is not None and first[1] == 66  # baseline profile_idc: B-frames impossible


def test_jpeg_range_is_converted() -> None:
    (chunk,) = media_synth.encode_chunks(media_synth.pattern_frames(1, 160, 120, start=20), "jpeg")
    import media_decode

    (frame,) = media_decode.VideoDecoder("jpeg").decode(chunk.data)
    assert frame.format.name.startswith("yuvj")
    assert media_synth.marker_of(enc.scale_to_yuv420p(frame, 160, 120)) == 20
