"""ingress/session.py driven without I/O: bytes and broker outcomes in, actions out."""

from __future__ import annotations

import json

from ingress.session import (
    CONTROL,
    RECORD_OVERHEAD,
    Action,
    AddressBook,
    CloseSession,
    CloseStream,
    Limits,
    Publish,
    PublisherSession,
    Rejected,
    Send,
    format_ms,
)
from ingress.tokens import Claims, Role
from schemas import framing_codec as f
from schemas.framing_codec import AckStatus, CloseCode, Codec, Frame, Kind

CLAIMS = Claims(room="room1", user="alice", role=Role.PUBLISHER, expires_at=2e9)
T0 = 1_800_000_000.0


def vframe(seq: int, stream: str = "cam", size: int = 100, key: bool = False) -> Frame:
    return Frame(Kind.VIDEO, Codec.H264, stream, seq, seq * 33_333, 1_799_999_999_990.25, bytes(size), key, 640, 360)


def chat(seq: int, body: bytes = b'{"text":"hi"}') -> Frame:
    return Frame(Kind.CHAT, Codec.JSON, "chat", seq, 0, 1_799_999_999_000.0, body)


def publishes(actions: list[Action]) -> list[Publish]:
    return [a for a in actions if isinstance(a, Publish)]


def sent(actions: list[Action]) -> list[tuple[int, f.Record]]:
    """(channel, record) of each Send, parsed."""
    return [(a.channel, f.parse(a.data)) for a in actions if isinstance(a, Send)]


def acks(actions: list[Action]) -> list[tuple[int, f.Ack]]:
    """Like sent(), for tests where every record sent must be an Ack."""
    records = sent(actions)
    only_acks = [(channel, record) for channel, record in records if isinstance(record, f.Ack)]
    assert only_acks == records, f"not only acks were sent: {records}"
    return only_acks


def test_frame_becomes_publish_with_envelope_properties() -> None:
    s = PublisherSession(CLAIMS, Limits(), T0)
    out = s.stream_data(2, f.serialize(vframe(0, key=True)), False, T0 + 0.001)
    (p,) = publishes(out)
    assert p.topic == "raw-video" and p.key == "cam" and p.event_timestamp == 1_799_999_999_990
    assert p.payload == bytes(100)
    assert p.properties == {
        "kind": "video", "codec": "h264", "stream": "cam", "room": "room1", "user": "alice", "seq": "0",
        "pts": "0", "capture_ts": "1799999999990.25", "keyframe": "1", "width": "640", "height": "360",
        "t_ingress": "1800000000001",
    }


def test_media_acks_are_cumulative_and_only_after_broker_ack() -> None:
    s = PublisherSession(CLAIMS, Limits(), T0)
    data = b"".join(f.serialize(vframe(i)) for i in range(3))
    tickets = [p.ticket for p in publishes(s.stream_data(2, data, False, T0))]
    assert s.take_cumulative_acks() == []  # nothing acked by the broker yet
    s.published(tickets[0], True)
    s.published(tickets[1], True)
    assert acks(s.take_cumulative_acks()) == [(CONTROL, f.Ack("cam", 1))]
    assert s.take_cumulative_acks() == []
    s.published(tickets[2], True)
    assert acks(s.take_cumulative_acks()) == [(CONTROL, f.Ack("cam", 2))]


def test_chat_acked_per_message_on_its_bidi_stream_and_keyed_by_room() -> None:
    s = PublisherSession(CLAIMS, Limits(), T0)
    out = s.stream_data(4, f.serialize(chat(7)), False, T0, bidi=True)
    (p,) = publishes(out)
    assert p.topic == "chat-in" and p.key == "room1" and "width" not in p.properties
    assert acks(s.published(p.ticket, True)) == [(4, f.Ack("chat", 7))]


def test_bad_chat_rejected_alone_stream_stays_open() -> None:
    s = PublisherSession(CLAIMS, Limits(), T0)
    out = s.stream_data(4, f.serialize(chat(1, b"not json")) + f.serialize(chat(2)), False, T0, bidi=True)
    ((channel, ack),) = acks(out)
    assert channel == 4 and ack.seq == 1 and ack.status == AckStatus.REJECTED and "JSON" in ack.reason
    assert [p.properties["seq"] for p in publishes(out)] == ["2"]
    assert not any(isinstance(a, CloseStream) for a in out)


