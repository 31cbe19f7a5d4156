"""functions/media_decode.py: keyframe sniffing and per-stream decoding with clear errors."""

from __future__ import annotations

import pytest

from tests.test_functions_media_support import function_module, media_synth

media_decode = function_module("media_decode")
BadInput = function_module("media_envelope").BadInput

FRAMES = media_synth.pattern_frames(12, 320, 240)


@pytest.mark.parametrize("codec", ["vp8", "vp9", "h264", "jpeg"])
def test_sniff_keyframe_agrees_with_encoder(codec: str) -> None:
    chunks = media_synth.encode_chunks(FRAMES, codec, keyint=4)
    assert [media_decode.sniff_keyframe(codec, c.data) for c in chunks] == [c.keyframe for c in chunks]


@pytest.mark.parametrize("codec", ["vp8", "vp9", "h264", "jpeg"])
def test_decoder_one_frame_per_chunk_in_order(codec: str) -> None:
    decoder = media_decode.VideoDecoder(codec)
    out = [decoder.decode(c.data) for c in media_synth.encode_chunks(FRAMES, codec, keyint=6)]
    assert [len(frames) for frames in out] == [1] * len(FRAMES)  # no decoder delay
    assert [media_synth.marker_of(frames[0]) for frames in out] == list(range(len(FRAMES)))


def test_i420_frames_and_size_errors() -> None:
    decoder = media_decode.VideoDecoder("i420")
    data = media_synth.i420_bytes(FRAMES[3])
    (frame,) = decoder.decode(data, width=320, height=240)
    assert (frame.width, frame.height, media_synth.marker_of(frame)) == (320, 240, 3)
    with pytest.raises(BadInput, match="needs 115200 bytes, got 115199") as info:
        decoder.decode(data[:-1], width=320, height=240)
    assert info.value.code == "truncated_frame"
    with pytest.raises(BadInput, match="even positive width/height"):
        decoder.decode(data, width=0, height=240)


def test_unknown_codec_and_empty_and_corrupt() -> None:
    with pytest.raises(BadInput, match="'av1' is not one of") as info:
        media_decode.VideoDecoder("av1")
    assert info.value.code == "unknown_codec"
    decoder = media_decode.VideoDecoder("vp8")
    with pytest.raises(BadInput, match="empty"):
        decoder.decode(b"")
    good = media_synth.encode_chunks(FRAMES[:2], "vp8")
    decoder.decode(good[0].data)
    with pytest.raises(BadInput, match="vp8: .*Invalid data") as info:
        decoder.decode(good[1].data[:3] + bytes(range(256)) * 2)
    assert info.value.code == "decode_error"
