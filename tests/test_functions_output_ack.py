"""functions/output_ack.py: inputs are acked exactly once, after every publish carrying them (all four functions)."""

from __future__ import annotations

import pulsar

from tests.fake_context import FakeContext, FakeMessageId
from tests.test_functions_media_support import DEAD_LETTER, RAW_VIDEO, function_module

output_ack = function_module("output_ack")


def test_ack_waits_for_seal_and_all_callbacks() -> None:
    ctx = FakeContext(auto_complete_publish=False)
    ctx.set_message(topic=RAW_VIDEO, message_id=FakeMessageId(entry=11))
    batch = output_ack.OutputBatch(ctx)
    batch.add_current_input()
    batch.publish("t", b"a", "bytes_serde.BytesSerDe", {})
    batch.publish("t", b"b", "bytes_serde.BytesSerDe", {})
    ctx.published[0].complete("Ok", FakeMessageId())
    ctx.published[1].complete(pulsar.Result.Ok, FakeMessageId())  # the real instance passes the enum
    assert ctx.acked == []  # not sealed yet: more publishes could still join
    batch.seal()
    assert ctx.acked == [(FakeMessageId(entry=11), RAW_VIDEO)]
    batch.seal()
    assert len(ctx.acked) == 1


def test_callbacks_after_seal_ack_once_at_the_last() -> None:
    ctx = FakeContext(auto_complete_publish=False)
    batch = output_ack.OutputBatch(ctx)
    batch.add_input(FakeMessageId(entry=1), RAW_VIDEO)
    batch.add_input(FakeMessageId(entry=2), RAW_VIDEO)
    for payload in (b"1", b"2", b"3"):
        batch.publish("t", payload, "bytes_serde.BytesSerDe", {})
    batch.seal()
    ctx.published[2].complete("Ok", None)
    ctx.published[0].complete("Ok", None)
    assert ctx.acked == []
    ctx.published[1].complete("Ok", None)
    assert [m.entry for m, _ in ctx.acked] == [1, 2]


def test_failed_publish_leaves_inputs_unacked_and_counts() -> None:
    ctx = FakeContext(auto_complete_publish=False)
    batch = output_ack.OutputBatch(ctx)
    batch.add_input(FakeMessageId(entry=5), RAW_VIDEO)
    batch.publish("t", b"x", "bytes_serde.BytesSerDe", {})
    batch.publish("t", b"y", "bytes_serde.BytesSerDe", {})
    batch.seal()
    ctx.published[0].complete(pulsar.Result.Timeout, None)
    ctx.published[1].complete("Ok", None)
    assert ctx.acked == []
    assert ctx.metrics[output_ack.METRIC_PUBLISH_FAILED] == [1]


def test_dead_letter_carries_reason_and_original_properties() -> None:
    ctx = FakeContext()
    ctx.set_message(topic=RAW_VIDEO, key="cam1", properties={"seq": "3", "room": "r"}, event_time=1234)
    output_ack.publish_dead_letter(ctx, DEAD_LETTER, "transcode", b"\x00junk", "decode_error: x", "bytes_serde.BytesSerDe")
    (out,) = ctx.published
    assert out.topic == DEAD_LETTER and out.payload == b"\x00junk" and out.key == "cam1"
    assert out.properties == {"seq": "3", "room": "r", "reason": "decode_error: x", "function": "transcode",
                              "source_topic": RAW_VIDEO}
    assert out.event_timestamp == 1234
    assert ctx.acked == [(ctx.current_message_id, RAW_VIDEO)]


def test_one_success_check_for_every_result_form() -> None:
    assert output_ack.publish_ok("Ok") and output_ack.publish_ok(pulsar.Result.Ok)
    assert output_ack.publish_ok("Result.Ok")
    assert not output_ack.publish_ok(pulsar.Result.Timeout) and not output_ack.publish_ok("ProducerQueueIsFull")
    assert not output_ack.publish_ok(None)


def test_publish_all_acks_after_the_last_output_and_at_once_without_outputs() -> None:
    ctx = FakeContext(auto_complete_publish=False)
    ctx.set_message(topic=RAW_VIDEO, message_id=FakeMessageId(entry=3))
    outputs = [output_ack.Output("a", b"1", {"k": "v"}, key="cam", event_time=7), output_ack.Output("b", b"2", {})]
    output_ack.publish_all(ctx, outputs, "route")
    assert [(p.topic, p.key, p.event_timestamp) for p in ctx.published] == [("a", "cam", 7), ("b", None, None)]
    ctx.published[1].complete("Ok", None)
    assert ctx.acked == []
    ctx.published[0].complete(pulsar.Result.Ok, None)
    assert ctx.acked == [(FakeMessageId(entry=3), RAW_VIDEO)]
    ctx.set_message(topic=RAW_VIDEO, message_id=FakeMessageId(entry=4))
    output_ack.publish_all(ctx, [], "route")
    assert ctx.acked[-1] == (FakeMessageId(entry=4), RAW_VIDEO)


def test_publish_all_failure_is_counted_under_the_function_label() -> None:
    ctx = FakeContext(auto_complete_publish=False)
    ctx.set_message(topic=RAW_VIDEO, message_id=FakeMessageId(entry=9))
    output_ack.publish_all(ctx, [output_ack.Output("a", b"1", {})], "moderate")
    ctx.published[0].complete(pulsar.Result.Timeout, None)
    assert ctx.acked == [] and ctx.metrics["moderate_publish_failed"] == [1]
