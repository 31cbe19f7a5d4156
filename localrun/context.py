"""The `pulsar.Context` handed to `process()`, as the official `ContextImpl` implements it
(docs/pulsar-functions.md §1.3-1.6). Oddities are kept on purpose: the instance id is a str,
`get_user_config_map()` is `[]` without userConfig, `get_ordering_key()` is always None,
`get_num_instances()` does not exist, `publish` defaults to IdentitySerDe and ignores schemas,
and `ack` only knows the configured input strings.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from pulsar import Context as _SdkContext

from localrun.config import FunctionSpec
from localrun.loader import DEFAULT_SERDE, load_serde
from localrun.metrics import InstanceStats
from localrun.sent_messages import SentMessages, send_keeping
from localrun.state import StateStore

log = logging.getLogger(__name__)
_PARTITION_SUFFIX = re.compile(r"(.+)-partition-(\d+)")

CLEAR_TEXT_PROVIDER = "secretsprovider.ClearTextSecretsProvider"
ENVIRONMENT_PROVIDER = "secretsprovider.EnvironmentBasedSecretsProvider"


class ClearTextSecretsProvider:
    """Returns the configured value itself."""

    def provide_secret(self, secret_name: str, path_to_secret: Any) -> Any:
        return path_to_secret


class EnvironmentBasedSecretsProvider:
    """Returns the environment variable named like the secret (the configured value is unused)."""

    def provide_secret(self, secret_name: str, path_to_secret: Any) -> str | None:
        return os.environ.get(secret_name)


def secrets_provider(class_name: str) -> Any:
    if class_name in ("", CLEAR_TEXT_PROVIDER, "ClearTextSecretsProvider"):
        return ClearTextSecretsProvider()
    if class_name in (ENVIRONMENT_PROVIDER, "EnvironmentBasedSecretsProvider"):
        return EnvironmentBasedSecretsProvider()
    raise ValueError(f"unknown secrets provider {class_name!r}; use {CLEAR_TEXT_PROVIDER} or {ENVIRONMENT_PROVIDER}")


def producer_properties(spec: FunctionSpec, instance_id: str) -> dict[str, str]:
    """Consumer and producer properties the official instance sets (docs/pulsar-functions.md §1.4, §2.1)."""
    return {"application": "pulsar-function", "id": spec.fqfn, "instance_id": instance_id}


class ContextImpl(_SdkContext):
    """One per instance; the instance calls `set_current_message` before each `process()`."""

    def __init__(
        self,
        spec: FunctionSpec,
        instance_id: str,
        client: Any,
        consumers: dict[str, Any],
        state: StateStore,
        stats: InstanceStats,
        *,
        function_id: str = "",
        function_version: str = "",
        secrets: Any = None,
        clock: Callable[[], float] = time.time,
        sent: SentMessages | None = None,
    ) -> None:
        self._spec = spec
        self._instance_id = instance_id
        self._client = client
        self._consumers = consumers
        self._state = state
        self._stats = stats
        self._function_id = function_id
        self._function_version = function_version
        self._secrets = secrets or ClearTextSecretsProvider()
        self._clock = clock
        self._message: Any = None
        self._topic = ""
        self._producers: dict[str, Any] = {}
        self._serdes: dict[str, Any] = {}
        self._producer_lock = threading.Lock()
        # publish() runs on the execution thread, whose loop releases these (localrun/sent_messages.py)
        self._sent = sent if sent is not None else SentMessages()

    def set_current_message(self, message: Any, topic: str) -> None:
        self._message = message
        self._topic = topic

    # --- the current message ---
    def get_message_id(self) -> Any:
        return self._message.message_id()

    def get_message_key(self) -> str:
        return self._message.partition_key()

    def get_partition_key(self) -> str:
        return self._message.partition_key()

    def get_ordering_key(self) -> None:
        # Not implemented by the official ContextImpl: the SDK stub returns None (docs/pulsar-functions.md §1.3).
        return None

    def get_message_eventtime(self) -> int:
        return self._message.event_timestamp()

    def get_message_properties(self) -> dict[str, str]:
        return self._message.properties()

    def get_current_message_topic_name(self) -> str:
        return self._topic

    def get_message_partition_index(self) -> int:
        return self._message.message_id().partition()

    def get_message_sequence_id(self) -> int:
        msgid = self._message.message_id()
        return (msgid.ledger_id() << 28) | msgid.entry_id()

    # --- identity ---
    def get_function_tenant(self) -> str:
        return self._spec.tenant

    def get_function_namespace(self) -> str:
        return self._spec.namespace

    def get_function_name(self) -> str:
        return self._spec.name

    def get_function_id(self) -> str:
        return self._function_id

    def get_function_version(self) -> str:
        return self._function_version

    def get_instance_id(self) -> str:
        return self._instance_id

    def get_logger(self) -> logging.Logger:
        return logging.getLogger()

    # --- configuration ---
    def get_user_config_value(self, key: str) -> Any:
        return (self._spec.user_config or {}).get(key)

    def get_user_config_map(self) -> Any:
        # The official instance starts from `[]` and only replaces it when userConfig is set.
        return self._spec.user_config if self._spec.user_config else []

    def get_secret(self, secret_name: str) -> Any:
        secrets = self._spec.secrets or {}
        if secret_name not in secrets:
            return None
        return self._secrets.provide_secret(secret_name, secrets[secret_name])

    def record_metric(self, metric_name: str, metric_value: float) -> None:
        self._stats.record_metric(metric_name, metric_value)

    def get_input_topics(self) -> list[str]:
        return list(self._spec.inputs)

    # The official ContextImpl reads `function_details.output` and `.outputSerdeClassName`, fields
    # that the FunctionDetails protobuf does not have (the output lives in `sink.topic` and
    # `sink.serDeClassName`), so on Pulsar both getters raise AttributeError. We raise too, so a
    # function that relies on them fails here rather than in production. Pass the topic through
    # userConfig instead (docs/pulsar-functions.md §1.3).
    OUTPUT_GETTERS_RAISE = True

    def get_output_topic(self) -> str:
        if self.OUTPUT_GETTERS_RAISE:
            raise AttributeError(
                "output: Pulsar's Python ContextImpl.get_output_topic() reads FunctionDetails.output, which does "
                "not exist, so it always raises on a real worker; pass the output topic in userConfig instead")
        return self._spec.output

    def get_output_serde_class_name(self) -> str:
        if self.OUTPUT_GETTERS_RAISE:
            raise AttributeError(
                "outputSerdeClassName: Pulsar's Python ContextImpl.get_output_serde_class_name() reads a "
                "FunctionDetails field that does not exist, so it always raises on a real worker")
        return self._spec.output_serde_class_name

    def get_pulsar_client(self) -> Any:
        return self._client

    # --- publishing and acks ---
    def publish(
        self,
        topic_name: str,
        message: Any,
        serde_class_name: str = DEFAULT_SERDE,
        properties: dict[str, str] | None = None,
        compression_type: Any = None,
        callback: Callable[[Any, Any], Any] | None = None,
        message_conf: dict[str, Any] | None = None,
    ) -> None:
        producer = self._producer_for(topic_name, compression_type)
        serde = self._serdes.get(serde_class_name)
        if serde is None:
            serde = self._serdes[serde_class_name] = load_serde(serde_class_name)
        payload = bytes(serde.serialize(message))
        conf = dict(message_conf or {})
        if properties:
            conf["properties"] = properties
        source_id = self._message.message_id() if self._message is not None else None
        send_keeping(producer, self._sent, payload, partial(self._published, callback, topic_name, source_id), **conf)

    def _producer_for(self, topic_name: str, compression_type: Any) -> Any:
        with self._producer_lock:
            producer = self._producers.get(topic_name)
            if producer is None:
                import pulsar

                producer = self._client.create_producer(
                    topic_name,
                    block_if_queue_full=True,
                    batching_enabled=True,
                    batching_max_publish_delay_ms=10,
                    # Taken from the first publish() to this topic only (docs/pulsar-functions.md §1.4).
                    compression_type=compression_type if compression_type is not None else pulsar.CompressionType.NONE,
                    properties=producer_properties(self._spec, self._instance_id),
                )
                self._producers[topic_name] = producer
            return producer

    def _published(self, callback: Callable[[Any, Any], Any] | None, topic: str, source_id: Any,
                   result: Any, msg_id: Any) -> None:
        import pulsar

        if result != pulsar.Result.Ok:
            error = f"Failed to publish to topic [{topic}] with error [{result}] with src message id [{source_id}]"
            log.error(error)
            self._stats.system_exception(Exception(error), self._clock())
        if callback is not None:
            callback(result, msg_id)

    def ack(self, msgid: Any, topic: str) -> None:
        consumer = self._consumers.get(topic)
        if consumer is None:
            match = _PARTITION_SUFFIX.search(topic)
            if match:
                consumer = self._consumers.get(match.group(1))
        if consumer is None:
            raise ValueError(f"Invalid topicname {topic}")
        consumer.acknowledge(msgid)

    # --- state (docs/pulsar-functions.md §1.6) ---
    def incr_counter(self, key: str, amount: int) -> None:
        self._state.incr(key, amount)

    def get_counter(self, key: str) -> int | None:
        return self._state.get_counter(key)

    def del_counter(self, key: str) -> None:
        self._state.delete(key)

    def put_state(self, key: str, value: str | bytes) -> None:
        self._state.put(key, value.encode("utf-8") if isinstance(value, str) else bytes(value))

    def get_state(self, key: str) -> bytes | None:
        return self._state.get(key)

    def close_producers(self) -> None:
        for producer in list(self._producers.values()):
            try:
                producer.flush()
                producer.close()
            except Exception:  # noqa: BLE001 - best effort on shutdown
                log.debug("closing a publish producer failed", exc_info=True)