def test_broker_failure_becomes_rejected_ack() -> None:
    s = PublisherSession(CLAIMS, Limits(), T0)
    (p,) = publishes(s.stream_data(2, f.serialize(vframe(0)), False, T0))
    ((channel, ack),) = acks(s.published(p.ticket, False, "Timeout"))
    assert channel == CONTROL and ack.status == AckStatus.REJECTED and ack.code == CloseCode.BROKER_ERROR
    assert "Timeout" in ack.reason


def test_garbage_closes_only_that_stream() -> None:
    s = PublisherSession(CLAIMS, Limits(), T0)
    out = s.stream_data(2, b"\x00\x00\x00\x05\x07\x01abc", False, T0)
    assert Rejected("bad_version") in out
    (close,) = [a for a in out if isinstance(a, CloseStream)]
    assert close.channel == 2 and close.code == CloseCode.PROTOCOL_ERROR and "version 7" in close.reason
    assert publishes(s.stream_data(6, f.serialize(vframe(0)), False, T0))  # another stream still works
    assert not s.closed


def test_unknown_kind_and_codec_close_the_stream() -> None:
    s = PublisherSession(CLAIMS, Limits(), T0)
    bad = bytearray(f.serialize(vframe(0)))
    bad[5] = 42
    out = s.stream_data(2, bytes(bad), False, T0)
    assert Rejected("unknown_kind") in out and any(isinstance(a, CloseStream) for a in out)
    bad[5], bad[6] = Kind.AUDIO, Codec.H264
    out = s.stream_data(6, bytes(bad), False, T0)
    assert Rejected("unknown_codec") in out


def test_frame_over_limit_closes_stream_before_buffering() -> None:
    s = PublisherSession(CLAIMS, Limits(max_frame_bytes=1000, max_chat_bytes=100, max_file_bytes=2000), T0)
    out = s.stream_data(2, f.serialize(vframe(0, size=1001)), False, T0)
    (close,) = [a for a in out if isinstance(a, CloseStream)]
    assert close.code == CloseCode.LIMIT_EXCEEDED and "1001 bytes exceeds 1000" in close.reason
    # A length prefix beyond any kind's limit is refused from the first 4 bytes.
    out = s.stream_data(6, (10_000_000).to_bytes(4, "big"), False, T0)
    assert Rejected("too_large") in out


def test_truncated_stream_end_is_reported() -> None:
    s = PublisherSession(CLAIMS, Limits(), T0)
    data = f.serialize(vframe(0))
    out = s.stream_data(2, data + data[:9], True, T0)
    assert len(publishes(out)) == 1
    assert Rejected("truncated") in out


def test_stream_limits() -> None:
    s = PublisherSession(CLAIMS, Limits(max_open_streams=2, max_stream_ids=2), T0)
    s.stream_opened(2, False)
    s.stream_opened(6, False)
    out = s.stream_opened(10, False)
    assert Rejected("too_many_streams") in out and isinstance(out[-1], CloseStream)
    s.stream_data(2, f.serialize(vframe(0, "a")) + f.serialize(vframe(0, "b")), False, T0)
    out = s.stream_data(6, f.serialize(vframe(0, "c")), False, T0)
    assert Rejected("too_many_stream_ids") in out


def test_stream_id_bound_to_one_kind() -> None:
    s = PublisherSession(CLAIMS, Limits(), T0)
    s.stream_data(2, f.serialize(vframe(0, "x")), False, T0)
    audio = Frame(Kind.AUDIO, Codec.OPUS, "x", 0, 0, 1.0, b"o")
    out = s.stream_data(6, f.serialize(audio), False, T0)
    (close,) = [a for a in out if isinstance(a, CloseStream)]
    assert close.code == CloseCode.FORBIDDEN and "carries video" in close.reason


def test_bitrate_limit_closes_session() -> None:
    s = PublisherSession(CLAIMS, Limits(max_bitrate=80_000, burst_seconds=1.0), T0)  # 10 kB/s, 10 kB bucket
    out = s.stream_data(2, f.serialize(vframe(0, size=9000)), False, T0)
    assert publishes(out)
    out = s.stream_data(2, f.serialize(vframe(1, size=9000)), False, T0 + 0.5)  # bucket 6 kB left
    assert publishes(out)
    out = s.stream_data(2, f.serialize(vframe(2, size=100)), False, T0 + 0.6)  # still in debt
    (close,) = [a for a in out if isinstance(a, CloseSession)]
    assert close.code == CloseCode.LIMIT_EXCEEDED and "80000 bit/s" in close.reason
    assert s.closed and s.stream_data(2, f.serialize(vframe(3)), False, T0 + 9) == []


