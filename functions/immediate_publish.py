"""Publish without the 10 ms batching wait of `context.publish`.

Pulsar's Python instance (contextimpl.py / python_instance.py, 4.0.8) creates every producer behind
`context.publish` and behind a function's returned output with `batching_enabled=True,
batching_max_publish_delay_ms=10`, and nothing in a FunctionConfig changes that for Python (the
`producerConfig.batchingConfig` of the FunctionDetails is read by the Java instance only). A live
stream sends one message per frame, so every such message waits out the whole 10 ms before it leaves.

Instead, the function makes its own producers, unbatched, from the instance's own client
(`context.get_pulsar_client()`: the same connection and credentials the worker gave the instance,
so a cluster needs no extra configuration). They are created like the instance's publish producers
(same properties, no compression, `block_if_queue_full`), one per topic, cached for the instance's
lifetime, and messages go out with exactly the `message_conf` `context.publish` would pass
(partition_key, properties, event_timestamp), serialised by the same SerDe class. The callback is
the caller's, so acknowledging in it still means "acked only after the output is stored".

Per-topic order: a topic is served by one producer for the instance's lifetime. If the client is
unavailable (a context without `get_pulsar_client`, or one returning None) or the producer cannot be
created, that topic falls back to `context.publish` for good, never switching producers mid-stream
(two producers could store a later message before an earlier one). userConfig `immediate_publish:
false` keeps the batched `context.publish` everywhere (the old behaviour, the benchmark's baseline).

Cost: no batching means one broker entry and one receipt per message. For one message per video
frame or audio packet that is nothing; for a burst of tiny messages (chat at thousands a second)
throughput is lower than with batching (docs/immediate-publish.md has the measurements).
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

CONFIG_KEY = "immediate_publish"
METRIC_FALLBACK = "immediate_publish_fallback"


def enabled(context: Any) -> bool:
    """userConfig `immediate_publish` (default true); false/"false"/0 turn it off."""
    try:
        value = context.get_user_config_value(CONFIG_KEY)
    except Exception:  # noqa: BLE001 - a context without user config: default
        return True
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "0", "no", "off")
    return bool(value)


def _producer_properties(context: Any) -> dict[str, str]:
    """What the official instance sets on its producers (util.get_properties)."""
    fqfn = f"{context.get_function_tenant()}/{context.get_function_namespace()}/{context.get_function_name()}"
    return {"application": "pulsar-function", "id": fqfn, "instance_id": str(context.get_instance_id())}


class _Publisher:
    """The producers of one client: topic -> producer, or None where the topic falls back."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.producers: dict[str, Any] = {}
        self.serdes: dict[str, Any] = {}
        self.lock = threading.Lock()

    def producer(self, context: Any, topic: str) -> Any:
        with self.lock:
            if topic in self.producers:
                return self.producers[topic]
            import pulsar

            try:
                producer = self.client.create_producer(
                    topic,
                    block_if_queue_full=True,
                    batching_enabled=False,
                    compression_type=pulsar.CompressionType.NONE,
                    properties=_producer_properties(context),
                )
            except Exception as exc:  # noqa: BLE001 - any failure: this topic stays on context.publish
                log.warning("immediate publish: no producer for %s (%s); using context.publish for it", topic, exc)
                context.record_metric(METRIC_FALLBACK, 1)
                producer = None
            self.producers[topic] = producer
            return producer

    def serde(self, class_name: str) -> Any:
        serde = self.serdes.get(class_name)
        if serde is None:
            module, _, name = class_name.rpartition(".")
            serde = self.serdes[class_name] = getattr(importlib.import_module(module), name)()
        return serde


_publishers: dict[int, _Publisher] = {}
_publishers_lock = threading.Lock()


def _publisher_for(context: Any) -> _Publisher | None:
    getter = getattr(context, "get_pulsar_client", None)
    if getter is None:
        return None
    try:
        client = getter()
    except Exception:  # noqa: BLE001 - treat like a context without a client
        return None
    if client is None:
        return None
    with _publishers_lock:
        publisher = _publishers.get(id(client))
        if publisher is None or publisher.client is not client:
            publisher = _publishers[id(client)] = _Publisher(client)
        return publisher


def publish(context: Any, topic: str, payload: bytes, serde_class_name: str,
            callback: Callable[[Any, Any], Any], message_conf: dict[str, Any]) -> bool:
    """Send `payload` to `topic` now; `callback(result, msg_id)` runs when the broker stored it (or failed).

    Returns True if it went through an unbatched producer of our own, False if through
    `context.publish` (disabled, no client, or the topic fell back)."""
    publisher = _publisher_for(context) if enabled(context) else None
    producer = publisher.producer(context, topic) if publisher is not None else None
    if producer is None or publisher is None:
        context.publish(topic, payload, serde_class_name, callback=callback, message_conf=message_conf)
        return False
    data = bytes(publisher.serde(serde_class_name).serialize(payload))
    producer.send_async(data, callback, **message_conf)
    return True


def forget(context: Any) -> None:
    """Drop the cached producers of this context's client (tests; the client closes them itself)."""
    getter = getattr(context, "get_pulsar_client", None)
    client = getter() if getter is not None else None
    if client is not None:
        with _publishers_lock:
            _publishers.pop(id(client), None)
