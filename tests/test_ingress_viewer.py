"""ingress/viewer.py driven without I/O, as tests/test_ingress_session.py drives the publisher session:
topic messages and the time in, the whole list of transport actions out.

The sink records every call ``ViewerTracks`` makes on it as an action tuple (open, write, end, abort),
so each test states everything a viewer's transport is asked to do, in order.
"""

from __future__ import annotations

from typing import Any

from ingress.viewer import Item as Msg
from ingress.viewer import RoomFanout, ViewerSink, ViewerTracks
from schemas.framing_codec import Kind

T0 = 1_800_000_000_000.0  # ms
STALE_MS = 10_000.0
Action = tuple[str, ...]


class ActionSink(ViewerSink):
    """Records what the transport is asked to do; ``backlog`` is what the peer has not read yet."""

    def __init__(self) -> None:
        self.actions: list[Action] = []
        self.backlog: dict[str, int] = {}
        self.opened = 0

    def open_group(self, kind: Kind) -> str:
        self.opened += 1
        handle = f"{kind.name.lower()}#{self.opened}"
        self.actions.append(("open", handle))
        return handle

    def write_item(self, handle: Any, item: Msg) -> None:
        self.actions.append(("write", handle, item.payload.decode()))

    def end_group(self, handle: Any) -> None:
        self.actions.append(("end", handle))

    def abort_group(self, handle: Any) -> None:
        self.actions.append(("abort", handle))

    def queued(self, handle: Any) -> int:
        return self.backlog.get(handle, 0)

    def take(self) -> list[Action]:
        actions, self.actions = self.actions, []
        return actions


def media(name: str, seq: int, *, init: bool = False, key: bool = False, stream: str = "cam",
          kind: Kind = Kind.VIDEO, at: float = T0) -> Msg:  # fmt: skip
    props = {"user": "u", "stream": stream, "rendition": "360p", "segment_type": "init" if init else "media"}
    if not init:
        props |= {"first_seq": str(seq), "last_seq": str(seq), "keyframe": "1" if key else "0"}
    return Msg(kind, props, name.encode(), at)


def end(stream: str = "cam", kind: Kind = Kind.VIDEO, at: float = T0) -> Msg:
    return Msg(kind, {"user": "u", "stream": stream, "segment_type": "end"}, b"end", at)


def chat(seq: int) -> Msg:
    return Msg(Kind.CHAT, {"user": "u", "stream": "chat", "seq": str(seq)}, f"chat{seq}".encode())


def viewer(budget: int = 1000) -> tuple[ViewerTracks, ActionSink, list[Kind]]:
    sink, skipped = ActionSink(), list[Kind]()
    return ViewerTracks(sink, budget, on_skip=skipped.append, dedup=None), sink, skipped


def test_a_late_joiner_gets_init_and_the_group_since_the_keyframe_then_one_stream_per_group() -> None:
    fan = RoomFanout(Kind.VIDEO, STALE_MS)
    for msg in [media("i", 0, init=True), media("k1", 1, key=True), media("d2", 2), media("k3", 3, key=True),
                media("d4", 4)]:
        fan.offer(msg, T0)
    assert fan.catch_up(T0) is True
    tracks, sink, skipped = viewer()
    fan.add(tracks, T0)
    assert sink.take() == [("open", "video#1"), ("write", "video#1", "i"), ("write", "video#1", "k3"),
                           ("write", "video#1", "d4")]
    for msg in [media("d5", 5), media("k6", 6, key=True), media("d7", 7)]:
        assert fan.offer(msg, T0) is True
    assert sink.take() == [("write", "video#1", "d5"), ("end", "video#1"), ("open", "video#2"),
                           ("write", "video#2", "k6"), ("write", "video#2", "d7")]
    assert skipped == []


