"""ingress/viewer.py policy without I/O: join points and slow-viewer skipping (and egress.RoomFeed's
loop side, driven by hand)."""

from __future__ import annotations

import json
from typing import Any

from ingress.viewer import DeliveryDedup, Item, JoinPoint, ViewerSink, ViewerTracks
from schemas import framing_codec as f
from schemas.framing_codec import Kind


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
        record = f.parse(data)
        assert isinstance(record, f.Delivery), record
        self.streams[handle].append(record.payload)

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


# ---- duplicates from at-least-once delivery ----------------------------------------------------------
def frag(first: int, last: int, stream: str = "cam", user: str = "u1", rendition: str = "360p") -> Item:
    props = {"stream": stream, "user": user, "kind": "video", "rendition": rendition, "segment_type": "media",
             "first_seq": str(first), "last_seq": str(last), "keyframe": "1"}
    return Item(Kind.VIDEO, props, b"f%d-%d" % (first, last))


def chat_item(seq: int, msg_id: str | None, user: str = "u1") -> Item:
    body: dict[str, object] = {"text": f"m{seq}"}
    if msg_id is not None:
        body["msg_id"] = msg_id
    return Item(Kind.CHAT, {"stream": "chat", "user": user, "kind": "chat", "seq": str(seq)},
                json.dumps(body).encode())


def test_dedup_media_by_frame_seq_per_user_stream_and_rendition() -> None:
    dedup = DeliveryDedup()
    init = Item(Kind.VIDEO, {"stream": "cam", "user": "u1", "rendition": "360p", "segment_type": "init"}, b"i")
    got = [dedup.accept(i.kind, i.properties, i.payload) for i in [
        frag(0, 2), frag(0, 2), frag(3, 3), frag(1, 2),  # repeat, new, stale part of the past
        frag(0, 2, rendition="720p"), frag(0, 2, user="u2"), frag(0, 2, stream="cam2"),  # own tracks
        init, init,  # init segments are never dropped
        frag(2, 5),  # chunk restarted with other boundaries: holds new frames, delivered
    ]]
    assert got == [True, False, True, False, True, True, True, True, True, True]
    assert dedup.dropped == 2


def test_dedup_chat_by_msg_id_across_users_and_page_reloads() -> None:
    dedup = DeliveryDedup()
    items = [chat_item(0, "a.1.0"), chat_item(0, "b.1.0", user="u2"),  # same stream id "chat", same seq: both
             chat_item(0, "a.1.0"),  # the resend
             chat_item(0, "a.2.0"),  # the same user after a page reload: seq 0 again, new msg_id
             chat_item(1, None), chat_item(1, None), chat_item(2, None)]  # no msg_id: by seq
    assert [dedup.accept(i.kind, i.properties, i.payload) for i in items] == [True, True, False, True, True, False, True]


def test_dedup_memory_is_bounded_and_unusable_input_is_delivered() -> None:
    from ingress import viewer as egress

    dedup = DeliveryDedup()
    for seq in range(egress.DEDUP_CHAT_WINDOW + 10):
        assert dedup.accept(Kind.CHAT, {"stream": "chat", "user": "u", "seq": str(seq)}, b"not json")
    assert len(dedup.chat_seen[("u", "chat")]) == egress.DEDUP_CHAT_WINDOW
    for n in range(egress.DEDUP_TRACKS + 5):
        dedup.accept(Kind.AUDIO, {"stream": f"mic{n}", "seq": "0"})
    assert len(dedup.highest) == egress.DEDUP_TRACKS
    assert dedup.accept(Kind.AUDIO, {"stream": "mic", "seq": "x"}) and dedup.accept(Kind.AUDIO, {"stream": "mic", "seq": "x"})
    assert dedup.accept(Kind.CHAT, {"stream": "chat"}, b"{}")  # no msg_id, no seq: delivered, not lost


