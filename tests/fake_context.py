"""An in-memory `pulsar.Context` for unit-testing functions without a broker.

It mirrors what the official Python instance's ContextImpl returns (docs/pulsar-functions.md §1.3-1.6):
instance id as a str, `''` for a missing key, `[]` user config map when none is given, state that
is either a dict (state storage on) or inert (off: incr/put do nothing, get returns None,
del_counter raises AttributeError).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class FakeMessageId:
    ledger: int = 1
    entry: int = 0
    partition_index: int = -1
    batch: int = -1

    def ledger_id(self) -> int:
        return self.ledger

    def entry_id(self) -> int:
        return self.entry

    def partition(self) -> int:
        return self.partition_index

    def batch_index(self) -> int:
        return self.batch

    def __str__(self) -> str:
        return f"({self.ledger},{self.entry},{self.partition_index},{self.batch})"


@dataclass
class Published:
    """One `context.publish(...)` call, as recorded by the fake."""

    topic: str
    payload: bytes
    serde_class_name: str
    properties: dict[str, str]
    message_conf: dict[str, Any]
    callback: Callable[..., Any] | None

    def complete(self, result: Any, message_id: Any) -> None:
        """Call the publish callback as the client does once the broker answers; a publish made
        without one cannot be completed, so the test that expected a callback fails here."""
        assert self.callback is not None, f"the publish to {self.topic} was made without a callback"
        self.callback(result, message_id)

    @property
    def key(self) -> str | None:
        return self.message_conf.get("partition_key")

    @property
    def event_timestamp(self) -> int | None:
        return self.message_conf.get("event_timestamp")


@dataclass
class FakeContext:
    """Set the `current_*` fields (or call `set_message`) before each `process()` call."""

    user_config: dict[str, Any] | None = None
    input_topics: list[str] = field(default_factory=lambda: ["persistent://public/wtpulsar/in"])
    output_topic: str = ""
    instance_id: str = "0"
    function_name: str = "fn"
    tenant: str = "public"
    namespace: str = "wtpulsar"
    state_enabled: bool = True
    secrets: dict[str, str] = field(default_factory=dict)
    auto_complete_publish: bool = True

    published: list[Published] = field(default_factory=list)
    acked: list[tuple[Any, str]] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    state: dict[str, bytes] = field(default_factory=dict)

    current_message_id: FakeMessageId = field(default_factory=FakeMessageId)
    current_key: str = ""
    current_properties: dict[str, str] = field(default_factory=dict)
    current_event_time: int = 0
    current_topic: str = "persistent://public/wtpulsar/in"

    def set_message(
        self,
        *,
        topic: str | None = None,
        key: str = "",
        properties: dict[str, str] | None = None,
        event_time: int = 0,
        message_id: FakeMessageId | None = None,
    ) -> None:
        if topic is not None:
            self.current_topic = topic
        self.current_key = key
        self.current_properties = dict(properties or {})
        self.current_event_time = event_time
        self.current_message_id = message_id or FakeMessageId(entry=self.current_message_id.entry + 1)

    # --- message getters ---
    def get_message_id(self) -> FakeMessageId:
        return self.current_message_id

    def get_message_key(self) -> str:
        return self.current_key

    def get_partition_key(self) -> str:
        return self.current_key

    def get_ordering_key(self) -> None:
        return None

    def get_message_eventtime(self) -> int:
        return self.current_event_time

    def get_message_properties(self) -> dict[str, str]:
        return dict(self.current_properties)

    def get_current_message_topic_name(self) -> str:
        return self.current_topic

    def get_message_partition_index(self) -> int:
        return self.current_message_id.partition()

    def get_message_sequence_id(self) -> int:
        return (self.current_message_id.ledger_id() << 28) | self.current_message_id.entry_id()

    # --- identity ---
    def get_function_name(self) -> str:
        return self.function_name

    def get_function_tenant(self) -> str:
        return self.tenant

    def get_function_namespace(self) -> str:
        return self.namespace

    def get_function_id(self) -> str:
        return f"{self.tenant}/{self.namespace}/{self.function_name}"

    def get_function_version(self) -> str:
        return "0"

    def get_instance_id(self) -> str:
        return self.instance_id

    def get_logger(self) -> logging.Logger:
        return logging.getLogger()

    # --- config ---
    def get_user_config_value(self, key: str) -> Any:
        return (self.user_config or {}).get(key)

    def get_user_config_map(self) -> dict[str, Any] | list[Any]:
        return dict(self.user_config) if self.user_config else []

    def get_secret(self, name: str) -> str | None:
        return self.secrets.get(name)

    def record_metric(self, name: str, value: float) -> None:
        self.metrics.setdefault(name, []).append(value)

    def get_input_topics(self) -> list[str]:
        return list(self.input_topics)

    def get_output_topic(self) -> str:
        return self.output_topic

    def get_output_serde_class_name(self) -> str:
        return ""

    # --- output and acks ---
    def publish(
        self,
        topic_name: str,
        message: Any,
        serde_class_name: str = "serde.IdentitySerDe",
        properties: dict[str, str] | None = None,
        compression_type: Any = None,
        callback: Callable[..., Any] | None = None,
        message_conf: dict[str, Any] | None = None,
    ) -> None:
        conf = dict(message_conf or {})
        if properties:
            conf["properties"] = properties
        if isinstance(message, str):
            payload = message.encode("utf-8")
        elif isinstance(message, bytes | bytearray | memoryview):
            payload = bytes(message)
        else:
            raise TypeError(f"publish() needs bytes or str in this fake, got {type(message).__name__}")
        record = Published(
            topic=topic_name,
            payload=payload,
            serde_class_name=serde_class_name,
            properties=dict(conf.get("properties") or {}),
            message_conf=conf,
            callback=callback,
        )
        self.published.append(record)
        if callback is not None and self.auto_complete_publish:
            callback("Ok", FakeMessageId(entry=len(self.published)))

    def ack(self, msgid: Any, topic: str) -> None:
        self.acked.append((msgid, topic))

    # --- state ---
    def incr_counter(self, key: str, amount: int) -> None:
        if self.state_enabled:
            self.counters[key] = self.counters.get(key, 0) + amount

    def get_counter(self, key: str) -> int | None:
        return self.counters.get(key) if self.state_enabled else None

    def del_counter(self, key: str) -> None:
        if not self.state_enabled:
            raise AttributeError("'NoneType' object has no attribute 'delete'")
        self.counters.pop(key, None)
        self.state.pop(key, None)

    def put_state(self, key: str, value: str | bytes) -> None:
        if self.state_enabled:
            self.state[key] = value.encode("utf-8") if isinstance(value, str) else bytes(value)

    def get_state(self, key: str) -> bytes | None:
        return self.state.get(key) if self.state_enabled else None

    def published_to(self, topic_suffix: str) -> list[Published]:
        """The publishes whose topic ends with `topic_suffix`."""
        return [p for p in self.published if p.topic.endswith(topic_suffix)]
