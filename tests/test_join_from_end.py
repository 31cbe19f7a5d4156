"""Late joiners start at the last keyframe without reading the room topic from its start."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pulsar

from ingress.egress import DeliveryDedup, Item, JoinPoint
from ingress.join_from_end import JoinFinder
from ingress.wt_client import open_webtransport
from schemas import framing as f
from schemas.framing import Kind
from tests.ingress_support import ingress

NS = "persistent://public/wtpulsar/"


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


def test_a_late_joiner_gets_init_and_last_group_without_reading_the_topic(broker, tmp_path) -> None:  # type: ignore[no-untyped-def]
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

    async def main() -> None:
        async with ingress(tmp_path, broker_service_url=broker.service_url, join_lookback=0.5) as h:
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


# ---- the finder alone, on a fake reader (publish times chosen, counts exact) -----------------------

class FakeMessage:
    def __init__(self, index: int, properties: dict[str, str], payload: bytes, at: float) -> None:
        self.index, self._properties, self._payload, self.at = index, properties, payload, at

    def properties(self) -> dict[str, str]:
        return self._properties

    def data(self) -> bytes:
        return self._payload

    def publish_timestamp(self) -> int:
        return int(self.at)


class FakeReader:
    """A reader over a list of messages; seek takes a publish time or MessageId.earliest."""

    def __init__(self, messages: list[FakeMessage], position: int) -> None:
        self.messages, self.position, self.closed = messages, position, False

    def read_next(self, timeout_millis: int | None = None) -> FakeMessage:
        msg = self.messages[self.position]
        self.position += 1
        return msg

    def has_message_available(self) -> bool:
        return self.position < len(self.messages)

    def seek(self, target: Any) -> None:
        if isinstance(target, int):
            self.position = next((m.index for m in self.messages if m.at >= target), len(self.messages))
        else:
            self.position = 0

    def close(self) -> None:
        self.closed = True


def to_item(msg: FakeMessage) -> Item:
    return Item(Kind.VIDEO, dict(msg.properties()), msg.data(), float(msg.publish_timestamp()))


def hour_of_video(init_props: dict[str, str] | None = None) -> list[FakeMessage]:
    """One hour at 30 fps, a keyframe every 60 fragments, the init first; publish times in ms."""
    messages = [FakeMessage(0, init_props or props("cam", None, init=True), b"init", 0.0)]
    for n in range(3600 * 30):
        messages.append(FakeMessage(len(messages), props("cam", n, key=n % 60 == 0), b"%d" % n, 1 + n * 1000 / 30))
    return messages


def finder(messages: list[FakeMessage]) -> tuple[JoinFinder, list[FakeReader]]:
    probes: list[FakeReader] = []

    def open_probe() -> FakeReader:
        probes.append(FakeReader(messages, 0))
        return probes[-1]

    return JoinFinder(Kind.VIDEO, to_item, open_probe, JoinPoint, DeliveryDedup, stale_ms=10_000), probes


def test_an_hour_long_topic_costs_a_window_and_a_bisection_not_a_full_read() -> None:
    # the stream changed size half-way: the init to use is the second one, not the topic's first
    messages = hour_of_video()
    half = len(messages) // 2
    second_init = FakeMessage(half, props("cam", None, init=True, width="1280"), b"init-1280", messages[half].at)
    messages.insert(half, second_init)
    for i, msg in enumerate(messages):
        msg.index = i
        if i > half:
            msg._properties = {**msg._properties, "width": "1280"}
    join, probes = finder(messages)
    now = messages[-1].at + 100
    result = join.find(FakeReader(messages, len(messages) - 1), now)
    last_key = max(i for i, m in enumerate(messages) if m.properties().get("keyframe") == "1")
    assert [i.payload for i in result.items] == [b"init-1280"] + [m.data() for m in messages[last_key:]]
    assert not result.fallback and probes and all(p.closed for p in probes)
    assert result.read < 500, result.read  # of 108,002 messages
    assert result.seeks < 30


def test_a_stream_that_is_over_or_quiet_gives_nothing_to_join_and_a_missing_init_reads_from_the_start() -> None:
    messages = hour_of_video()
    join, _ = finder(messages)
    assert join.find(FakeReader(messages, len(messages) - 1), messages[-1].at + 60_000).items == []  # quiet
    no_init = hour_of_video(props("cam", 0, key=True))  # the init segment was lost: the topic starts with a fragment
    for msg in no_init[:1]:
        msg._properties = {**msg._properties, "stream": "other"}
    join, _ = finder(no_init)
    result = join.find(FakeReader(no_init, len(no_init) - 1), no_init[-1].at + 100)
    assert result.fallback == "the init segment was not where the bisection led"
    # read from the start as before: no init anywhere, so the join point has none and is not live (JoinPoint.live)
    assert result.items and not any(item.is_init for item in result.items)
