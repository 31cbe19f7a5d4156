"""ingress/egress.py policy without I/O: join points and slow-viewer skipping."""

from __future__ import annotations

from typing import Any

from ingress.egress import Item, JoinPoint, ViewerSink, ViewerTracks
from schemas import framing as f
from schemas.framing import Kind


class FakeSink(ViewerSink):
    def __init__(self) -> None:
        self.next_id = 0
        self.streams: dict[int, list[bytes]] = {}
        self.ended: list[int] = []
        self.aborted: list[int] = []
        self.backlog: dict[int, int] = {}

    def open_group(self, kind: Kind) -> int:
        self.next_id += 1
        self.streams[self.next_id] = []
        return self.next_id

    def write(self, handle: Any, data: bytes) -> None:
        self.streams[handle].append(f.parse(data).payload)  # type: ignore[union-attr]

    def end_group(self, handle: Any) -> None:
        self.ended.append(handle)

    def abort_group(self, handle: Any) -> None:
        self.aborted.append(handle)

    def queued(self, handle: Any) -> int:
        return self.backlog.get(handle, 0)


def seg(name: str, key: bool | None = None, init: bool = False, kind: Kind = Kind.VIDEO) -> Item:
    props = {"segment_type": "init" if init else "media"}
    if key is not None:
        props["keyframe"] = "1" if key else "0"
    return Item(kind, props, name.encode())


def test_join_point_keeps_init_and_group_since_last_keyframe() -> None:
    jp = JoinPoint(Kind.VIDEO)
    for item in [seg("i0", init=True), seg("k1", True), seg("d2", False), seg("k3", True), seg("d4", False)]:
        jp.remember(item)
    assert [i.payload for i in jp.snapshot()] == [b"i0", b"k3", b"d4"]
    jp.remember(seg("i5", init=True))
    assert [i.payload for i in jp.snapshot()] == [b"i5"]
    chat = JoinPoint(Kind.CHAT)
    for n in range(30):
        chat.remember(Item(Kind.CHAT, {}, b"%d" % n))
    assert [i.payload for i in chat.snapshot()] == [b"%d" % n for n in range(10, 30)]
    files = JoinPoint(Kind.FILE)
    files.remember(Item(Kind.FILE, {}, b"x"))
    assert files.snapshot() == []


def test_delta_before_any_keyframe_is_skipped() -> None:
    sink = FakeSink()
    skipped: list[Kind] = []
    tracks = ViewerTracks(sink, queue_budget=100, on_skip=skipped.append)
    tracks.offer(seg("d0", False))
    assert sink.streams == {} and skipped == [Kind.VIDEO]


def test_groups_each_get_a_stream_init_shares_with_first_keyframe() -> None:
    sink = FakeSink()
    tracks = ViewerTracks(sink, queue_budget=100)
    for item in [seg("init", init=True), seg("k1", True), seg("d2", False), seg("k3", True), seg("d4", False)]:
        tracks.offer(item)
    assert sink.streams == {1: [b"init", b"k1", b"d2"], 2: [b"k3", b"d4"]}
    assert sink.ended == [1]


def test_slow_viewer_skips_to_next_keyframe_instead_of_queuing() -> None:
    sink = FakeSink()
    skipped: list[Kind] = []
    tracks = ViewerTracks(sink, queue_budget=100, on_skip=skipped.append)
    tracks.offer(seg("k0", True))
    sink.backlog[1] = 500  # the viewer is not reading
    tracks.offer(seg("d1", False))
    tracks.offer(seg("d2", False))
    assert sink.aborted == [1] and skipped == [Kind.VIDEO, Kind.VIDEO]
    tracks.offer(seg("k3", True))
    tracks.offer(seg("d4", False))
    assert sink.streams[1] == [b"k0"] and sink.streams[2] == [b"k3", b"d4"]


def test_stale_group_is_aborted_when_the_next_keyframe_comes() -> None:
    sink = FakeSink()
    tracks = ViewerTracks(sink, queue_budget=100)
    tracks.offer(seg("k0", True))
    sink.backlog[1] = 500
    tracks.offer(seg("k1", True))
    assert sink.aborted == [1] and sink.streams[2] == [b"k1"]


def test_audio_dropped_when_behind_chat_never() -> None:
    sink = FakeSink()
    tracks = ViewerTracks(sink, queue_budget=100)
    tracks.offer(Item(Kind.AUDIO, {}, b"a0"))
    tracks.offer(Item(Kind.CHAT, {}, b"c0"))
    sink.backlog = {1: 500, 2: 500}
    tracks.offer(Item(Kind.AUDIO, {}, b"a1"))
    tracks.offer(Item(Kind.CHAT, {}, b"c1"))
    assert sink.streams == {1: [b"a0"], 2: [b"c0", b"c1"]}
    tracks.close()
    assert sorted(sink.ended) == [1, 2]


def test_fragments_without_keyframe_property_count_as_group_starts() -> None:
    # frag_keyframe fragments each start with a keyframe; chunk may omit the property.
    sink = FakeSink()
    tracks = ViewerTracks(sink, queue_budget=100)
    tracks.offer(seg("f0"))
    tracks.offer(seg("f1"))
    assert sink.streams == {1: [b"f0"], 2: [b"f1"]}
