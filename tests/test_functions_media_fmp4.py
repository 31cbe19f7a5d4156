"""functions/media_fmp4.py: box layout and that PyAV plays what it writes."""

from __future__ import annotations

import struct

import pytest

from tests.test_functions_media_support import decode_fmp4, function_module, media_synth
from tests.test_functions_media_support import media_fmp4 as fmp4

h264 = function_module("media_h264")


def _x264_samples(count: int, keyint: int) -> tuple[bytes, list[fmp4.Sample]]:
    chunks = media_synth.encode_chunks(media_synth.pattern_frames(count, 320, 240), "h264", keyint=keyint)
    sps, pps = h264.parameter_sets(h264.split_annexb(chunks[0].data))
    assert sps and pps
    entry = fmp4.avc1_entry(320, 240, h264.avcc_record(sps, pps))
    init = fmp4.init_segment(sample_entry=entry, timescale=90_000, width=320, height=240)
    samples = [fmp4.Sample(h264.to_avcc_sample(h264.split_annexb(c.data)), 3000, c.keyframe) for c in chunks]
    return init, samples


def _find(data: bytes, path: list[bytes], full_box_skip: dict[bytes, int] | None = None) -> bytes:
    skip = full_box_skip or {}
    for kind in path:
        found = dict(fmp4.iter_boxes(data))
        data = found[kind][skip.get(kind, 0) :]
    return data


def test_init_segment_structure() -> None:
    init, _ = _x264_samples(1, 30)
    assert [k for k, _ in fmp4.iter_boxes(init)] == [b"ftyp", b"moov"]
    moov = dict(fmp4.iter_boxes(init))[b"moov"]
    assert [k for k, _ in fmp4.iter_boxes(moov)] == [b"mvhd", b"trak", b"mvex"]
    trex = _find(moov, [b"mvex", b"trex"])
    assert struct.unpack(">I", trex[4:8])[0] == fmp4.TRACK_ID
    mdhd = _find(moov, [b"trak", b"mdia", b"mdhd"])
    assert struct.unpack(">I", mdhd[12:16])[0] == 90_000


def test_media_segment_data_offset_points_at_samples() -> None:
    _, samples = _x264_samples(3, 30)
    seg = fmp4.media_segment(sequence_number=7, base_decode_time=123_456, samples=samples)
    boxes = fmp4.iter_boxes(seg)
    assert [k for k, _ in boxes] == [b"moof", b"mdat"]
    moof_size = 8 + len(boxes[0][1])
    traf = _find(boxes[0][1], [b"traf"])
    tfdt = dict(fmp4.iter_boxes(traf))[b"tfdt"]
    assert struct.unpack(">Q", tfdt[4:12])[0] == 123_456
    trun = dict(fmp4.iter_boxes(traf))[b"trun"]
    count, offset = struct.unpack(">Ii", trun[4:12])
    assert count == 3 and offset == moof_size + 8
    first_size = struct.unpack(">I", trun[16:20])[0]
    assert seg[offset : offset + first_size] == samples[0].data
    flags = [struct.unpack(">I", trun[12 + 12 * i + 8 : 12 + 12 * i + 12])[0] for i in range(3)]
    assert flags == [fmp4.SYNC_SAMPLE_FLAGS, fmp4.NON_SYNC_SAMPLE_FLAGS, fmp4.NON_SYNC_SAMPLE_FLAGS]


def test_pyav_plays_one_fragment_per_frame() -> None:
    init, samples = _x264_samples(20, 10)
    data = init + b"".join(
        fmp4.media_segment(sequence_number=i + 1, base_decode_time=i * 3000, samples=[s]) for i, s in enumerate(samples)
    )
    frames = decode_fmp4(data)
    assert [media_synth.marker_of(f) for f in frames] == list(range(20))
    assert [f.pts for f in frames] == [i * 3000 for i in range(20)]


def test_media_segment_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="at least one sample"):
        fmp4.media_segment(sequence_number=1, base_decode_time=0, samples=[])
    with pytest.raises(ValueError, match="starts at 1"):
        fmp4.media_segment(sequence_number=0, base_decode_time=0, samples=[fmp4.Sample(b"x", 1, True)])


def test_iter_boxes_rejects_truncation() -> None:
    with pytest.raises(ValueError, match="bad box size"):
        fmp4.iter_boxes(fmp4.box(b"free", b"12345678")[:-1])
    with pytest.raises(ValueError, match="truncated box header"):
        fmp4.iter_boxes(b"\x00\x00\x00")
