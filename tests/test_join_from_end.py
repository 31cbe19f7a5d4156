"""Late joiners start at the last keyframe without reading the room topic from its start."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pulsar

from clients.webtransport import open_webtransport
from ingress.join_from_end import JoinFinder, JoinSearch
from ingress.names import room_topic_url
from ingress.viewer import DeliveryDedup, Item, JoinPoint
from schemas import framing_codec as f
from schemas.framing_codec import Kind
from tests.ingress_support import ingress

NS = room_topic_url("public", "wtpulsar", "")  # route writes room topics into the rooms namespace


def props(stream: str, n: int | None, key: bool = False, init: bool = False, width: str = "640") -> dict[str, str]:
    out = {"stream": stream, "user": "pub", "rendition": "360p", "codec_string": "avc1.42e01e", "width": width,
           "height": "360", "segment_type": "init" if init else "media"}
    if n is not None:
        out.update(keyframe="1" if key else "0", first_seq=str(n), last_seq=str(n))
    return out


def write(producer: Any, items: list[tuple[dict[str, str], bytes]], gap: float = 0.0) -> None:
    for properties, payload in items:
        producer.send(payload, properties=properties)
        if gap:
            time.sleep(gap)


def stream_part(stream: str, first: int, count: int, gop: int = 20, width: str = "640"
                ) -> list[tuple[dict[str, str], bytes]]:
    return [(props(stream, n, key=n % gop == 0, width=width), b"%s-%d" % (stream.encode(), n))
            for n in range(first, first + count)]


def test_a_late_joiner_gets_init_and_last_group_without_reading_the_topic(broker, tmp_path) -> None:
    room = "r" + uuid.uuid4().hex[:10]
    topic = f"room-{room}-video-360p"
    client = pulsar.Client(broker.service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    try:
        producer = client.create_producer(NS + topic, batching_enabled=False)
        # an earlier stream that ended, then the current one: its init, a long past, a pause, a recent part
        write(producer, [(props("old", None, init=True), b"old-init")] + stream_part("old", 0, 150)
              + [({**props("old", None), "segment_type": "end"}, b"")])
        time.sleep(0.6)
        write(producer, [(props("cam", None, init=True), b"cam-init")] + stream_part("cam", 0, 300))
        time.sleep(1.2)
        write(producer, stream_part("cam", 300, 30), gap=0.01)  # keyframes at 300 and 320
        producer.close()
    finally:
        client.close()
    total = 1 + 150 + 1 + 1 + 300 + 30

    async def main() -> JoinSearch:
        async with ingress(tmp_path, broker_service_url=broker.service_url, join_window=20) as h:
            url = f"{h.wt_url}?token={h.issue_token(room, 'late', 'viewer')}&mode=view&kinds=video"
            async with open_webtransport(url) as c:
                def got(state: Any) -> list[bytes]:
                    return [r.payload for _, r in state.records if isinstance(r, f.Delivery)]

                await c.wait_for(lambda s: len(got(s)) >= 11, 30)
                await asyncio.sleep(0.2)
                assert got(c.state) == [b"cam-init"] + [b"cam-%d" % n for n in range(320, 330)]
                return h.app.egress.feeds[topic].search

    search = asyncio.run(asyncio.wait_for(main(), 60))
    assert not search.fallback
    assert search.read < total // 2, (search.read, total)


# ---- the finder alone, on a fake topic (publish times and ledgers chosen, counts exact) ---------------

class FakeMessage:
    def __init__(self, properties: dict[str, str], payload: bytes, at: float) -> None:
        self._properties, self._payload, self.at = properties, payload, at
        self.index, self.pos = 0, (0, 0)

    def properties(self) -> dict[str, str]:
        return self._properties

    def data(self) -> bytes:
        return self._payload

    def publish_timestamp(self) -> int:
        return int(self.at)


class FakeReader:
    def __init__(self, messages: list[FakeMessage], position: int) -> None:
        self.messages, self.position, self.closed = messages, position, False

    def read_next(self, timeout_millis: int | None = None) -> FakeMessage:
        msg = self.messages[self.position]
        self.position += 1
        return msg

    def has_message_available(self) -> bool:
        return self.position < len(self.messages)

    def seek(self, target: Any) -> None:  # by publish time, as Reader.seek(int)
        self.position = next((m.index for m in self.messages if m.at >= target), len(self.messages))

    def close(self) -> None:
        self.closed = True


class FakeTopic:
    """Messages in ledgers of ``per_ledger`` entries (ids 100, 101, ...), entries from 0 in each."""

    def __init__(self, messages: list[FakeMessage], per_ledger: int = 10**9) -> None:
        self.messages = messages
        for i, msg in enumerate(messages):
            msg.index, msg.pos = i, (100 + i // per_ledger, i % per_ledger)
        self.by_pos = {m.pos: m.index for m in messages}
        self.readers: list[FakeReader] = []

    def open(self, position: tuple[int, int] | None) -> FakeReader:
        self.readers.append(FakeReader(self.messages, 0 if position is None else self.by_pos[position]))
        return self.readers[-1]

    def position(self, msg: FakeMessage) -> tuple[int, int]:
        return msg.pos

    def item(self, msg: FakeMessage) -> Item:
        return Item(Kind.VIDEO, dict(msg.properties()), msg.data(), float(msg.publish_timestamp()))

    def latest(self) -> FakeReader:
        return FakeReader(self.messages, len(self.messages) - 1)


def hour_of_video(init_props: dict[str, str] | None = None) -> list[FakeMessage]:
    """One hour at 30 fps, a keyframe every 60 fragments, the init first; publish times in ms."""
    messages = [FakeMessage(init_props or props("cam", None, init=True), b"init", 0.0)]
    for n in range(3600 * 30):
        messages.append(FakeMessage(props("cam", n, key=n % 60 == 0), b"%d" % n, 1 + n * 1000 / 30))
    return messages


def resized_half_way() -> list[FakeMessage]:
    """The stream changed size half-way: the init to use is the second one, not the topic's first."""
    messages = hour_of_video()
    half = len(messages) // 2
    messages.insert(half, FakeMessage(props("cam", None, init=True, width="1280"), b"init-1280", messages[half].at))
    for msg in messages[half + 1:]:
        msg._properties = {**msg._properties, "width": "1280"}
    return messages


