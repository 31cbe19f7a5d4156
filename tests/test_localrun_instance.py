"""The instance's processing loop with in-memory fakes: every row of the ack table
(docs/pulsar-functions.md §2.2), failures → nack (§2.3), the output message (§2.4), log topic (§2.5)."""

from __future__ import annotations

import base64
import logging
from typing import Any

import pulsar
import pytest

from localrun.config import FunctionSpec, InputSpec
from localrun.context import ContextImpl
from localrun.instance import Instance, LogTopicHandler, StreamToLogger
from localrun.loader import UserFunction, load_serde
from localrun.state import NullState
from schemas.function_config import Guarantee
from tests.localrun_fakes import Client, Consumer, Msg, MsgId

IN = "persistent://public/default/in"
OUT = "persistent://public/default/out"


class Fn:
    def __init__(self, result=None, error: Exception | None = None) -> None:
        self.result = result
        self.error = error
        self.calls: list[object] = []

    def process(self, value, context):
        self.calls.append(value)
        if self.error is not None:
            raise self.error
        return self.result


def make(guarantee: Guarantee = "ATLEAST_ONCE", auto_ack: bool = True, output: str = OUT, fn: Fn | None = None,
         complete: bool = True, result=pulsar.Result.Ok, serde: str = "", log_topic: str = ""):
    spec = FunctionSpec(tenant="public", namespace="default", name="f", class_name="m.C", py="/m.py",
                        inputs={IN: InputSpec(serde_class_name=serde)}, output=output,
                        processing_guarantees=guarantee, auto_ack=auto_ack, log_topic=log_topic)
    inst = Instance(spec, "0", "pulsar://unused", metrics_port=None)
    inst.client = Client(complete=complete, result=result)
    consumer = Consumer()
    inst.consumers = {IN: consumer}
    inst.function = UserFunction(fn or Fn(), True)
    inst.context = ContextImpl(spec, "0", inst.client, inst.consumers, NullState(), inst.stats)
    if log_topic:
        inst.log_producer = inst.client.create_producer(log_topic)
        inst.log_handler = LogTopicHandler(inst.log_producer)
    return inst, consumer


def deliver(inst: Instance, consumer: Consumer, payload: bytes = b"hello", **msg_kwargs) -> Msg:
    """What the listener thread does, then what the execution thread does."""
    msg = Msg(payload, topic=IN, **msg_kwargs)
    inst._on_message(load_serde(inst.spec.inputs[IN].serde_class_name), False, consumer, msg)
    item = inst.queue.get_nowait()
    inst.handle(item)
    return msg


# --- the ack table ---

def test_atmost_once_acks_before_process_and_a_failure_loses_the_message() -> None:
    fn = Fn(error=RuntimeError("boom"))
    inst, consumer = make("ATMOST_ONCE", fn=fn)
    msg = Msg(b"x", topic=IN)
    inst._on_message(load_serde(""), False, consumer, msg)
    assert consumer.events == [("ack", msg)] and fn.calls == []  # acked before process()
    inst.handle(inst.queue.get_nowait())
    assert consumer.kinds == ["ack", "nack"]  # the nack comes too late to matter
    assert inst.stats.total.user_exceptions == 1


def test_atmost_once_with_output_does_not_ack_twice() -> None:
    inst, consumer = make("ATMOST_ONCE", fn=Fn(result="r"))
    deliver(inst, consumer)
    assert consumer.kinds == ["ack"]
    assert inst.client.producers[OUT].sent[0].payload == b"r"


def test_atleast_once_acks_only_after_the_output_send_succeeds() -> None:
    inst, consumer = make(fn=Fn(result="r"), complete=False)
    msg = deliver(inst, consumer)
    producer = inst.client.producers[OUT]
    assert len(producer.sent) == 1 and consumer.events == []  # not yet: the send is in flight
    producer.complete_all(pulsar.Result.Ok)
    assert consumer.events == [("ack", msg)]
    assert inst.stats.total.processed == 1


def test_atleast_once_acks_right_away_when_nothing_is_returned() -> None:
    inst, consumer = make(fn=Fn(result=None))
    msg = deliver(inst, consumer)
    assert consumer.events == [("ack", msg)]
    assert OUT not in inst.client.producers  # the output producer is created lazily