def test_viewer_gets_a_redelivered_group_once() -> None:
    sink = FakeSink()
    viewer = ViewerTracks(sink, queue_budget=1 << 20)
    for item in (frag(0, 1), frag(2, 3), frag(0, 1), frag(2, 3), frag(4, 5)):
        viewer.offer(item)
    assert [p for s in sink.streams.values() for p in s] == [b"f0-1", b"f2-3", b"f4-5"]


# ---- ends of stream and streams that are over (no frozen old picture, viewers told) ----------


def sseg(name: str, stream: str = "cam1", key: bool | None = None, init: bool = False, at: float = 0.0,
         kind: Kind = Kind.VIDEO) -> Item:
    props = {"segment_type": "init" if init else "media", "stream": stream}
    if key is not None:
        props["keyframe"] = "1" if key else "0"
    return Item(kind, props, name.encode(), at)


def send_end(stream: str = "cam1", kind: Kind = Kind.VIDEO, at: float = 0.0) -> Item:
    return Item(kind, {"segment_type": "end", "stream": stream, "end_of_stream": "1", "reason": "left"}, b"end", at)


def test_an_ended_stream_leaves_nothing_to_join() -> None:
    jp = JoinPoint(Kind.VIDEO)
    for item in [sseg("i", init=True, at=1000), sseg("k", key=True, at=1001), sseg("d", key=False, at=1002)]:
        jp.remember(item)
    assert jp.live(now_ms=1500, stale_ms=10_000)
    jp.remember(send_end("other"))  # another stream's end changes nothing
    assert [i.payload for i in jp.snapshot()] == [b"i", b"k", b"d"]
    jp.remember(send_end("cam1", at=1003))
    assert jp.snapshot() == [] and not jp.live(now_ms=1500, stale_ms=10_000)
    jp.remember(sseg("i2", stream="cam2", init=True, at=2000))  # the next publisher
    assert jp.live(now_ms=2100, stale_ms=10_000) and jp.stream == "cam2"


def test_a_stream_that_went_quiet_without_an_end_is_not_live() -> None:
    jp = JoinPoint(Kind.VIDEO)
    jp.remember(sseg("i", init=True, at=1000))
    jp.remember(sseg("k", key=True, at=1000))
    assert jp.live(now_ms=10_999, stale_ms=10_000)
    assert not jp.live(now_ms=11_000 + 193_788, stale_ms=10_000)  # the "playing", 193,788 ms old
    assert JoinPoint(Kind.CHAT).live(now_ms=1e15, stale_ms=1)  # chat history is always offered


def test_viewer_is_told_the_stream_ended_and_the_next_one_starts_fresh() -> None:
    sink = FakeSink()
    tracks = ViewerTracks(sink, queue_budget=100)
    for item in [sseg("i", init=True), sseg("k1", key=True), sseg("d2", key=False)]:
        tracks.offer(item)
    tracks.offer(send_end("somebody-else"))  # not a stream this viewer was sent
    tracks.offer(send_end("cam1"))
    assert sink.streams == {1: [b"i", b"k1", b"d2", b"end"]} and sink.ended == [1]
    tracks.offer(sseg("late-delta", key=False))  # nothing of the old stream after its end
    tracks.offer(sseg("i2", stream="cam2", init=True))
    tracks.offer(sseg("k2", stream="cam2", key=True))
    assert sink.streams[2] == [b"i2", b"k2"]


def test_audio_end_goes_on_the_audio_stream() -> None:
    sink = FakeSink()
    tracks = ViewerTracks(sink, queue_budget=100)
    tracks.offer(sseg("ai", stream="mic1", init=True, kind=Kind.AUDIO))
    tracks.offer(sseg("a1", stream="mic1", kind=Kind.AUDIO))
    tracks.offer(send_end("mic1", Kind.AUDIO))
    assert sink.streams == {1: [b"ai", b"a1", b"end"]}


