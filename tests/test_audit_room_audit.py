"""audit/room_audit.py: counting, gaps, duplicates, reorderings, hop latency, bad input."""

from __future__ import annotations

import pytest

from audit.room_audit import (
    HOPS,
    BadMessage,
    RoomAudit,
    SeqLedger,
    input_frame,
    output_segment,
    percentile,
    render_text,
    resume_delay,
)


def raw(stream: str, seq: int, capture: float = 1000.0, ingress: float = 1010.0) -> dict[str, str]:
    return {"stream": stream, "seq": str(seq), "kind": "video", "room": "r1", "capture_ts": str(capture),
            "t_ingress": str(ingress)}


def seg(stream: str, first: int, last: int, rendition: str = "360p", **stamps: float) -> dict[str, str]:
    props = {"stream": stream, "kind": "video", "rendition": rendition, "segment_type": "media",
             "first_seq": str(first), "last_seq": str(last)}
    props.update({k: str(v) for k, v in stamps.items()})
    return props


def add_frame(audit: RoomAudit, props: dict[str, str], publish_ms: float | None) -> None:
    """Add the frame that `props` describe (input_frame gives None only for an end of stream)."""
    frame = input_frame(props, publish_ms)
    assert frame is not None
    audit.add_input(frame)


def add_segment(audit: RoomAudit, props: dict[str, str], publish_ms: float | None) -> None:
    """Add the media segment that `props` describe (output_segment gives None for init and end)."""
    segment = output_segment(props, publish_ms)
    assert segment is not None
    audit.add_output(segment)


def test_ledger_counts_duplicates_reorderings_and_gaps() -> None:
    ledger = SeqLedger()
    for seq in [0, 1, 2, 5, 3, 3, 8]:
        ledger.add(seq)
    assert ledger.distinct == 6
    assert ledger.duplicates == 1
    assert ledger.reorderings == 1  # 3 after 5; the second 3 is a duplicate, not a reordering
    assert ledger.gaps() == [(4, 4), (6, 7)]
    assert ledger.gaps(upto=10) == [(4, 4), (6, 7), (9, 10)]


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 95) == 95.0
    assert percentile(values, 99) == 99.0
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_report_finds_missing_frames_and_output_duplicates() -> None:
    audit = RoomAudit("r1")
    for seq in range(10):
        add_frame(audit, raw("cam", seq), publish_ms=1011.0)
    add_frame(audit, raw("cam", 4), publish_ms=2000.0)  # resent after a fault
    for first, last in [(0, 2), (3, 3), (3, 3), (6, 9), (5, 5)]:
        add_segment(audit, seg("cam", first, last), publish_ms=1100.0)
    add_segment(audit, seg("cam", 0, 9, rendition="720p"), publish_ms=1100.0)
    report = audit.report()
    by = {(t.stream, t.rendition): t for t in report.tracks}
    low, high = by[("cam", "360p")], by[("cam", "720p")]
    assert (low.frames_in, low.frames_out, low.missing, low.missing_ranges) == (10, 9, 1, [(4, 4)])
    assert low.duplicates_in == 1 and low.duplicates_out == 1
    assert low.reorderings_out == 1  # 5 arrived after 6-9
    assert low.gaps_out == 1
    assert (high.missing, high.duplicates_out) == (0, 0)
    assert report.lost == 1
    text = render_text(report)
    assert "missing seq: 4" in text and "1 frames lost" in text


def test_hop_latency_uses_every_stamp_pair() -> None:
    audit = RoomAudit("r1")
    add_frame(audit, raw("cam", 0, capture=1000.0, ingress=1005.0), publish_ms=1006.0)
    add_segment(audit, seg("cam", 0, 0, capture_ts=1000.0, t_ingress=1005.0, t_transcode=1030.0, t_chunk=1032.0,
                           t_route=1040.0), publish_ms=1041.0)
    lat = audit.report().tracks[0].latency
    assert list(lat) == list(HOPS)
    got = {hop: s.p50 for hop, s in lat.items() if s is not None}
    assert got == {"ingress": 5.0, "input_topic": 1.0, "transcode": 24.0, "chunk": 2.0, "route": 8.0, "output": 1.0}
    assert audit.hop_samples()["transcode"] == [24.0]


def test_hop_without_both_ends_is_not_timed() -> None:
    audit = RoomAudit("r1")
    add_segment(audit, seg("cam", 0, 0, capture_ts=1000.0, t_route=1040.0), publish_ms=None)
    lat = audit.report().tracks[0].latency
    assert all(s is None for s in lat.values())