def test_atleast_once_without_output_topic_drops_the_value_and_acks() -> None:
    inst, consumer = make(fn=Fn(result="dropped"), output="")
    msg = deliver(inst, consumer)
    assert consumer.events == [("ack", msg)] and inst.client.producers == {}


def test_atleast_once_failed_send_nacks_and_counts_a_system_exception() -> None:
    inst, consumer = make(fn=Fn(result="r"), result=pulsar.Result.Timeout)
    msg = deliver(inst, consumer)
    assert consumer.events == [("nack", msg)]
    assert inst.stats.total.system_exceptions == 1
    assert "Failed to publish to topic" in inst.stats.latest_system_exceptions[0].message


@pytest.mark.parametrize("result", ["r", None])
def test_atleast_once_without_auto_ack_never_acks(result) -> None:
    inst, consumer = make(auto_ack=False, fn=Fn(result=result))
    deliver(inst, consumer)
    assert consumer.events == []


@pytest.mark.parametrize("auto_ack", [True, False])
@pytest.mark.parametrize("result", ["r", None])
def test_manual_never_acks(auto_ack: bool, result) -> None:
    inst, consumer = make("MANUAL", auto_ack=auto_ack, fn=Fn(result=result))
    deliver(inst, consumer)
    assert consumer.events == []
    assert inst.stats.total.processed == 1


def test_manual_ack_through_the_context() -> None:
    class AckingFn:
        def process(self, value, context):
            context.ack(context.get_message_id(), context.get_current_message_topic_name())

    inst, consumer = make("MANUAL")
    inst.function = UserFunction(AckingFn(), True)
    msg = deliver(inst, consumer)
    assert consumer.events == [("ack", msg.msgid)]


# --- failures (docs/pulsar-functions.md §1.2, §2.3) ---

def test_user_exception_is_nacked_and_not_counted_as_processed() -> None:
    inst, consumer = make(fn=Fn(error=ValueError("bad input")))
    msg = deliver(inst, consumer)
    assert consumer.events == [("nack", msg)]
    assert inst.stats.total.user_exceptions == 1 and inst.stats.total.processed == 0
    assert inst.stats.total.latency_count == 0
    assert inst.stats.latest_user_exceptions[0].message == "bad input"


def test_unserializable_result_is_a_system_exception_and_a_nack() -> None:
    inst, consumer = make(fn=Fn(result=True))  # IdentitySerDe refuses bool
    msg = deliver(inst, consumer)
    assert consumer.events == [("nack", msg)]
    assert inst.stats.total.system_exceptions == 1 and inst.stats.total.processed == 0


def test_input_deserialization_failure_is_a_system_exception_and_a_nack() -> None:
    fn = Fn(result="r")
    inst, consumer = make(fn=fn, serde="serde.PickleSerDe")
    msg = deliver(inst, consumer, payload=b"not a pickle")
    assert consumer.events == [("nack", msg)] and fn.calls == []
    assert inst.stats.total.system_exceptions == 1 and inst.stats.total.received == 1


def test_identity_serde_input_conversion_reaches_process() -> None:
    fn = Fn(result=None)
    inst, consumer = make(fn=fn)
    for payload in (b"42", b" 7 ", b"1.5", b"text", b"\xff"):
        deliver(inst, consumer, payload=payload)
    assert fn.calls == [42, 7, 1.5, "text", b"\xff"]


# --- the output message (docs/pulsar-functions.md §2.4) ---

def test_output_carries_only_the_two_pfn_properties() -> None:
    inst, consumer = make(fn=Fn(result=12))
    msg = deliver(inst, consumer, key="k", event_time=5, props={"a": "b"}, msgid=MsgId(1, 2))
    sent = inst.client.producers[OUT].sent[0]
    assert sent.payload == b"12"
    assert sent.kwargs == {"properties": {
        "__pfn_input_topic__": IN,
        "__pfn_input_msg_id__": base64.urlsafe_b64encode(msg.msgid.serialize()).decode(),
    }}


def test_output_producer_settings() -> None:
    inst, consumer = make(fn=Fn(result="r"))
    deliver(inst, consumer)
    settings = inst.client.producers[OUT].settings
    assert settings["batching_enabled"] and settings["batching_max_publish_delay_ms"] == 10
    assert settings["block_if_queue_full"] and settings["send_timeout_millis"] == 0
    assert settings["compression_type"] == pulsar.CompressionType.LZ4
    assert settings["batching_type"] == pulsar.BatchingType.Default
    assert settings["properties"] == {"application": "pulsar-function", "id": "public/default/f", "instance_id": "0"}


