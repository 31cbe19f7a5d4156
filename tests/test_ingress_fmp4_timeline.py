"""A recording `wtpulsar consume` writes from a stream it joined late starts at 0 and lasts what was
recorded (ingress/fmp4_timeline.py), checked on chunk's real fragments opened with PyAV."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import av
import pytest

from clients.consume import MediaFile
from ingress.fmp4_timeline import TimelineRebase, boxes
from ingress.viewer import Item
from schemas.framing_codec import Kind
from tests.fake_context import FakeContext, Published
from tests.test_functions_media_support import ENCODED, feed, frame_props, load_function_module, media_synth

chunk = load_function_module("chunk")
FPS = 30


@pytest.fixture(scope="module")
def track() -> list[Published]:
    """Init + one fragment per frame of a 90-frame H.264 stream (keyframe every 15), as chunk writes them."""
    chunks = media_synth.encode_chunks(media_synth.pattern_frames(90), "h264", keyint=15)
    ctx = FakeContext(user_config={"fragment_frames": 1, "fps": FPS})
    fn = chunk.ChunkFunction()
    for i, c in enumerate(chunks):
        feed(fn, ctx, ENCODED, "cam1", dict(frame_props("cam1", "h264", i, c), rendition="360p", t_transcode="1"),
             c.data)
    return ctx.published


def write(items: list[Published], path: Path) -> MediaFile:
    with path.open("wb") as out:
        media = MediaFile(out)
        for p in items:
            media.write(Item(Kind.VIDEO, p.properties, p.payload))
    return media


def frame_times(path: Path) -> tuple[list[float], float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.time_base is not None, "the mp4 names no time base"
        frames = list(container.decode(video=0))
        assert all(f.pts is not None for f in frames), "a frame without a presentation time"
        times = [float((f.pts or 0) * stream.time_base) for f in frames]
        duration = container.duration / 1_000_000 if container.duration else 0.0
    return times, duration


def test_a_late_joiners_file_starts_at_zero_and_lasts_what_was_recorded(track: list[Published], tmp_path: Path) -> None:
    init, media = track[0], track[1:]
    joined = [init] + media[45:]  # joined at the keyframe 1.5 s into the stream, recorded 45 frames
    assert abs(int(media[45].properties["decode_time"]) - 45 * 3000) <= 1  # chunk stamps the stream's clock
    write(joined, tmp_path / "late.mp4")
    times, duration = frame_times(tmp_path / "late.mp4")
    assert len(times) == 45
    assert times[0] == 0.0 and times == sorted(times)
    assert abs(duration - 45 / FPS) < 0.1, duration


def test_a_restarted_source_continues_the_files_timeline(track: list[Published], tmp_path: Path) -> None:
    init, media = track[0], track[1:]
    # 15 frames from 2 s in, then chunk restarts (a new init, decode times from 0 again), 15 more frames
    write([init] + media[60:75] + [init] + media[0:15], tmp_path / "restart.mp4")
    times, duration = frame_times(tmp_path / "restart.mp4")
    assert len(times) == 30 and times[0] == 0.0
    assert all(b > a for a, b in zip(times, times[1:], strict=False)), times  # never back in time
    assert abs(duration - 30 / FPS) < 0.1, duration


def test_payloads_that_are_not_fragments_pass_unchanged() -> None:
    rebase = TimelineRebase()
    for payload in (b"", b"INIT", b"\x00\x00\x00\x08free", b"\x00\x00\x00\xffmoof"):
        assert rebase.rebase(payload) == payload
    assert rebase.offset is None


def tfdt_fragment(decode_time: int, version: int, samples: int = 2, duration: int = 10) -> bytes:
    def box(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", 8 + len(body)) + kind + body

    tfdt_body = bytes([version, 0, 0, 0]) + (struct.pack(">Q", decode_time) if version else
                                             struct.pack(">I", decode_time))
    tfhd = box(b"tfhd", struct.pack(">II", 0x020008, 1) + struct.pack(">I", duration))  # default duration
    trun = box(b"trun", struct.pack(">II", 0, samples))
    traf = box(b"traf", tfhd + box(b"tfdt", tfdt_body) + trun)
    return box(b"moof", box(b"mfhd", struct.pack(">II", 0, 1)) + traf) + box(b"mdat", b"xx")


def decode_time_of(fragment: bytes) -> int:
    moof = next(b for b in boxes(fragment) if b.kind == b"moof")
    traf = next(b for b in boxes(fragment, moof.body, moof.end) if b.kind == b"traf")
    tfdt = next(b for b in boxes(fragment, traf.body, traf.end) if b.kind == b"tfdt")
    if fragment[tfdt.body]:
        return int(struct.unpack_from(">Q", fragment, tfdt.body + 4)[0])
    return int(struct.unpack_from(">I", fragment, tfdt.body + 4)[0])


@pytest.mark.parametrize("version", [0, 1])
def test_both_tfdt_versions_are_rebased_in_place(version: int) -> None:
    rebase = TimelineRebase()
    start = 451 * 90_000 if version == 0 else 2**40
    out = [rebase.rebase(tfdt_fragment(start + n * 20, version)) for n in range(3)]
    assert [decode_time_of(f) for f in out] == [0, 20, 40]
    assert all(len(o) == len(tfdt_fragment(0, version)) for o in out)
    # the source restarts at 0: the file goes on from 60 (end of the last fragment: 2 samples x 10)
    assert decode_time_of(rebase.rebase(tfdt_fragment(0, version))) == 60


def test_media_file_keeps_unplayable_data_out(tmp_path: Path) -> None:
    out = io.BytesIO()
    media = MediaFile(out)
    media.write(Item(Kind.VIDEO, {"segment_type": "media"}, b"before any init"))
    media.write(Item(Kind.VIDEO, {"segment_type": "end", "stream": "cam1"}, b""))
    assert out.getvalue() == b"" and media.fragments == 0
