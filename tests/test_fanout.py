"""Fan-out correctness: one room's output to many viewers of one ingress process.

Sans-I/O first (RoomFeed and ViewerTracks with fake sinks), then through the real servers: many
WebTransport and WebSocket viewers of one room on one ingress, fed from the broker's room topic.
Speeds are not measured here (bench/fanout.py does that).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aiohttp
import pulsar

from clients.webtransport import open_webtransport
from ingress.egress import RoomFeed
from ingress.names import room_topic_url
from ingress.viewer import Item, ViewerSink, ViewerTracks
from schemas import framing_codec as f
from schemas.framing_codec import Kind
from tests.ingress_support import ingress

NS = room_topic_url("public", "wtpulsar", "")  # route writes room topics into the rooms namespace


class RecordingSink(ViewerSink):
    """Keeps what was written, per group stream, as the exact bytes objects handed over."""

    def __init__(self) -> None:
        self.groups: list[list[bytes]] = []
        self.backlog = 0  # what queued() answers for every handle
        self.aborted: list[int] = []

    def open_group(self, kind: Kind) -> int:
        self.groups.append([])
        return len(self.groups) - 1

    def write(self, handle: Any, data: bytes) -> None:
        self.groups[handle].append(data)

    def abort_group(self, handle: Any) -> None:
        self.aborted.append(handle)

    def queued(self, handle: Any) -> int:
        return self.backlog

    def payloads(self) -> list[bytes]:
        out = []
        for group in self.groups:
            for data in group:
                record = f.parse(data)
                assert isinstance(record, f.Delivery)
                out.append(record.payload)
        return out


class Hub:
    stale_after = 10.0

    def flush_counts(self) -> None:
        """EgressHub adds what the feed counted to its metrics here; this stand-in has none."""


def fragment(n: int, key: bool, stream: str = "cam", at: float | None = None) -> Item:
    props = {"segment_type": "media", "stream": stream, "user": "pub", "rendition": "360p",
             "keyframe": "1" if key else "0", "first_seq": str(n), "last_seq": str(n)}
    return Item(Kind.VIDEO, props, b"frag%d" % n, time.time() * 1000.0 if at is None else at)


def init(stream: str = "cam") -> Item:
    return Item(Kind.VIDEO, {"segment_type": "init", "stream": stream, "user": "pub", "rendition": "360p"},
                b"init", time.time() * 1000.0)


def live_feed() -> RoomFeed:
    feed = RoomFeed(Hub(), "room-r-video-360p", Kind.VIDEO)  # type: ignore[arg-type]  # EgressHub stand-in
    feed._caught_up()
    return feed


def test_many_viewers_get_every_frame_once_in_order_from_one_record() -> None:
    feed = live_feed()
    sinks = [RecordingSink() for _ in range(200)]
    for sink in sinks:
        feed.add(ViewerTracks(sink, queue_budget=1 << 20, dedup=None))
    items = [init()] + [fragment(n, key=n % 30 == 0) for n in range(90)]
    for item in items:
        feed._on_item(item)
    feed._on_item(fragment(40, key=False))  # at-least-once repeat: dropped once, for everyone
    expected = [b"init"] + [b"frag%d" % n for n in range(90)]
    assert all(sink.payloads() == expected for sink in sinks)
    # framed once: every viewer was handed the very same bytes object for a message
    for i in range(len(expected)):
        first = [data for group in sinks[0].groups for data in group][i]
        assert all([data for group in sink.groups for data in group][i] is first for sink in sinks[1:])
    assert [len(group) for group in sinks[0].groups] == [31, 30, 30]  # one group stream per keyframe


def test_a_slow_viewer_skips_to_the_next_keyframe_and_the_others_do_not_wait() -> None:
    feed = live_feed()
    fast = [RecordingSink() for _ in range(20)]
    slow = RecordingSink()
    skipped: list[Kind] = []
    for sink in fast:
        feed.add(ViewerTracks(sink, queue_budget=10_000, dedup=None))
    feed.add(ViewerTracks(slow, queue_budget=10_000, on_skip=skipped.append, dedup=None))
    feed._on_item(init())
    for n in range(10):
        feed._on_item(fragment(n, key=n == 0))
    slow.backlog = 50_000  # stops reading mid-group
    for n in range(10, 20):
        feed._on_item(fragment(n, key=False))
    slow.backlog = 0  # caught up again: resumes at the next keyframe, not mid-group
    for n in range(20, 30):
        feed._on_item(fragment(n, key=n == 20))
    everything = [b"init"] + [b"frag%d" % n for n in range(30)]
    assert all(sink.payloads() == everything for sink in fast)
    assert slow.payloads() == [b"init"] + [b"frag%d" % n for n in range(10)] + [b"frag%d" % n for n in range(20, 30)]
    assert slow.aborted == [0] and len(skipped) == 10  # the group was cancelled, 10 fragments skipped


def test_a_late_joiner_among_many_starts_at_init_and_last_keyframe() -> None:
    feed = live_feed()
    early = RecordingSink()
    feed.add(ViewerTracks(early, queue_budget=1 << 20, dedup=None))
    feed._on_item(init())
    for n in range(45):
        feed._on_item(fragment(n, key=n % 30 == 0))
    late = RecordingSink()
    feed.add(ViewerTracks(late, queue_budget=1 << 20, dedup=None))
    feed._on_item(fragment(45, key=False))
    assert late.payloads() == [b"init"] + [b"frag%d" % n for n in range(30, 46)]
    assert early.payloads() == [b"init"] + [b"frag%d" % n for n in range(46)]


# ---- through the servers -----------------------------------------------------------------------

def produce(service_url: str, short: str, items: list[Item]) -> None:
    client = pulsar.Client(service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    try:
        producer = client.create_producer(NS + short, batching_enabled=False)
        for item in items:
            producer.send(item.payload, properties=item.properties)
        producer.close()
    finally:
        client.close()


def test_many_webtransport_and_websocket_viewers_of_one_process_get_every_frame_once_in_order(
        broker, tmp_path) -> None:
    room = "r" + uuid.uuid4().hex[:10]
    topic = f"room-{room}-video-360p"
    wt_viewers, ws_viewers, frames = 12, 12, 60
    stream = [init()] + [fragment(n, key=n % 20 == 0) for n in range(frames)]
    expected = [b"init"] + [b"frag%d" % n for n in range(frames)]

    async def wt_viewer(h: Any, n: int, ready: asyncio.Event, started: list[int]) -> list[bytes]:
        token = h.issue_token(room, f"wt{n}", "viewer")
        async with open_webtransport(f"{h.wt_url}?token={token}&mode=view&kinds=video", timeout=30) as c:
            assert c.state.status == 200
            started.append(n)
            await ready.wait()

            def got(state: Any) -> list[bytes]:
                # one uni stream per group (keyframe to keyframe), opened in order: QUIC orders bytes within
                # a stream, not across streams, so the viewer reads the groups in stream id order
                records = [(sid, r.payload) for sid, r in state.records if isinstance(r, f.Delivery)]
                return [payload for _, payload in sorted(records, key=lambda rec: rec[0])]

            await c.wait_for(lambda s: len(got(s)) >= len(expected), 60)
            await asyncio.sleep(0.2)  # anything repeated would arrive now
            return got(c.state)

    async def ws_viewer(h: Any, n: int, ready: asyncio.Event, started: list[int]) -> list[bytes]:
        token = h.issue_token(room, f"ws{n}", "viewer")
        async with aiohttp.ClientSession() as http, http.ws_connect(
                f"{h.http_url}/ws?token={token}&mode=view&kinds=video") as ws:
            started.append(n)
            await ready.wait()
            out: list[bytes] = []
            while len(out) < len(expected):
                msg = await ws.receive(timeout=60)
                record = f.parse(msg.data)
                assert isinstance(record, f.Delivery)
                out.append(record.payload)
            try:
                extra = f.parse((await ws.receive(timeout=0.2)).data)
                assert isinstance(extra, f.Delivery), extra
                out.append(extra.payload)
            except TimeoutError:
                pass
            return out

    async def main() -> None:
        async with ingress(tmp_path, broker_service_url=broker.service_url, sessions_per_address=64) as h:
            ready = asyncio.Event()
            started: list[int] = []
            tasks = [asyncio.create_task(wt_viewer(h, n, ready, started)) for n in range(wt_viewers)]
            tasks += [asyncio.create_task(ws_viewer(h, n, ready, started)) for n in range(ws_viewers)]
            deadline = time.monotonic() + 60
            while (len(started) < wt_viewers + ws_viewers or h.app.egress.feeds.get(topic) is None
                   or not h.app.egress.feeds[topic].fanout.caught_up) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert len(h.app.egress.feeds[topic].fanout.viewers) == wt_viewers + ws_viewers  # one feed, all of them
            ready.set()
            await asyncio.to_thread(produce, broker.service_url, topic, stream)
            results = await asyncio.gather(*tasks)
            assert all(got == expected for got in results), [len(got) for got in results]

    asyncio.run(asyncio.wait_for(main(), 120))


def test_prebuilt_websocket_frames_have_the_rfc_6455_header_for_every_length() -> None:
    import struct

    from ingress.ws_frames import binary_frame

    for size, header in ((0, b"\x82\x00"), (125, b"\x82\x7d"), (126, b"\x82\x7e\x00\x7e"),
                         (65535, b"\x82\x7e\xff\xff"), (65536, b"\x82\x7f" + struct.pack("!Q", 65536))):
        payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
        frame = binary_frame(payload)
        assert frame == header + payload, size