# --- logging (docs/pulsar-functions.md §2.5) ---

def test_log_lines_during_process_go_only_to_the_log_topic(caplog: pytest.LogCaptureFixture) -> None:
    class Logs:
        def process(self, value, context):
            context.get_logger().warning("inside %s", value)

    inst, consumer = make(log_topic="persistent://public/default/logs")
    inst.function = UserFunction(Logs(), True)
    root = logging.getLogger()
    before = list(root.handlers)
    deliver(inst, consumer, payload=b"abc")
    logs = inst.client.producers["persistent://public/default/logs"].sent
    assert len(logs) == 1
    text = logs[0].payload.decode()
    assert text.endswith("[WARNING]: inside abc") and text.startswith("[")
    assert root.handlers == before  # restored after process()
    assert "inside abc" not in caplog.text  # the normal handlers did not see it


def test_print_goes_to_the_logger() -> None:
    logger = logging.getLogger("print-capture-test")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger.addHandler(Keep())
    logger.propagate = False
    logger.setLevel(logging.INFO)
    stream = StreamToLogger(logger, logging.INFO)
    print("hello", "world", file=stream)
    stream.write("partial")
    stream.flush()
    assert [(r.levelno, r.getMessage()) for r in records] == [(logging.INFO, "hello world"), (logging.INFO, "partial")]


def test_stopping_listener_leaves_the_message_unacked() -> None:
    inst, consumer = make("ATMOST_ONCE")
    inst.queue.put_nowait(object())  # the Queue(1) is full
    inst.stopping = True
    inst._on_message(load_serde(""), False, consumer, Msg(b"x"))
    assert consumer.events == []


# --- the single-consumer receive path and consumer grouping ---

class ReceivingConsumer(Consumer):
    def __init__(self, messages: list[Msg], inst: Instance) -> None:
        super().__init__()
        self.pending = list(messages)
        self.inst = inst

    def receive(self, timeout_millis: int | None = None) -> Msg:
        if not self.pending:
            self.inst.stopping = True
            raise pulsar.Timeout()
        return self.pending.pop(0)


def test_single_consumer_path_processes_in_order_and_acks_first_for_atmost_once() -> None:
    fn = Fn(result=None)
    inst, _ = make("ATMOST_ONCE", fn=fn)
    msgs = [Msg(b"1"), Msg(b"2"), Msg(b"3")]
    consumer = ReceivingConsumer(msgs, inst)
    inst.consumers = {IN: consumer}
    inst.decoders = {IN: (load_serde(""), False)}
    inst.run()
    assert fn.calls == [1, 2, 3]
    assert consumer.events == [("ack", m) for m in msgs]
    assert inst.stats.total.received == 3


def test_consumer_grouping_rules() -> None:
    from localrun.instance import can_share_one_consumer, full_topic_name

    assert full_topic_name("x") == "persistent://public/default/x"
    assert full_topic_name("t/n/x") == "persistent://t/n/x"
    assert full_topic_name("non-persistent://t/n/x") == "non-persistent://t/n/x"

    def spec(inputs):
        return FunctionSpec(tenant="public", namespace="default", name="f", class_name="m.C", py="/m.py",
                            inputs=inputs)

    assert can_share_one_consumer(spec({"a": InputSpec(), "b": InputSpec(serde_class_name="serde.PickleSerDe")}))
    assert not can_share_one_consumer(spec({"a": InputSpec()}))
    assert not can_share_one_consumer(spec({"a": InputSpec(), "b": InputSpec(is_regex=True)}))
    assert not can_share_one_consumer(spec({"a": InputSpec(), "b": InputSpec(receiver_queue_size=5)}))
    assert not can_share_one_consumer(spec({"a": InputSpec(), "b": InputSpec(schema_type="string")}))
    # The same topic spelled twice must keep two consumers, as the official instance has.
    assert not can_share_one_consumer(spec({"x": InputSpec(), "persistent://public/default/x": InputSpec()}))


# --- what start() asks the client for (docs/pulsar-functions.md §2.1) ---

class RecordingClient(Client):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__()
        self.client_kwargs = kwargs
        self.subscriptions: list[tuple[object, str, dict[str, Any]]] = []

    def subscribe(self, target, subscription, **kwargs):
        self.subscriptions.append((target, subscription, kwargs))
        return Consumer()