def test_init_segments_carry_no_frames_and_audio_is_its_own_track() -> None:
    assert output_segment({"stream": "cam", "segment_type": "init", "rendition": "360p"}, 1.0) is None
    audio = output_segment({"stream": "mic", "kind": "audio", "segment_type": "media", "first_seq": "3",
                            "last_seq": "5"}, 1.0)
    assert audio is not None and (audio.rendition, audio.first_seq, audio.last_seq) == ("audio", 3, 5)
    unchunked = output_segment({"stream": "c", "kind": "chat", "seq": "7"}, 1.0)
    assert unchunked is not None and (unchunked.rendition, unchunked.first_seq) == ("chat", 7)


@pytest.mark.parametrize(("props", "words"), [
    ({"kind": "video", "seq": "1"}, "stream id"),
    ({"stream": "cam", "seq": "x1"}, "seq"),
    ({"stream": "cam", "seq": "-1"}, "seq"),
    ({"stream": "cam", "seq": "1", "capture_ts": "soon"}, "capture_ts"),
])
def test_bad_input_messages_name_the_property(props: dict[str, str], words: str) -> None:
    with pytest.raises(BadMessage, match=words):
        input_frame(props, None)


def test_bad_output_range_is_refused() -> None:
    with pytest.raises(BadMessage, match="last_seq 2 < first_seq 5"):
        output_segment(seg("cam", 5, 2), None)


def test_key_stands_in_for_a_missing_stream_property() -> None:
    frame = input_frame({"seq": "4"}, None, key="cam")
    assert frame is not None and (frame.stream, frame.seq) == ("cam", 4)


def test_confirmed_missing_checks_only_what_was_acknowledged() -> None:
    audit = RoomAudit("r1")
    for seq in range(6):
        add_frame(audit, raw("cam", seq), None)
    add_segment(audit, seg("cam", 0, 3), None)
    add_segment(audit, seg("cam", 0, 5, rendition="720p"), None)
    assert audit.confirmed_missing({"cam": range(4)}) == {}
    assert audit.confirmed_missing({"cam": [0, 4, 5]}) == {("cam", "360p"): [(4, 5)]}
    assert audit.confirmed_missing({"mic": [0, 1, 3]}) == {("mic", "*"): [(0, 1), (3, 3)]}


def test_resume_delay_waits_for_a_frame_captured_after_the_event() -> None:
    audit = RoomAudit("r1")
    # in flight before the restart at t=1000 (captured 990, out at 1500), then new frames
    for captured, published in [(990.0, 1500.0), (1200.0, 2400.0), (1100.0, 2600.0)]:
        add_segment(audit, seg("cam", 0, 0, capture_ts=captured), publish_ms=published)
    assert resume_delay(audit.output_times("cam"), 1000.0) == 1400.0
    assert resume_delay(audit.output_times("cam"), 5000.0) is None


def test_streams_with_no_output_are_listed_and_json_round_trips() -> None:
    import json

    audit = RoomAudit("r1")
    add_frame(audit, raw("ghost", 0), None)
    audit.add_bad("raw-video 1:2", BadMessage("property seq='x' is not a decimal sequence number"))
    report = audit.report()
    assert report.inputs_without_output == ["ghost"]
    data = json.loads(json.dumps(report.to_json()))
    assert data["inputs_without_output"] == ["ghost"] and data["bad_messages"][0].startswith("raw-video 1:2")


def test_trimmed_input_topics_are_named() -> None:
    audit = RoomAudit("r1")
    for seq in range(50, 60):  # the broker deleted 0..49 once transcode acked them
        add_frame(audit, raw("cam", seq), None)
    add_frame(audit, raw("mic", 0), None)
    add_segment(audit, seg("cam", 0, 59), None)
    add_segment(audit, seg("mic", 0, 0, rendition="audio"), None)
    report = audit.report()
    assert report.inputs_trimmed == ["cam"]
    assert "retention" in render_text(report)


def test_ends_of_stream_are_not_frames_on_either_side() -> None:
    end_in = {"end_of_stream": "1", "stream": "cam", "kind": "video", "last_seq": "9", "reason": "left"}
    assert input_frame(end_in, 1000.0) is None
    end_out = {**end_in, "segment_type": "end", "rendition": "360p", "segment_seq": "10"}
    assert output_segment(end_out, 1000.0) is None
