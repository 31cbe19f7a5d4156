"""functions/media_h264.py: Annex B parsing, AVCC samples, avcC record, codec strings."""

from __future__ import annotations

import pytest

from tests.test_functions_media_support import function_module, media_synth

h264 = function_module("media_h264")

SPS = bytes.fromhex("6742c01eda0280f684000003000400000300f23c58ba80")
PPS = bytes.fromhex("68ce3c80")


def test_split_annexb_handles_3_and_4_byte_start_codes_and_trailing_zeros() -> None:
    data = b"\xff\xff" + b"\x00\x00\x00\x01" + SPS + b"\x00\x00\x01" + PPS + b"\x00\x00" + b"\x00\x00\x01\x65\x88\x80"
    assert h264.split_annexb(data) == [SPS, PPS, b"\x65\x88\x80"]


def test_split_annexb_without_start_code_is_empty() -> None:
    assert h264.split_annexb(b"\x65\x88\x80\x10") == []
    assert h264.split_annexb(b"") == []


def test_codec_string_from_sps() -> None:
    assert h264.codec_string(SPS) == "avc1.42c01e"
    with pytest.raises(ValueError, match="SPS"):
        h264.codec_string(PPS)


def test_codec_string_matches_x264_profile_and_level() -> None:
    frames = media_synth.pattern_frames(1, 1280, 720)
    nals = h264.split_annexb(media_synth.encode_chunks(frames, "h264")[0].data)
    sps, pps = h264.parameter_sets(nals)
    assert sps is not None and pps is not None
    assert h264.codec_string(sps).startswith("avc1.42")  # x264 baseline => profile_idc 66
    assert int(h264.codec_string(sps)[-2:], 16) >= 31  # 720p30 needs level 3.1 or more
    assert h264.is_idr(nals)


def test_avcc_sample_is_length_prefixed_without_parameter_sets() -> None:
    idr = b"\x65\x88\x84\x00\x21"
    sample = h264.to_avcc_sample([b"\x09\xf0", SPS, PPS, b"\x06\x05\x01\x80", idr])
    assert sample == (4).to_bytes(4, "big") + b"\x06\x05\x01\x80" + (5).to_bytes(4, "big") + idr


def test_avcc_record_layout() -> None:
    record = h264.avcc_record(SPS, PPS)
    assert record[:4] == bytes([1, 0x42, 0xC0, 0x1E])
    assert record[4] == 0xFF and record[5] == 0xE1
    assert record[6:8] == len(SPS).to_bytes(2, "big") and record[8 : 8 + len(SPS)] == SPS
    rest = record[8 + len(SPS) :]
    assert rest == b"\x01" + len(PPS).to_bytes(2, "big") + PPS


def test_avcc_record_rejects_missing_pps() -> None:
    with pytest.raises(ValueError, match="PPS"):
        h264.avcc_record(SPS, b"")


@pytest.mark.parametrize(("width", "height", "profile"), [(640, 480, "baseline"), (480, 360, "main"),
                                                          (1920, 1080, "high"), (426, 240, "baseline")])
def test_sps_dimensions_match_the_encoder(width: int, height: int, profile: str) -> None:
    encode = function_module("media_encode")
    rung = encode.Rung("x", height, 500_000)
    encoder = encode.RenditionEncoder(rung, width, height, encode.EncoderSettings(preset="ultrafast", profile=profile))
    (packet,) = encoder.encode(media_synth.pattern_frames(1, width, height)[0], 0, True)
    sps, _ = h264.parameter_sets(h264.split_annexb(bytes(packet)))
    assert sps is not None and h264.sps_dimensions(sps) == (width, height)  # 360/1080: cropped macroblocks


def test_sps_dimensions_rejects_truncated_sps() -> None:
    with pytest.raises(ValueError, match="SPS ends early"):
        h264.sps_dimensions(SPS[:6])
