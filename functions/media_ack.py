"""Acknowledge inputs only after every output that depends on them has been persisted.

With `processingGuarantees: MANUAL` the instance never acks for us, and `context.publish` is
asynchronous: its callback runs later, on a client thread (pulsar-functions.md §1.4, §2.2). An
`OutputBatch` groups the input messages whose results go out together (one input frame in
transcode; every frame of a fragment in chunk) with the publishes carrying those results. The
inputs are acked once, in the callback of the last publish, and only if all of them succeeded;
a failed publish leaves the inputs unacked so the broker redelivers them after a restart
(there is no nack on the Context, §1.5). With `on_done`, the batch does not ack: it reports the
outcome to whoever holds the acks (transcode's GOP holder, media_gop.py), still only from the
callback of the last publish.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import immediate_publish

log = logging.getLogger(__name__)

METRIC_PUBLISH_FAILED = "publish_failed"


def publish_ok(result: Any) -> bool:
    """True for `pulsar.Result.Ok` (official instance) or the string "Ok" (test contexts)."""
    return result == "Ok" or getattr(result, "name", None) == "Ok"


class OutputBatch:
    """Input message ids acked together once `seal()` was called and all publishes completed."""

    def __init__(self, context: Any, on_done: Callable[[bool], None] | None = None) -> None:
        self._context = context
        self._on_done = on_done
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
        # Unbatched, straight away (immediate_publish.py); context.publish where that is unavailable.
        immediate_publish.publish(self._context, topic, payload, serde, self._on_published, message_conf)

    def seal(self) -> None:
        """No more publishes will join; acks now if nothing is outstanding."""
        with self._lock:
            self._sealed = True
            ready = self._take_ready()
        self._finish(ready)

    def _on_published(self, result: Any, _msg_id: Any = None) -> None:
        with self._lock:
            self._outstanding -= 1
            if not publish_ok(result):
                self._failed = True
            ready = self._take_ready()
        if not publish_ok(result):
            log.error("publish failed (%s); %d input(s) stay unacked for redelivery", result, len(self._inputs))
            self._context.record_metric(METRIC_PUBLISH_FAILED, 1)
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


def ack_current(context: Any) -> None:
    """Ack the message in hand right away (it legitimately produced no output)."""
    context.ack(context.get_message_id(), context.get_current_message_topic_name())


def publish_dead_letter(context: Any, topic: str, function: str, payload: Any, reason: str, serde: str) -> None:
    """Send the message in hand to the dead-letter topic with `reason`, `function`, `source_topic`
    and its original properties, key and event time; ack it once that publish is persisted.

    Python functions get no retry limit or DLQ from Pulsar (pulsar-functions.md §2.3), so this is
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