def test_backpressure_window_and_backlog() -> None:
    s = PublisherSession(CLAIMS, Limits(max_inflight=2, max_backlog_bytes=2 * (100 + RECORD_OVERHEAD) + 50), T0)
    out = s.stream_data(2, b"".join(f.serialize(vframe(i)) for i in range(4)), False, T0)
    first = publishes(out)
    assert len(first) == 2 and s.inflight == 2 and s.backlogged
    freed = publishes(s.published(first[0].ticket, True))
    assert [p.properties["seq"] for p in freed] == ["2"] and s.backlogged
    freed = publishes(s.published(first[1].ticket, True))
    assert [p.properties["seq"] for p in freed] == ["3"]
    assert s.inflight == 2
    # A client that ignores flow control and overfills the backlog is cut off, not buffered.
    out = s.stream_data(2, b"".join(f.serialize(vframe(i)) for i in range(4, 8)), False, T0)
    (close,) = [a for a in out if isinstance(a, CloseSession)]
    assert close.code == CloseCode.LIMIT_EXCEEDED and "waiting for the broker" in close.reason


def test_message_and_datagram_paths() -> None:
    s = PublisherSession(CLAIMS, Limits(), T0, max_datagram_bytes=200)
    audio = Frame(Kind.AUDIO, Codec.OPUS, "mic", 3, 60_000, 1.5, b"opus")
    (p,) = publishes(s.datagram(f.serialize(audio), T0))
    assert p.topic == "raw-audio" and p.properties["seq"] == "3" and "width" not in p.properties
    assert s.datagram(bytes(300), T0) == [Rejected("too_large")]
    out = s.message(b"\x00\x00\x00\x01", T0)
    assert Rejected("truncated") in out
    (channel, notice) = sent(out)[0]
    assert channel == CONTROL and isinstance(notice, f.Notice) and notice.code == CloseCode.PROTOCOL_ERROR
    out = s.message(f.serialize(f.Ack("x", 1)), T0)
    assert Rejected("unexpected_record") in out


def test_file_frames_get_per_message_acks() -> None:
    s = PublisherSession(CLAIMS, Limits(), T0)
    frame = Frame(Kind.FILE, Codec.BYTES, "upload1", 0, 0, 1.0, bytes(6 * 1024 * 1024))
    (p,) = publishes(s.stream_data(2, f.serialize(frame), True, T0))
    assert p.topic == "file-in" and len(p.payload) == 6 * 1024 * 1024
    assert acks(s.published(p.ticket, True)) == [(CONTROL, f.Ack("upload1", 0))]


def test_close_returns_inflight_and_stops_everything() -> None:
    s = PublisherSession(CLAIMS, Limits(), T0)
    (p,) = publishes(s.stream_data(2, f.serialize(vframe(0)), False, T0))
    assert s.close() == [p.ticket]
    assert s.stream_data(2, f.serialize(vframe(1)), False, T0) == []


def test_address_book() -> None:
    book = AddressBook(per_address=2, total=3)
    assert book.admit("1.1.1.1") is None and book.admit("1.1.1.1") is None
    refused = book.admit("1.1.1.1")
    assert refused is not None
    code, reason = refused
    assert code == CloseCode.TOO_MANY_SESSIONS and "1.1.1.1" in reason
    assert book.admit("2.2.2.2") is None
    refused = book.admit("3.3.3.3")
    assert refused is not None and refused[0] == CloseCode.SERVER_BUSY
    book.release("1.1.1.1")
    assert book.admit("1.1.1.1") is None


def test_format_ms() -> None:
    assert format_ms(1700000000000.0) == "1700000000000"
    assert format_ms(12.5) == "12.5" and format_ms(0.0) == "0"
    assert json.loads(format_ms(1.25)) == 1.25


def test_records_before_garbage_in_the_same_chunk_are_kept() -> None:
    s = PublisherSession(CLAIMS, Limits(), T0)
    out = s.stream_data(2, f.serialize(vframe(0)) + f.serialize(vframe(1)) + b"\x00\x00\x00\x03\x09\x01\x01",
                        False, T0)
    assert [p.properties["seq"] for p in publishes(out)] == ["0", "1"]
    assert any(isinstance(a, CloseStream) for a in out)


