"""`wtpulsar record` without a broker: which fragments an interval needs (from the keyframe at or before its
start, across a publisher restart), the chat lines beside the file, and bad arguments refused with the reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clients.record import chat_lines, chat_path, select_runs
from tests.hls_support import FakeTrack
from wtpulsar.cli import main


def messages(track: FakeTrack) -> list[tuple[dict[str, str], bytes]]:
    return [(props, payload) for props, payload, _ in track.messages]


def test_runs_start_at_the_keyframe_before_the_interval_and_follow_a_restart() -> None:
    first = FakeTrack(stream="a")  # 30 fps, keyframe every 30 frames
    first.init(b"IA")
    first.media(90)
    first.end()
    second = FakeTrack(stream="b", t0_ms=first.t0_ms + 4_000)
    second.init(b"IB")
    second.media(60)
    t1, t2 = first.t0_ms + 1_500, first.t0_ms + 4_500
    runs = select_runs(messages(first) + messages(second), t1, t2)
    assert [(r.stream, r.init, len(r.fragments)) for r in runs] == [("a", b"IA", 60), ("b", b"IB", 16)]
    assert runs[0].fragments[0] == b"F30;"  # the keyframe of second 1, the last one at or before t1
    assert runs[1].fragments[-1] == b"F15;"  # b's frame 15 is captured at 4.5 s: the last one by t2
    assert runs[0].capture_of(45 * 3000) == first.t0_ms + 1_500


def test_a_stream_that_ended_before_the_interval_is_not_read() -> None:
    old = FakeTrack(stream="old")
    old.init()
    old.media(30)
    old.end()
    assert select_runs(messages(old), old.t0_ms + 5_000, old.t0_ms + 6_000) == []


def test_chat_lines_are_timed_from_the_recording_start() -> None:
    t0 = 1_800_000_000_000.0
    msgs = [({"capture_ts": str(t0 + dt), "moderation": "mask" if dt == 2000 else ""},
             json.dumps({"user": "ann", "text": f"at {dt}", "msg_id": f"m{dt}"}).encode()) for dt in (500, 2000, 9000)]
    msgs.append(({}, b"not json"))
    assert chat_lines(msgs, t0, t0 + 5000, t0 + 100) == [
        '{"t": 0.4, "user": "ann", "text": "at 500", "msg_id": "m500"}',
        '{"t": 1.9, "user": "ann", "text": "at 2000", "msg_id": "m2000", "moderation": "mask"}',
    ]
    assert chat_path(Path("/x/talk.mp4")) == Path("/x/talk.chat.jsonl")


def test_bad_arguments_get_a_sentence(capsys: Any, tmp_path: Path) -> None:
    out = str(tmp_path / "x.mp4")
    for argv, words in [
        (["--from", "soon", "--to", "2026-01-01T00:00:00Z", "--out", out], "--from 'soon' is not an ISO 8601 time"),
        (["--from", "2026-01-01T00:01:00Z", "--to", "2026-01-01T00:00:00Z", "--out", out], "is not after --from"),
        (["--from", "2026-01-01T00:00:00Z", "--to", "2026-01-01T00:01:00Z", "--out", str(tmp_path / "x.webm")],
         "name an .mp4 file"),
        (["--from", "2026-01-01T00:00:00Z", "--to", "2026-01-01T00:01:00Z", "--out", out, "--rendition", "hd"],
         "rendition 'hd' must look like 360p"),
    ]:
        assert main(["record", "room1", *argv]) == 2
        assert words in capsys.readouterr().err
