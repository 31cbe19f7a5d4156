"""Publish every output for one input, and ack the input only when all of them are stored.

With `processingGuarantees: MANUAL` nothing acks for us (pulsar-functions.md §2.2), and the
publish callbacks of different topics complete in any order on the client's threads (§1.4).
So the message id and topic are captured when the input is in hand (the Context moves on to
the next message), and the ack happens in whichever callback reports the last success. If any
publish fails, the input is left unacked, so Pulsar redelivers it after a restart (or after
`timeoutMs`, where configured) instead of losing it; the failure is logged and counted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import immediate_publish

SERDE = "bytes_serde.BytesSerDe"  # resolved by the instance like className (§1.7)


def is_ok(result: Any) -> bool:
    """`pulsar.Result.Ok` from the real client; the string "Ok" from test contexts."""
    return result == "Ok" or getattr(result, "name", None) == "Ok" or str(result) in ("Ok", "Result.Ok")


@dataclass
class Output:
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


@dataclass
class AckBarrier:
    """Counts completions for one input; acks it after `expected` successes."""

    context: Any
    message_id: Any
    topic: str
    expected: int
    label: str = "function"
    on_failure: Callable[[str, Any], None] | None = None
    _done: int = 0
    _failed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def callback(self, topic: str) -> Callable[[Any, Any], None]:
        def completed(result: Any, _msg_id: Any) -> None:
            with self._lock:
                if self._failed:
                    return
                if not is_ok(result):
                    self._failed = True
                else:
                    self._done += 1
                ack_now = not self._failed and self._done == self.expected
                failed_now = self._failed
            if failed_now:
                self.context.get_logger().error(
                    "%s: publish to %s failed (%s); input %s on %s left unacked for redelivery",
                    self.label, topic, result, self.message_id, self.topic,
                )  # fmt: skip
                self.context.record_metric(f"{self.label}_publish_failed", 1)
                if self.on_failure is not None:
                    self.on_failure(topic, result)
            elif ack_now:
                self.context.ack(self.message_id, self.topic)

        return completed


def publish_all(context: Any, outputs: list[Output], label: str) -> AckBarrier:
    """Send `outputs` for the current input; the input is acked when all have succeeded.

    An empty list acks at once: the input needed no output."""
    barrier = AckBarrier(
        context, context.get_message_id(), context.get_current_message_topic_name(), len(outputs), label
    )
    if not outputs:
        context.ack(barrier.message_id, barrier.topic)
        return barrier
    for out in outputs:  # unbatched, straight away (immediate_publish.py), else context.publish
        immediate_publish.publish(context, out.topic, out.payload, SERDE, barrier.callback(out.topic),
                                  out.message_conf())
    return barrier