def start_with(monkeypatch: pytest.MonkeyPatch, tmp_path, **spec_fields) -> RecordingClient:
    import localrun.instance as instance_module

    created: list[RecordingClient] = []

    def fake_client(*args, **kwargs):
        created.append(RecordingClient(*args, **kwargs))
        return created[-1]

    monkeypatch.setattr(pulsar, "Client", fake_client)
    code = tmp_path / "startfn.py"
    code.write_text("class F:\n    def process(self, input, context):\n        return input\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    fields: dict[str, Any] = dict(tenant="acme", namespace="media", name="f", class_name="startfn.F", py=str(code),
                  inputs={IN: InputSpec()})
    fields.update(spec_fields)
    inst = instance_module.Instance(FunctionSpec(**fields), "1", "pulsar://x", nack_delay_ms=1234, metrics_port=None)
    inst.start()
    assert inst.function.takes_context
    return created[0]


def test_start_subscribes_like_the_official_instance(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    client = start_with(monkeypatch, tmp_path, timeout_ms=15000, subscription_position="EARLIEST",
                        inputs={IN: InputSpec(receiver_queue_size=7)})
    assert client.client_kwargs["operation_timeout_seconds"] == 30
    assert client.client_kwargs["io_threads"] == 1 and client.client_kwargs["message_listener_threads"] == 1
    [(target, subscription, kwargs)] = client.subscriptions
    assert target == IN and subscription == "acme/media/f"
    assert kwargs["consumer_type"] == pulsar.ConsumerType.Shared
    assert kwargs["initial_position"] == pulsar.InitialPosition.Earliest
    assert kwargs["receiver_queue_size"] == 7
    assert kwargs["unacked_messages_timeout_ms"] == 15000
    assert kwargs["negative_ack_redelivery_delay_ms"] == 1234
    assert kwargs["properties"] == {"application": "pulsar-function", "id": "acme/media/f", "instance_id": "1"}


@pytest.mark.parametrize(("fields", "expected"), [
    ({"retain_key_ordering": True}, pulsar.ConsumerType.KeyShared),
    ({"retain_ordering": True}, pulsar.ConsumerType.Failover),
    ({}, pulsar.ConsumerType.Shared),
])
def test_subscription_type(monkeypatch: pytest.MonkeyPatch, tmp_path, fields, expected) -> None:
    client = start_with(monkeypatch, tmp_path, **fields)
    assert client.subscriptions[0][2]["consumer_type"] == expected
    assert client.subscriptions[0][2]["initial_position"] == pulsar.InitialPosition.Latest
    assert client.subscriptions[0][2]["unacked_messages_timeout_ms"] is None
    assert "receiver_queue_size" not in client.subscriptions[0][2]  # client default unless configured


def test_regex_input_and_custom_subscription_name(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import re

    client = start_with(monkeypatch, tmp_path, subscription_name="mine",
                        inputs={"persistent://acme/media/x-.*": InputSpec(is_regex=True)})
    [(target, subscription, _)] = client.subscriptions
    assert isinstance(target, re.Pattern) and target.pattern == "persistent://acme/media/x-.*"
    assert subscription == "mine"


def test_log_topic_producer_settings(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    client = start_with(monkeypatch, tmp_path, log_topic="persistent://acme/media/logs")
    settings = client.producers["persistent://acme/media/logs"].settings
    assert settings["compression_type"] == pulsar.CompressionType.LZ4
    assert settings["batching_max_publish_delay_ms"] == 100 and settings["batching_enabled"]


def test_system_exit_in_process_ends_execution_but_not_the_process() -> None:
    import threading

    class Exits:
        calls = 0

        def process(self, value, context):
            Exits.calls += 1
            raise SystemExit(3)

    inst, _ = make()
    inst.function = UserFunction(Exits(), True)
    msgs = [Msg(b"1"), Msg(b"2")]
    consumer = ReceivingConsumer(msgs, inst)
    inst.consumers = {IN: consumer}
    inst.decoders = {IN: (load_serde(""), False)}
    timer = threading.Timer(0.5, inst.stop)
    timer.start()
    inst.run()  # returns only once stopped; the SystemExit did not propagate
    timer.join()
    assert Exits.calls == 1 and len(consumer.pending) == 1  # the second message was never taken
    assert consumer.events == []  # neither acked nor nacked