class FakeHub:
    stale_after = 10.0

    def flush(self) -> None:
        pass

    def flush_counts(self) -> None:
        pass


def test_room_feed_primes_a_viewer_who_came_to_an_empty_room_when_a_stream_starts() -> None:
    import time

    from ingress.egress import RoomFeed

    now_ms = time.time() * 1000
    feed = RoomFeed(FakeHub(), "room-r-video-360p", Kind.VIDEO)  # type: ignore[arg-type]  # EgressHub stand-in
    for item in [sseg("old-i", "cam0", init=True, at=now_ms - 300_000), sseg("old-k", "cam0", key=True,
                                                                            at=now_ms - 300_000)]:
        feed._on_item(item)  # minutes-old history, no end: its publisher died
    feed._caught_up()
    sink = FakeSink()
    viewer = ViewerTracks(sink, queue_budget=100)
    feed.add(viewer)
    assert sink.streams == {}  # no frozen frame of the old stream
    feed._on_item(sseg("new-i", "cam1", init=True, at=now_ms))
    feed._on_item(sseg("new-k", "cam1", key=True, at=now_ms))
    assert sink.streams == {1: [b"new-i", b"new-k"]}  # played from the new stream's start, at once
    feed._on_item(send_end("cam1", at=now_ms))
    assert sink.streams[1][-1] == b"end"
    other = FakeSink()
    feed.add(ViewerTracks(other, queue_budget=100))
    assert other.streams == {}  # joined after the end: nothing to replay


def test_deliveries_and_skips_reach_the_metrics_once_per_feed_pass() -> None:
    import time

    from ingress.egress import KindCounts, RoomFeed
    from ingress.metrics import IngressMetrics

    metrics = IngressMetrics()

    def value(name: str, kind: str) -> float | None:
        return metrics.registry.get_sample_value(name, {"kind": kind})

    class CountingHub(FakeHub):
        delivered = KindCounts(lambda k: metrics.delivered.labels(k))
        skipped = KindCounts(lambda k: metrics.skipped.labels(k))

        def flush_counts(self) -> None:
            self.delivered.flush()
            self.skipped.flush()

    hub = CountingHub()
    now_ms = time.time() * 1000
    feed = RoomFeed(hub, "room-r-video-360p", Kind.VIDEO)  # type: ignore[arg-type]  # EgressHub stand-in
    feed._caught_up()
    sinks = [FakeSink() for _ in range(3)]
    for sink in sinks:
        feed.add(ViewerTracks(sink, queue_budget=100, on_deliver=hub.delivered.count, on_skip=hub.skipped.count))
    feed._on_item(sseg("i", "cam", init=True, at=now_ms))
    assert hub.delivered.pending == {} and value("wtpulsar_egress_delivered_total", "video") == 3
    sinks[0].backlog[1] = 1000  # the first viewer falls behind: its next delta is skipped
    feed._on_item(sseg("k", "cam", key=True, at=now_ms))
    feed._on_item(sseg("d", "cam", key=False, at=now_ms))
    assert value("wtpulsar_egress_delivered_total", "video") == 3 + 3 + 2
    assert value("wtpulsar_egress_skipped_total", "video") == 1


def test_kind_counts_add_to_each_kinds_counter_once_per_flush() -> None:
    from ingress.egress import KindCounts

    children: dict[str, list[float]] = {}

    class Child:
        def __init__(self, label: str) -> None:
            self.label = label

        def inc(self, n: float = 1) -> None:
            children.setdefault(self.label, []).append(n)

    counts = KindCounts(Child)
    for kind in (Kind.VIDEO, Kind.AUDIO, Kind.VIDEO, Kind.VIDEO):
        counts.count(kind)
    assert children == {}
    counts.flush()
    counts.flush()  # nothing new: no increments
    counts.count(Kind.CHAT)
    counts.flush()
    assert children == {"video": [3], "audio": [1], "chat": [1]}
