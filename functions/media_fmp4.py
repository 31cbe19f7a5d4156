"""Fragmented MP4 (ISO BMFF / CMAF) writer for one track (H.264, Opus or AAC), in memory.

Written by hand instead of driving the PyAV muxer: the muxer flushes fragment N only when
packet N+1 arrives and its writes are not box aligned (docs/media-and-webtransport.md §5.3), which
would add a frame of latency and a box parser. Box layouts: ISO/IEC 14496-12 §4.2 (box header),
§8.2-8.8 (moov, trak, mvex, moof), ISO/IEC 14496-15 §5.4 (avc1 sample entry).

`init_segment()` returns ftyp+moov (empty sample tables, mvex/trex: everything is in fragments)
for a sample entry from `avc1_entry()`, `opus_entry()` or `mp4a_entry()`;
`media_segment()` returns moof+mdat for consecutive samples.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

TRACK_ID = 1
_UNITY_MATRIX = struct.pack(">9I", 0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000)
_LANGUAGE_UND = 0x55C4  # ISO-639-2 "und" packed as three 5-bit letters (ISO/IEC 14496-12 §8.4.2.3)

# sample_flags (ISO/IEC 14496-12 §8.8.3.1): a sync sample depends on nothing; others depend and are non-sync.
SYNC_SAMPLE_FLAGS = 0x02000000
NON_SYNC_SAMPLE_FLAGS = 0x01010000

_TFHD_DEFAULT_BASE_IS_MOOF = 0x020000
_TRUN_DATA_OFFSET = 0x000001
_TRUN_SAMPLE_DURATION = 0x000100
_TRUN_SAMPLE_SIZE = 0x000200
_TRUN_SAMPLE_FLAGS = 0x000400


@dataclass(frozen=True)
class Sample:
    """One access unit as stored in mdat (AVCC length-prefixed NAL units)."""

    data: bytes
    duration: int  # in the track timescale
    keyframe: bool


def box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I", 8 + len(body)) + kind + body


def full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return box(kind, struct.pack(">I", (version << 24) | flags), *payload)


def avc1_entry(width: int, height: int, avcc: bytes) -> bytes:
    """VisualSampleEntry `avc1` with its avcC record (ISO/IEC 14496-15 §5.4.2)."""
    return box(
        b"avc1",
        bytes(6), struct.pack(">H", 1),  # reserved, data_reference_index
        bytes(16), struct.pack(">HH", width, height),
        struct.pack(">III", 0x00480000, 0x00480000, 0), struct.pack(">H", 1),  # 72 dpi, frame_count
        bytes(32), struct.pack(">Hh", 0x0018, -1),  # compressorname, depth, pre_defined
        box(b"avcC", avcc),
    )


def _audio_entry(kind: bytes, channels: int, sample_rate: int, config_box: bytes) -> bytes:
    """AudioSampleEntry (ISO/IEC 14496-12 §12.2.3): 16-bit, rate as 16.16 fixed point."""
    return box(kind, bytes(6), struct.pack(">H", 1), bytes(8), struct.pack(">HHHH", channels, 16, 0, 0),
               struct.pack(">I", sample_rate << 16), config_box)


def opus_entry(channels: int, pre_skip: int = 0) -> bytes:
    """`Opus` sample entry with dOps ("Encapsulation of Opus in ISO BMFF" §4.3): mapping family 0."""
    dops = box(b"dOps", struct.pack(">BBHIhB", 0, channels, pre_skip, 48_000, 0, 0))
    return _audio_entry(b"Opus", channels, 48_000, dops)


def mp4a_entry(channels: int, sample_rate: int, audio_specific_config: bytes) -> bytes:
    """`mp4a` sample entry with an esds descriptor chain for AAC (ISO/IEC 14496-1 §7.2.6, 14496-14 §5.6)."""

    def descriptor(tag: int, body: bytes) -> bytes:
        return bytes([tag, len(body)]) + body  # bodies here are < 128 bytes: one-byte length

    decoder_specific = descriptor(0x05, audio_specific_config)
    # objectTypeIndication 0x40 = MPEG-4 audio; streamType 5 (audio) << 2 | reserved bit
    decoder_config = descriptor(0x04, struct.pack(">BBBHII", 0x40, 0x15, 0, 0, 0, 0) + decoder_specific)
    es = descriptor(0x03, struct.pack(">HB", 0, 0) + decoder_config + descriptor(0x06, b"\x02"))
    return _audio_entry(b"mp4a", channels, sample_rate, full_box(b"esds", 0, 0, es))


def init_segment(*, sample_entry: bytes, timescale: int, width: int = 0, height: int = 0) -> bytes:
    """ftyp + moov for one track described by `sample_entry` (video when it is `avc1`, else audio)."""
    video = sample_entry[4:8] == b"avc1"
    ftyp = box(b"ftyp", b"iso6", struct.pack(">I", 0), b"iso6", b"cmfc", b"isom", b"mp41",
               *((b"avc1",) if video else ()))
    mvhd = full_box(
        b"mvhd", 0, 0,
        struct.pack(">IIII", 0, 0, 1000, 0),  # creation, modification, timescale, duration
        struct.pack(">IH", 0x00010000, 0x0100), bytes(10),  # rate 1.0, volume 1.0, reserved
        _UNITY_MATRIX, bytes(24), struct.pack(">I", TRACK_ID + 1),
    )
    tkhd = full_box(
        b"tkhd", 0, 0x000003,  # enabled, in movie
        struct.pack(">IIIII", 0, 0, TRACK_ID, 0, 0), bytes(8),
        struct.pack(">hhhH", 0, 0, 0 if video else 0x0100, 0),  # layer, group, volume (audio 1.0), reserved
        _UNITY_MATRIX, struct.pack(">II", width << 16, height << 16),
    )
    mdhd = full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, timescale, 0, _LANGUAGE_UND, 0))
    if video:
        hdlr = full_box(b"hdlr", 0, 0, struct.pack(">I", 0), b"vide", bytes(12), b"wtpulsar video\x00")
        media_header = full_box(b"vmhd", 0, 1, bytes(8))
    else:
        hdlr = full_box(b"hdlr", 0, 0, struct.pack(">I", 0), b"soun", bytes(12), b"wtpulsar audio\x00")
        media_header = full_box(b"smhd", 0, 0, bytes(4))  # balance, reserved
    dinf = box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1)))
    stbl = box(
        b"stbl",
        full_box(b"stsd", 0, 0, struct.pack(">I", 1), sample_entry),
        full_box(b"stts", 0, 0, struct.pack(">I", 0)),
        full_box(b"stsc", 0, 0, struct.pack(">I", 0)),
        full_box(b"stsz", 0, 0, struct.pack(">II", 0, 0)),
        full_box(b"stco", 0, 0, struct.pack(">I", 0)),
    )
    trak = box(b"trak", tkhd, box(b"mdia", mdhd, hdlr, box(b"minf", media_header, dinf, stbl)))
    mvex = box(b"mvex", full_box(b"trex", 0, 0, struct.pack(">IIIII", TRACK_ID, 1, 0, 0, 0)))
    return ftyp + box(b"moov", mvhd, trak, mvex)


def media_segment(*, sequence_number: int, base_decode_time: int, samples: list[Sample]) -> bytes:
    """moof + mdat holding `samples` in decode order, starting at `base_decode_time` (timescale units)."""
    if not samples:
        raise ValueError("a fragment needs at least one sample")
    if sequence_number < 1:
        raise ValueError("mfhd sequence_number starts at 1")

    entries = b"".join(
        struct.pack(">III", s.duration, len(s.data), SYNC_SAMPLE_FLAGS if s.keyframe else NON_SYNC_SAMPLE_FLAGS)
        for s in samples
    )
    # data_offset is relative to the moof start (default-base-is-moof): the moof size plus the
    # mdat header. Sizes: moof 8 + mfhd 16 + traf 8 + tfhd 16 + tfdt(v1) 20 + trun 20 + 12/sample.
    moof_size = 88 + len(entries)
    trun_flags = _TRUN_DATA_OFFSET | _TRUN_SAMPLE_DURATION | _TRUN_SAMPLE_SIZE | _TRUN_SAMPLE_FLAGS
    trun = full_box(b"trun", 0, trun_flags, struct.pack(">Ii", len(samples), moof_size + 8), entries)
    tfhd = full_box(b"tfhd", 0, _TFHD_DEFAULT_BASE_IS_MOOF, struct.pack(">I", TRACK_ID))
    tfdt = full_box(b"tfdt", 1, 0, struct.pack(">Q", base_decode_time))
    mfhd = full_box(b"mfhd", 0, 0, struct.pack(">I", sequence_number))
    moof = box(b"moof", mfhd, box(b"traf", tfhd, tfdt, trun))
    if len(moof) != moof_size:  # the layout above and the arithmetic must agree
        raise AssertionError(f"moof is {len(moof)} bytes, expected {moof_size}")
    return moof + box(b"mdat", *(s.data for s in samples))


def iter_boxes(data: bytes) -> list[tuple[bytes, bytes]]:
    """Top-level (type, payload) pairs; raises ValueError on a truncated or malformed header."""
    out: list[tuple[bytes, bytes]] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 8:
            raise ValueError(f"truncated box header at offset {pos}")
        size, kind = struct.unpack_from(">I4s", data, pos)
        if size < 8 or pos + size > len(data):
            raise ValueError(f"bad box size {size} for {kind!r} at offset {pos}")
        out.append((kind, data[pos + 8 : pos + size]))
        pos += size
    return out
