"""The Context surface as the official ContextImpl implements it (docs/pulsar-functions.md §1.3-1.6)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pulsar
import pytest

from localrun.config import FunctionSpec, InputSpec
from localrun.context import (
    ClearTextSecretsProvider,
    ContextImpl,
    EnvironmentBasedSecretsProvider,
    secrets_provider,
)
from localrun.metrics import InstanceStats
from localrun.state import NullState, SqliteState, table_path
from tests.localrun_fakes import Client, Consumer, Msg, MsgId

IN = "persistent://public/default/in"


def make_spec(**overrides) -> FunctionSpec:
    fields: dict[str, Any] = dict(tenant="acme", namespace="media", name="fn", class_name="m.C", py="/x/m.py",
                  inputs={IN: InputSpec(), "short-in": InputSpec()}, output="persistent://acme/media/out",
                  output_serde_class_name="serde.PickleSerDe")
    fields.update(overrides)
    return FunctionSpec(**fields)


def make_context(spec: FunctionSpec | None = None, state=None, **kwargs):
    spec = spec or make_spec()
    consumers = {topic: Consumer() for topic in spec.inputs}
    client = Client()
    stats = InstanceStats()
    ctx = ContextImpl(spec, "2", client, consumers, state or NullState(), stats,
                      function_id="fid", function_version="v1", **kwargs)
    return ctx, client, consumers, stats


def test_message_getters() -> None:
    ctx, *_ = make_context()
    msg = Msg(b"x", topic=IN, key="k", event_time=99, props={"a": "b"}, msgid=MsgId(ledger=5, entry=9, part=-1))
    ctx.set_current_message(msg, IN)
    assert ctx.get_message_id() is msg.msgid
    assert ctx.get_message_key() == "k" and ctx.get_partition_key() == "k"
    assert ctx.get_ordering_key() is None
    assert ctx.get_message_eventtime() == 99
    assert ctx.get_message_properties() == {"a": "b"}
    assert ctx.get_current_message_topic_name() == IN
    assert ctx.get_message_partition_index() == -1
    assert ctx.get_message_sequence_id() == (5 << 28) | 9


def test_identity_getters_and_logger() -> None:
    ctx, *_ = make_context()
    assert (ctx.get_function_tenant(), ctx.get_function_namespace(), ctx.get_function_name()) == ("acme", "media", "fn")
    assert (ctx.get_function_id(), ctx.get_function_version()) == ("fid", "v1")
    assert ctx.get_instance_id() == "2" and isinstance(ctx.get_instance_id(), str)
    assert ctx.get_logger() is logging.getLogger()
    assert not hasattr(ctx, "get_num_instances")
    assert isinstance(ctx, pulsar.Context)


def test_user_config() -> None:
    ctx, *_ = make_context(make_spec(user_config={"n": 3, "nested": {"a": [1]}}))
    assert ctx.get_user_config_value("n") == 3
    assert ctx.get_user_config_value("nested") == {"a": [1]}
    assert ctx.get_user_config_value("missing") is None
    assert ctx.get_user_config_map() == {"n": 3, "nested": {"a": [1]}}
    empty, *_ = make_context(make_spec(user_config=None))
    assert empty.get_user_config_map() == []
    assert empty.get_user_config_value("n") is None


def test_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = make_spec(secrets={"token": "the-value", "other": {"path": "x"}})
    ctx, *_ = make_context(spec, secrets=ClearTextSecretsProvider())
    assert ctx.get_secret("token") == "the-value"
    assert ctx.get_secret("other") == {"path": "x"}
    assert ctx.get_secret("absent") is None
    monkeypatch.setenv("token", "from-env")
    env_ctx, *_ = make_context(spec, secrets=EnvironmentBasedSecretsProvider())
    assert env_ctx.get_secret("token") == "from-env"
    assert env_ctx.get_secret("other") is None  # no such environment variable
    assert isinstance(secrets_provider("secretsprovider.EnvironmentBasedSecretsProvider"),
                      EnvironmentBasedSecretsProvider)
    with pytest.raises(ValueError, match="unknown secrets provider"):
        secrets_provider("vault.Provider")


def test_record_metric_and_topic_getters() -> None:
    ctx, _, _, stats = make_context()
    ctx.record_metric("frames", 2)
    ctx.record_metric("frames", 3.5)
    assert stats.user_metrics["frames"] == (2, 5.5)
    assert ctx.get_input_topics() == [IN, "short-in"]
    # The official getters read FunctionDetails fields that do not exist and always raise.
    with pytest.raises(AttributeError, match="userConfig"):
        ctx.get_output_topic()
    with pytest.raises(AttributeError):
        ctx.get_output_serde_class_name()
    assert ctx.get_pulsar_client() is not None


def test_publish_with_message_conf_and_callback() -> None:
    ctx, client, _, _ = make_context()
    ctx.set_current_message(Msg(b"x"), IN)
    results = []
    ctx.publish("persistent://acme/media/side", "hello", message_conf={
        "partition_key": "k", "event_timestamp": 5, "properties": {"a": "1"}},
        callback=lambda res, mid: results.append(res))
    producer = client.producers["persistent://acme/media/side"]
    assert producer.sent[0].payload == b"hello"  # IdentitySerDe by default
    assert producer.sent[0].kwargs == {"partition_key": "k", "event_timestamp": 5, "properties": {"a": "1"}}
    assert results == [pulsar.Result.Ok]
    assert producer.settings["batching_enabled"] and producer.settings["batching_max_publish_delay_ms"] == 10
    assert producer.settings["block_if_queue_full"]
    assert producer.settings["properties"] == {"application": "pulsar-function", "id": "acme/media/fn",
                                               "instance_id": "2"}
    assert producer.settings["compression_type"] == pulsar.CompressionType.NONE


def test_publish_properties_argument_replaces_message_conf_properties() -> None:
    ctx, client, _, _ = make_context()
    ctx.set_current_message(Msg(b"x"), IN)
    ctx.publish("t", 42, properties={"b": "2"}, message_conf={"properties": {"a": "1"}, "partition_key": "k"})
    sent = client.producers["t"].sent[0]
    assert sent.payload == b"42"
    assert sent.kwargs == {"properties": {"b": "2"}, "partition_key": "k"}


def test_publish_caches_one_producer_per_topic_with_the_first_compression() -> None:
    ctx, client, _, _ = make_context()
    ctx.set_current_message(Msg(b"x"), IN)
    ctx.publish("t", "a", compression_type=pulsar.CompressionType.ZSTD)
    first = client.producers["t"]
    ctx.publish("t", "b", compression_type=pulsar.CompressionType.LZ4)
    assert client.producers["t"] is first and len(first.sent) == 2
    assert first.settings["compression_type"] == pulsar.CompressionType.ZSTD


def test_publish_with_a_serde_and_a_failing_send() -> None:
    ctx, client, _, stats = make_context()
    client.result = pulsar.Result.Timeout
    ctx.set_current_message(Msg(b"x"), IN)
    seen = []
    ctx.publish("t", {"a": 1}, serde_class_name="serde.PickleSerDe", callback=lambda r, m: seen.append(r))
    import pickle

    assert pickle.loads(client.producers["t"].sent[0].payload) == {"a": 1}
    assert seen == [pulsar.Result.Timeout]
    assert stats.total.system_exceptions == 1
    assert "Failed to publish to topic [t]" in stats.latest_system_exceptions[0].message


def test_publish_refuses_what_identity_serde_refuses() -> None:
    ctx, *_ = make_context()
    ctx.set_current_message(Msg(b"x"), IN)
    with pytest.raises(TypeError):
        ctx.publish("t", {"a": 1})


def test_ack_uses_the_configured_topic_strings() -> None:
    ctx, _, consumers, _ = make_context()
    msgid = MsgId()
    ctx.ack(msgid, IN)
    assert consumers[IN].events == [("ack", msgid)]
    ctx.ack(msgid, IN + "-partition-3")  # falls back to the base name
    assert consumers[IN].kinds == ["ack", "ack"]
    with pytest.raises(ValueError, match="Invalid topicname"):
        ctx.ack(msgid, "persistent://public/default/short-in")  # configured as "short-in"
    ctx.ack(msgid, "short-in")
    assert consumers["short-in"].kinds == ["ack"]


def test_no_state_behaviour() -> None:
    ctx, *_ = make_context(state=NullState())
    ctx.incr_counter("c", 5)
    ctx.put_state("s", "v")
    assert ctx.get_counter("c") is None and ctx.get_state("s") is None
    with pytest.raises(AttributeError):
        ctx.del_counter("c")


def test_state_api_with_storage(tmp_path: Path) -> None:
    state = SqliteState(table_path(tmp_path, "acme", "media-x", "fn"))
    ctx, *_ = make_context(state=state)
    assert ctx.get_counter("c") is None
    ctx.incr_counter("c", 5)
    ctx.incr_counter("c", -2)
    assert ctx.get_counter("c") == 3
    assert ctx.get_state("c") == (3).to_bytes(8, "big")  # counters are 8-byte longs, as in BookKeeper
    ctx.put_state("s", "text")
    ctx.put_state("b", b"\x00\x01")
    assert ctx.get_state("s") == b"text" and ctx.get_state("b") == b"\x00\x01"
    ctx.del_counter("c")
    assert ctx.get_counter("c") is None and ctx.get_state("c") is None
    state.close()
    assert (tmp_path / "acme_media_x" / "fn.sqlite").is_file()


def test_state_survives_reopening_and_is_shared(tmp_path: Path) -> None:
    path = table_path(tmp_path, "public", "default", "fn")
    one, two = SqliteState(path), SqliteState(path)
    one.incr("n", 1)
    two.incr("n", 1)
    one.put("k", b"v")
    one.close()
    two.close()
    again = SqliteState(path)
    assert again.get_counter("n") == 2 and again.get("k") == b"v"
    again.close()