def finder(topic: FakeTopic) -> JoinFinder:
    return JoinFinder(Kind.VIDEO, topic, JoinPoint, DeliveryDedup, stale_ms=10_000)


def expected_join(messages: list[FakeMessage], init: bytes) -> list[bytes]:
    last_key = max(i for i, m in enumerate(messages) if m.properties().get("keyframe") == "1")
    return [init] + [m.data() for m in messages[last_key:]]


def test_an_hour_long_topic_costs_a_window_and_a_bisection_by_entry_not_a_full_read() -> None:
    messages = resized_half_way()
    topic = FakeTopic(messages)
    latest = topic.latest()
    result = finder(topic).find(latest, messages[-1].at + 100)
    assert [i.payload for i in result.items] == expected_join(messages, b"init-1280")
    assert not result.fallback and result.seeks == 0 and result.readers < 25
    assert result.read < 400, result.read  # of 108,002 messages
    assert latest.closed and result.reader is topic.readers[0] and not result.reader.has_message_available()
    assert all(r.closed for r in topic.readers[1:])  # probes closed; the window's reader tails the topic


def test_a_stream_older_than_the_ledger_is_bisected_by_publish_time() -> None:
    messages = resized_half_way()
    topic = FakeTopic(messages, per_ledger=20_000)  # the 1280 init is in ledger 102, the last ledger is 105
    result = finder(topic).find(topic.latest(), messages[-1].at + 100)
    assert [i.payload for i in result.items] == expected_join(messages, b"init-1280")
    assert not result.fallback and 0 < result.seeks < 30
    assert result.read < 600, result.read


def test_a_stream_that_is_over_or_quiet_gives_nothing_to_join_and_a_missing_init_reads_from_the_start() -> None:
    messages = hour_of_video()
    topic = FakeTopic(messages)
    assert finder(topic).find(topic.latest(), messages[-1].at + 60_000).items == []  # quiet for a minute
    ended = hour_of_video() + [FakeMessage({**props("cam", None), "segment_type": "end"}, b"", 3_600_100.0)]
    topic = FakeTopic(ended)
    assert finder(topic).find(topic.latest(), 3_600_200.0).items == []
    no_init = hour_of_video({**props("other", 0, key=True)})  # the init was lost: another stream's fragment first
    topic = FakeTopic(no_init)
    result = finder(topic).find(topic.latest(), no_init[-1].at + 100)
    assert result.fallback == "the init segment was not where the bisection led"
    # read from the start as before: no init anywhere, so the join point has none and is not live (JoinPoint.live)
    assert result.items and not any(item.is_init for item in result.items)
