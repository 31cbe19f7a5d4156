"""Rebase the timeline of fMP4 fragments so a recording starts at 0 (sans-I/O).

A viewer or ``wtpulsar consume`` that joins a stream late gets fragments whose decode times count
from the stream's start (chunk numbers each track from its first frame), so a file written from
them would begin at, say, 451 s and a player would show a 7:41 timeline for 10 s of video. The
fragment's start is the ``baseMediaDecodeTime`` of its ``tfdt`` box (ISO/IEC 14496-12 §8.8.12;
box layout in docs/fmp4-timeline.md); subtracting the first fragment's value from every fragment,
in place, makes the file start at 0 and last what was recorded. A later jump back (the encoder
restarted and chunk began again from 0) continues from where the file had got to.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")

# tfhd flags (ISO/IEC 14496-12 §8.8.7) and trun flags (§8.8.8) that decide where sample durations are
TFHD_BASE_DATA_OFFSET = 0x01
TFHD_SAMPLE_DESCRIPTION_INDEX = 0x02
TFHD_DEFAULT_SAMPLE_DURATION = 0x08
TRUN_DATA_OFFSET = 0x01
TRUN_FIRST_SAMPLE_FLAGS = 0x04
TRUN_SAMPLE_DURATION = 0x100
TRUN_SAMPLE_SIZE = 0x200
TRUN_SAMPLE_FLAGS = 0x400
TRUN_SAMPLE_CTO = 0x800


@dataclass(frozen=True, slots=True)
class Box:
    kind: bytes
    start: int  # offset of the size field
    body: int  # offset after the header
    end: int


def boxes(data: bytes | bytearray, start: int = 0, end: int | None = None) -> list[Box]:
    """The boxes laid end to end in data[start:end]; stops at the first one that does not fit."""
    end = len(data) if end is None else end
    out, pos = [], start
    while pos + 8 <= end:
        size = _U32.unpack_from(data, pos)[0]
        header = 8
        if size == 1:
            if pos + 16 > end:
                break
            size, header = _U64.unpack_from(data, pos + 8)[0], 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            break
        out.append(Box(bytes(data[pos + 4:pos + 8]), pos, pos + header, pos + size))
        pos += size
    return out


@dataclass(slots=True)
class _Track:
    """One traf: where its tfdt value sits, the value, and the fragment's duration (None: unknown)."""

    tfdt_at: int
    wide: bool  # version 1: 64-bit
    decode_time: int
    duration: int | None


def _tracks(data: bytes | bytearray) -> list[_Track]:
    found = []
    for moof in (b for b in boxes(data) if b.kind == b"moof"):
        for traf in (b for b in boxes(data, moof.body, moof.end) if b.kind == b"traf"):
            children = {b.kind: b for b in boxes(data, traf.body, traf.end)}
            tfdt = children.get(b"tfdt")
            if tfdt is None or tfdt.end - tfdt.body < 8:
                continue
            wide = data[tfdt.body] == 1
            if wide and tfdt.end - tfdt.body < 12:
                continue
            at = tfdt.body + 4
            value = _U64.unpack_from(data, at)[0] if wide else _U32.unpack_from(data, at)[0]
            found.append(_Track(at, wide, value, _duration(data, children.get(b"tfhd"), children.get(b"trun"))))
    return found


def _duration(data: bytes | bytearray, tfhd: Box | None, trun: Box | None) -> int | None:
    if tfhd is None or trun is None or trun.end - trun.body < 8:
        return None
    default = None
    flags = _U32.unpack_from(data, tfhd.body)[0] & 0xFFFFFF
    pos = tfhd.body + 8  # version/flags, track_ID
    pos += 8 if flags & TFHD_BASE_DATA_OFFSET else 0
    pos += 4 if flags & TFHD_SAMPLE_DESCRIPTION_INDEX else 0
    if flags & TFHD_DEFAULT_SAMPLE_DURATION and pos + 4 <= tfhd.end:
        default = _U32.unpack_from(data, pos)[0]
    tflags = _U32.unpack_from(data, trun.body)[0] & 0xFFFFFF
    count = _U32.unpack_from(data, trun.body + 4)[0]
    pos = trun.body + 8
    pos += 4 if tflags & TRUN_DATA_OFFSET else 0
    pos += 4 if tflags & TRUN_FIRST_SAMPLE_FLAGS else 0
    if not tflags & TRUN_SAMPLE_DURATION:
        return None if default is None else default * count
    stride = 4 * sum(1 for f in (TRUN_SAMPLE_DURATION, TRUN_SAMPLE_SIZE, TRUN_SAMPLE_FLAGS, TRUN_SAMPLE_CTO)
                     if tflags & f)
    if pos + stride * count > trun.end:
        return None
    return sum(int(_U32.unpack_from(data, pos + i * stride)[0]) for i in range(count))


class TimelineRebase:
    """Feed media fragments in order; ``rebase`` returns each with its decode times moved so the first
    written starts at 0. Payloads that are not a fragment with a tfdt come back unchanged."""

    def __init__(self) -> None:
        self.offset: int | None = None
        self.next_time = 0  # where the file's timeline has got to (end of the last fragment)
        self.last_time = 0

    def rebase(self, payload: bytes) -> bytes:
        found = _tracks(payload)
        if not found:
            return payload
        first = found[0]
        if self.offset is None:
            self.offset = first.decode_time
        elif first.decode_time - self.offset < self.last_time:
            # The source's timeline went back (its encoder restarted): carry on from where the file is.
            self.offset = first.decode_time - self.next_time
        data = bytearray(payload)
        for track in found:
            value = max(0, track.decode_time - self.offset)
            if track.wide:
                _U64.pack_into(data, track.tfdt_at, value)
            else:
                _U32.pack_into(data, track.tfdt_at, min(value, 0xFFFFFFFF))
        self.last_time = max(0, first.decode_time - self.offset)
        step = first.duration if first.duration is not None else 0
        self.next_time = self.last_time + step
        return bytes(data)
