"""Acknowledge an input only once every output that carries its result is stored: the rule of all four functions.

With `processingGuarantees: MANUAL` the instance never acks for us, and a publish completes later,
in a callback on one of the client's threads, in any order across topics (docs/pulsar-functions.md §1.4,
§2.2). So the input's message id and topic are captured while the input is in hand (the Context
moves on to the next message once `process()` returns), and the ack happens in the callback of the
last publish to complete, and only if every publish succeeded. A failed publish leaves its inputs
unacked, so the broker redelivers them after a restart (or after `timeoutMs`, where configured)
instead of losing them; the Context has no nack (docs/pulsar-functions.md §1.5). The failure is logged and counted.

`OutputBatch` is that barrier. It groups the inputs whose results go out together (one input in
route and moderate and for one transcoded frame; every frame of a fragment in chunk) with the
publishes carrying them; `seal()` says no more publishes will join. With `on_done` the batch does
not ack but reports the outcome to whoever holds the acks (transcode's GOP holder, media_gop.py),
still from the callback of the last publish. `publish_all` is the one-input case.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import immediate_publish

# A module logger reaches the same place as context.get_logger(), which is the root logger on Pulsar
# (docs/pulsar-functions.md §1.3), and works with every Context, test ones included.
log = logging.getLogger(__name__)

SERDE = "bytes_serde.BytesSerDe"  # resolved by the instance like className (docs/pulsar-functions.md §1.7)
METRIC_PUBLISH_FAILED = "publish_failed"


def publish_ok(result: Any) -> bool:
    """The one success check: `pulsar.Result.Ok` from the real client (an enum member named Ok,
    printed "Ok" or "Result.Ok" depending on the client version), or the string "Ok" of test contexts."""
    return result == "Ok" or getattr(result, "name", None) == "Ok" or str(result) in ("Ok", "Result.Ok")


@dataclass
class Output:
    """One message to publish for the input in hand."""

    topic: str
    payload: bytes
    properties: dict[str, str]
    key: str | None = None
    event_time: int | None = None  # ms since epoch; None or 0 leaves it unset

    def message_conf(self) -> dict[str, Any]:
        conf: dict[str, Any] = {"properties": dict(self.properties)}
        if self.key:
            conf["partition_key"] = self.key
        if self.event_time:
            conf["event_timestamp"] = int(self.event_time)
        return conf


class OutputBatch:
    """Input message ids acked together once `seal()` was called and all publishes completed.

    `label` names the function in the failure log line and metric (`<label>_publish_failed`);
    without it the metric is `publish_failed`."""

    def __init__(self, context: Any, on_done: Callable[[bool], None] | None = None, label: str = "") -> None:
        self._context = context
        self._on_done = on_done
        self._label = label
        self._lock = threading.Lock()
        self._inputs: list[tuple[Any, str]] = []
        self._outstanding = 0
        self._sealed = False
        self._failed = False
        self._done = False

    def add_current_input(self) -> None:
        """Remember the message being processed now; capture it before `process()` returns,
        because the Context moves on to the next message afterwards."""
        self.add_input(self._context.get_message_id(), self._context.get_current_message_topic_name())

    def add_input(self, msg_id: Any, topic: str) -> None:
        with self._lock:
            if self._sealed:
                raise RuntimeError("add_input on a sealed OutputBatch")
            self._inputs.append((msg_id, topic))

    @property
    def input_count(self) -> int:
        return len(self._inputs)

    def publish(self, topic: str, payload: bytes, serde: str, message_conf: dict[str, Any]) -> None:
        with self._lock:
            if self._sealed:
                raise RuntimeError("publish on a sealed OutputBatch")
            self._outstanding += 1

        def on_published(result: Any, _msg_id: Any = None) -> None:
            self._on_published(topic, result)

        # Unbatched, straight away (immediate_publish.py); context.publish where that is unavailable.
        immediate_publish.publish(self._context, topic, payload, serde, on_published, message_conf)

    def seal(self) -> None:
        """No more publishes will join; acks now if nothing is outstanding."""
        with self._lock:
            self._sealed = True
            ready = self._take_ready()
        self._finish(ready)

    def _on_published(self, topic: str, result: Any) -> None:
        ok = publish_ok(result)
        with self._lock:
            self._outstanding -= 1
            if not ok:
                self._failed = True
            ready = self._take_ready()
        if not ok:
            log.error(
                "%s: publish to %s failed (%s); %d input(s) (%s) left unacked for redelivery",
                self._label or "function", topic, result, len(self._inputs),
                ", ".join(f"{msg_id} on {source}" for msg_id, source in self._inputs),
            )  # fmt: skip
            metric = f"{self._label}_{METRIC_PUBLISH_FAILED}" if self._label else METRIC_PUBLISH_FAILED
            self._context.record_metric(metric, 1)
        self._finish(ready)

    def _take_ready(self) -> list[tuple[Any, str]] | None:
        """The inputs to ack ([] after a failure) the first time the batch is complete, else None."""
        if self._sealed and self._outstanding == 0 and not self._done:
            self._done = True
            return [] if self._failed else list(self._inputs)
        return None

    def _finish(self, ready: list[tuple[Any, str]] | None) -> None:
        if ready is None:
            return
        if self._on_done is not None:
            self._on_done(not self._failed)
            return
        for msg_id, topic in ready:
            self._context.ack(msg_id, topic)


def publish_all(context: Any, outputs: list[Output], label: str) -> OutputBatch:
    """Send `outputs` for the input in hand; it is acked once all have succeeded.

    An empty list acks at once: the input needed no output."""
    batch = OutputBatch(context, label=label)
    batch.add_current_input()
    for out in outputs:
        batch.publish(out.topic, out.payload, SERDE, out.message_conf())
    batch.seal()
    return batch


def ack_current(context: Any) -> None:
    """Ack the message in hand right away (it legitimately produced no output)."""
    context.ack(context.get_message_id(), context.get_current_message_topic_name())


def publish_dead_letter(context: Any, topic: str, function: str, payload: Any, reason: str, serde: str) -> None:
    """Send the message in hand to the dead-letter topic with `reason`, `function`, `source_topic`
    and its original properties, key and event time; ack it once that publish is persisted.

    Python functions get no retry limit or DLQ from Pulsar (docs/pulsar-functions.md §2.3), so this is
    the "catch, publish the poison message to your own topic, ack" pattern described there.
    """
    source_topic = context.get_current_message_topic_name()
    log.warning("%s: dead-letter from %s: %s", function, source_topic, reason)
    context.record_metric("dead_letter", 1)
    props = context.get_message_properties()
    data = payload if isinstance(payload, bytes | bytearray | memoryview) else str(payload).encode()
    conf: dict[str, Any] = {"properties": dict(props, reason=reason, function=function, source_topic=source_topic)}
    key = context.get_message_key() or props.get("stream", "")
    if key:
        conf["partition_key"] = key
    event_time = context.get_message_eventtime()
    if event_time:
        conf["event_timestamp"] = event_time
    batch = OutputBatch(context)
    batch.add_current_input()
    batch.publish(topic, bytes(data), serde, conf)
    batch.seal()
