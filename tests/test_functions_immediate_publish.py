"""functions/immediate_publish.py: the media and routing outputs leave through unbatched producers of
the instance's own client, with context.publish's message_conf, acks still only in the send callback,
and context.publish as the fallback where no client is available."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.fake_context import FakeContext, FakeMessageId
from tests.test_functions_chat_support import route
from tests.test_functions_media_support import DEAD_LETTER, SEGMENTS, function_module

immediate_publish = function_module("immediate_publish")
output_ack = function_module("output_ack")


@dataclass
class FakeProducer:
    topic: str
    options: dict[str, Any]
    sent: list[tuple[bytes, Any, dict[str, Any]]] = field(default_factory=list)

    def send_async(self, content: bytes, callback: Any, **conf: Any) -> None:
        self.sent.append((content, callback, conf))

    def complete(self, index: int, result: str = "Ok") -> None:
        self.sent[index][1](result, FakeMessageId(entry=100 + index))


@dataclass
class FakeClient:
    fail_topics: set[str] = field(default_factory=set)
    producers: dict[str, FakeProducer] = field(default_factory=dict)
    creations: int = 0

    def create_producer(self, topic: str, **options: Any) -> FakeProducer:
        self.creations += 1
        if topic in self.fail_topics:
            raise RuntimeError("AuthorizationError")
        producer = self.producers[topic] = FakeProducer(topic, options)
        return producer


@dataclass
class ClientContext(FakeContext):
    """FakeContext with `get_pulsar_client()`, like ContextImpl in Pulsar 4.0.8 and localrun's."""

    client: FakeClient | None = field(default_factory=FakeClient)

    def get_pulsar_client(self) -> FakeClient | None:
        return self.client

    @property
    def fake(self) -> FakeClient:
        """The client the test gave, for its assertions (None only in the fallback test)."""
        assert self.client is not None
        return self.client


@pytest.fixture(autouse=True)
def _fresh_cache() -> Any:
    yield
    immediate_publish._publishers.clear()


CONF = {"properties": {"stream": "cam", "seq": "3"}, "partition_key": "cam", "event_timestamp": 1_700_000_000_001}
OUT = "persistent://public/wtpulsar/encoded"


def test_output_batch_uses_an_unbatched_producer_of_the_instance_client() -> None:
    ctx = ClientContext(function_name="transcode", instance_id="1")
    batch = output_ack.OutputBatch(ctx)
    batch.add_current_input()
    batch.publish(OUT, b"frame", "bytes_serde.BytesSerDe", dict(CONF))
    batch.seal()
    assert ctx.published == []  # not through context.publish
    producer = ctx.fake.producers[OUT]
    assert producer.options["batching_enabled"] is False
    assert producer.options["block_if_queue_full"] is True
    assert producer.options["properties"] == {"application": "pulsar-function", "id": "public/wtpulsar/transcode",
                                              "instance_id": "1"}
    content, _callback, conf = producer.sent[0]
    assert content == b"frame" and conf == CONF


def test_message_conf_is_what_context_publish_would_get() -> None:
    plain, with_client = FakeContext(), ClientContext()
    for ctx in (plain, with_client):
        batch = output_ack.OutputBatch(ctx)
        batch.publish(OUT, b"x", "bytes_serde.BytesSerDe", dict(CONF))
    assert with_client.fake.producers[OUT].sent[0][2] == plain.published[0].message_conf


def test_ack_waits_for_the_send_callback() -> None:
    ctx = ClientContext()
    batch = output_ack.OutputBatch(ctx)
    batch.add_current_input()
    batch.publish(OUT, b"a", "bytes_serde.BytesSerDe", dict(CONF))
    batch.publish(SEGMENTS, b"b", "bytes_serde.BytesSerDe", dict(CONF))
    batch.seal()
    assert ctx.acked == []
    ctx.fake.producers[OUT].complete(0)
    assert ctx.acked == []
    ctx.fake.producers[SEGMENTS].complete(0)
    assert ctx.acked == [(ctx.current_message_id, ctx.current_topic)]


def test_failed_send_leaves_the_input_unacked() -> None:
    ctx = ClientContext()
    batch = output_ack.OutputBatch(ctx)
    batch.add_current_input()
    batch.publish(OUT, b"a", "bytes_serde.BytesSerDe", dict(CONF))
    batch.seal()
    ctx.fake.producers[OUT].complete(0, "Timeout")
    assert ctx.acked == []
    assert ctx.metrics[output_ack.METRIC_PUBLISH_FAILED] == [1]