def test_a_slow_viewer_has_its_group_cancelled_and_resumes_at_the_next_keyframe() -> None:
    tracks, sink, skipped = viewer(budget=1000)
    for msg in [media("i", 0, init=True), media("k1", 1, key=True), media("d2", 2)]:
        tracks.offer(msg)
    sink.backlog["video#1"] = 1001  # the peer has not read the group: past the budget
    for msg in [media("d3", 3), media("d4", 4), media("k5", 5, key=True), media("d6", 6)]:
        tracks.offer(msg)
    assert sink.take() == [("open", "video#1"), ("write", "video#1", "i"), ("write", "video#1", "k1"),
                           ("write", "video#1", "d2"),
                           ("abort", "video#1"),  # d3 found the backlog: cancelled, not queued
                           ("open", "video#2"), ("write", "video#2", "k5"), ("write", "video#2", "d6")]
    assert skipped == [Kind.VIDEO, Kind.VIDEO]  # d3 and d4


def test_audio_behind_the_budget_is_dropped_and_chat_is_always_sent() -> None:
    tracks, sink, skipped = viewer(budget=100)
    tracks.offer(media("a1", 1, kind=Kind.AUDIO, key=True))
    tracks.offer(chat(1))
    sink.backlog = {"audio#1": 500, "chat#2": 500}
    tracks.offer(media("a2", 2, kind=Kind.AUDIO, key=True))
    tracks.offer(chat(2))
    assert sink.take() == [("open", "audio#1"), ("write", "audio#1", "a1"), ("open", "chat#2"),
                           ("write", "chat#2", "chat1"), ("write", "chat#2", "chat2")]
    assert skipped == [Kind.AUDIO]


def test_an_ended_stream_is_told_on_its_group_and_nobody_joins_it_afterwards() -> None:
    fan = RoomFanout(Kind.VIDEO, STALE_MS)
    fan.catch_up(T0)
    tracks, sink, _ = viewer()
    fan.add(tracks, T0)
    for msg in [media("i", 0, init=True), media("k1", 1, key=True), end()]:
        fan.offer(msg, T0)
    assert sink.take() == [("open", "video#1"), ("write", "video#1", "i"), ("write", "video#1", "k1"),
                           ("write", "video#1", "end"), ("end", "video#1")]
    late, late_sink, _ = viewer()
    fan.add(late, T0)
    assert late_sink.take() == []  # nothing to join: the stream is over
    fan.offer(media("i2", 0, init=True, stream="cam2"), T0 + 1)
    assert late_sink.take() == [("open", "video#1"), ("write", "video#1", "i2")]  # the next stream, from its init
    assert sink.take() == [("open", "video#2"), ("write", "video#2", "i2")]


def test_a_stale_join_point_waits_for_the_next_stream_and_repeats_go_to_nobody() -> None:
    fan = RoomFanout(Kind.VIDEO, STALE_MS)
    fan.offer(media("i", 0, init=True), T0)
    fan.offer(media("k1", 1, key=True), T0)
    later = T0 + STALE_MS + 1  # its publisher went quiet without an end of stream
    fan.catch_up(later)
    tracks, sink, _ = viewer()
    fan.add(tracks, later)
    assert sink.take() == []  # no frozen picture of a stream that is over
    assert fan.offer(media("k1", 1, key=True), later) is False  # an at-least-once repeat: dropped once
    assert sink.take() == []
    fan.offer(media("i2", 0, init=True, stream="cam2", at=later), later)
    fan.offer(media("k2", 1, key=True, stream="cam2", at=later), later)
    assert sink.take() == [("open", "video#1"), ("write", "video#1", "i2"), ("write", "video#1", "k2")]


def test_nothing_is_offered_before_the_reader_caught_up() -> None:
    fan = RoomFanout(Kind.CHAT, STALE_MS)
    tracks, sink, _ = viewer()
    fan.add(tracks, T0)
    assert fan.offer(chat(1), T0) is False
    assert sink.take() == []
    fan.catch_up(T0)
    fan.offer(chat(2), T0)
    fan.discard(tracks)
    fan.offer(chat(3), T0)
    assert sink.take() == [("open", "chat#1"), ("write", "chat#1", "chat1"), ("write", "chat#1", "chat2")]