def test_groups_of_one_stream_id_are_published_in_stream_open_order() -> None:
    """One transport stream per GOP: a later group that arrives early is held until the earlier ends."""
    s = PublisherSession(CLAIMS, Limits(), T0)
    out = s.stream_data(2, f.serialize(vframe(0, key=True)), False, T0)  # group 1 starts on stream 2
    out += s.stream_data(6, f.serialize(vframe(3, key=True)) + f.serialize(vframe(4)), False, T0)  # group 2 early
    out += s.stream_data(10, f.serialize(vframe(6, key=True)), True, T0)  # group 3, already complete
    out += s.stream_data(2, f.serialize(vframe(1)) + f.serialize(vframe(2)), True, T0)  # group 1 ends
    assert [p.properties["seq"] for p in publishes(out)] == ["0", "1", "2", "3", "4"]
    out = s.stream_data(6, f.serialize(vframe(5)), True, T0)  # group 2 ends -> group 3 released
    assert [p.properties["seq"] for p in publishes(out)] == ["5", "6"]
    # a reset stream releases the next group too
    out = s.stream_data(14, f.serialize(vframe(7, key=True)), False, T0)
    out += s.stream_data(18, f.serialize(vframe(9, key=True)), False, T0)
    out += s.stream_reset(14)
    assert [p.properties["seq"] for p in publishes(out)] == ["7", "9"]


def test_late_bytes_on_a_closed_stream_are_ignored() -> None:
    s = PublisherSession(CLAIMS, Limits(max_frame_bytes=500), T0)
    data = f.serialize(vframe(0, size=2000))
    out = s.stream_data(2, (10**9).to_bytes(4, "big"), False, T0)
    (close,) = [a for a in out if isinstance(a, CloseStream)]
    assert close.code == CloseCode.LIMIT_EXCEEDED and "too_large" in close.reason
    assert s.stream_data(2, data[4:], False, T0) == []  # the rest of it, still in flight: no new errors
    assert s.stream_data(2, b"", True, T0) == []
    assert s.open_streams == 0


def test_resend_of_a_rejected_media_frame_in_the_same_session_is_confirmed() -> None:
    s = PublisherSession(CLAIMS, Limits(), T0)
    tickets = [p.ticket for p in publishes(s.stream_data(2, b"".join(f.serialize(vframe(i)) for i in range(4)),
                                                         False, T0))]
    ((_, rejected),) = acks(s.published(tickets[1], False, "Timeout"))
    assert rejected.status == AckStatus.REJECTED and rejected.seq == 1
    for t in (tickets[0], tickets[2], tickets[3]):
        assert acks(s.published(t, True)) == []  # coalesced, not immediate
    assert acks(s.take_cumulative_acks()) == [(CONTROL, f.Ack("cam", 3))]  # the mark is past 1 now
    (again,) = publishes(s.stream_data(2, f.serialize(vframe(1)), False, T0))  # the client resends 1
    assert acks(s.published(again.ticket, True)) == [(CONTROL, f.Ack("cam", 1))]  # confirmed at once
    assert s.take_cumulative_acks() == []  # and the cumulative mark did not move back
    (nxt,) = publishes(s.stream_data(2, f.serialize(vframe(4)), False, T0))
    s.published(nxt.ticket, True)
    assert acks(s.take_cumulative_acks()) == [(CONTROL, f.Ack("cam", 4))]


def test_resend_after_rejection_below_the_mark_when_acked_before_later_frames() -> None:
    s = PublisherSession(CLAIMS, Limits(), T0)
    t0, t1, t2 = (p.ticket for p in publishes(s.stream_data(2, b"".join(f.serialize(vframe(i)) for i in range(3)),
                                                           False, T0)))
    s.published(t0, False, "Timeout")
    (again,) = publishes(s.stream_data(2, f.serialize(vframe(0)), False, T0))
    s.published(again.ticket, True)  # stored before 1 and 2: the cumulative mark simply reaches 0
    assert acks(s.take_cumulative_acks()) == [(CONTROL, f.Ack("cam", 0))]
    s.published(t1, True)
    s.published(t2, True)
    assert acks(s.take_cumulative_acks()) == [(CONTROL, f.Ack("cam", 2))]