def test_one_producer_per_topic_in_send_order() -> None:
    ctx = ClientContext()
    for i in range(5):
        immediate_publish.publish(ctx, OUT, bytes([i]), "bytes_serde.BytesSerDe", lambda *_: None, {})
    assert ctx.fake.creations == 1
    assert [c for c, _, _ in ctx.fake.producers[OUT].sent] == [bytes([i]) for i in range(5)]


@pytest.mark.parametrize("ctx", [FakeContext(), ClientContext(client=None)], ids=["no getter", "client None"])
def test_falls_back_to_context_publish_without_a_client(ctx: FakeContext) -> None:
    batch = output_ack.OutputBatch(ctx)
    batch.add_current_input()
    batch.publish(OUT, b"a", "bytes_serde.BytesSerDe", dict(CONF))
    batch.seal()
    assert [(p.topic, p.payload, p.message_conf) for p in ctx.published] == [(OUT, b"a", CONF)]
    assert ctx.acked == [(ctx.current_message_id, ctx.current_topic)]  # FakeContext completes at once


def test_a_topic_whose_producer_fails_stays_on_context_publish() -> None:
    ctx = ClientContext(client=FakeClient(fail_topics={OUT}))
    for i in range(3):  # never a second producer for the topic: order would be at risk
        assert immediate_publish.publish(ctx, OUT, bytes([i]), "bytes_serde.BytesSerDe", lambda *_: None, {}) is False
    assert ctx.fake.creations == 1
    assert [p.payload for p in ctx.published] == [b"\x00", b"\x01", b"\x02"]
    assert ctx.metrics[immediate_publish.METRIC_FALLBACK] == [1]
    assert immediate_publish.publish(ctx, SEGMENTS, b"s", "bytes_serde.BytesSerDe", lambda *_: None, {}) is True


@pytest.mark.parametrize("value", [False, "false", "0"])
def test_user_config_off_keeps_context_publish(value: Any) -> None:
    ctx = ClientContext(user_config={"immediate_publish": value})
    assert immediate_publish.publish(ctx, OUT, b"a", "bytes_serde.BytesSerDe", lambda *_: None, {}) is False
    assert ctx.fake.producers == {} and len(ctx.published) == 1


def test_dead_letter_goes_out_unbatched_and_acks_after_the_callback() -> None:
    ctx = ClientContext()
    ctx.set_message(key="cam", properties={"stream": "cam"}, event_time=5)
    output_ack.publish_dead_letter(ctx, DEAD_LETTER, "transcode", b"junk", "bad frame", "bytes_serde.BytesSerDe")
    producer = ctx.fake.producers[DEAD_LETTER]
    assert producer.sent[0][2]["properties"]["reason"] == "bad frame"
    assert producer.sent[0][2]["partition_key"] == "cam" and producer.sent[0][2]["event_timestamp"] == 5
    assert ctx.acked == []
    producer.complete(0)
    assert ctx.acked == [(ctx.current_message_id, ctx.current_topic)]


def test_route_fanout_goes_out_unbatched_and_acks_after_every_send() -> None:
    ns = "persistent://public/wtpulsar"
    ctx = ClientContext(input_topics=[f"{ns}/segments"], function_name="route", current_topic=f"{ns}/segments")
    fn = route.RouteFunction()
    props = {"kind": "video", "room": "lobby", "rendition": "360p", "stream": "cam", "user": "alice", "seq": "1"}
    ctx.set_message(topic=f"{ns}/segments", key="cam", properties=props, event_time=7)
    fn.process(b"\x00moof", ctx)
    assert ctx.published == []
    sends = [(p, i) for p in ctx.fake.producers.values() for i in range(len(p.sent))]
    assert sends and all(p.options["batching_enabled"] is False for p, _ in sends)
    for producer, index in sends:
        assert ctx.acked == []
        assert producer.sent[index][2]["partition_key"] == "cam"
        producer.complete(index)
    assert ctx.acked == [(ctx.current_message_id, f"{ns}/segments")]


def test_publish_all_failure_leaves_input_unacked() -> None:
    ctx = ClientContext()
    outs = [output_ack.Output(OUT, b"a", {"k": "v"}, key="cam"), output_ack.Output(SEGMENTS, b"b", {})]
    output_ack.publish_all(ctx, outs, "route")
    ctx.fake.producers[OUT].complete(0)
    ctx.fake.producers[SEGMENTS].complete(0, "ProducerQueueIsFull")
    assert ctx.acked == []
    assert ctx.metrics["route_publish_failed"] == [1]
