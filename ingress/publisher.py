"""Broker side of the ingress: one pulsar-client producer per input topic, shared by all sessions.

Sends are asynchronous (``send_async``); the client's callback thread hands the outcome back to the
event loop. Bounding what is in flight is the sessions' job (session.Limits.max_inflight), plus a
global cap here so that many sessions together cannot queue without bound either.

Hand-off cost matters (the ingress's publish-latency target, bench/ingress.py): every broker receipt runs a Python callback on a
pulsar-client thread, which must take the GIL from the busy event-loop thread. The callback therefore
only appends to a deque and wakes the loop once per batch (``call_soon_threadsafe`` writes to the
loop's self-pipe, a syscall that releases and retakes the GIL, so one per receipt doubled the
hand-offs); the loop drains the whole batch in one callback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ingress.metrics import IngressMetrics
from ingress.names import INPUT_TOPIC, topic_url
from ingress.session import Publish

log = logging.getLogger(__name__)

Done = Callable[[bool, str], None]
SEND_TIMEOUT_MS = 10_000
PRODUCER_QUEUE = 20_000  # client-side pending messages per producer (we bound in-flight far below)


class BrokerPublisher:
    """Publishes ``session.Publish`` requests; ``done(ok, error)`` runs on the event loop."""

    def __init__(self, service_url: str, tenant: str, namespace: str, metrics: IngressMetrics,
                 connect_timeout: float = 30.0, token: str | None = None) -> None:
        self.service_url = service_url
        self.token = token
        self.tenant = tenant
        self.namespace = namespace
        self.metrics = metrics
        self.connect_timeout = connect_timeout
        self._client: Any = None
        self._producers: dict[str, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.inflight = 0
        # Optional sink for the benchmark, one tuple per acked publish, seconds: (frame received -> handed
        # to the client, handed -> receipt callback on the client's thread, callback -> run on the loop).
        # The sum is the publish latency bench/ingress.py judges; the parts say whether broker or loop was slow.
        self.latency_sink: list[tuple[float, float, float]] | None = None
        # outcomes from pulsar-client threads, drained on the loop (see the module docstring)
        self._outcomes: deque[tuple[Callable[[bool, str], None], bool, str]] = deque()
        self._drain_scheduled = False
        # prometheus child metrics per topic: labels() costs a lock and a dict lookup per call
        self._topic_metrics: dict[str, tuple[Any, Any, Any]] = {}

    async def start(self) -> None:
        import pulsar

        self._loop = asyncio.get_running_loop()
        from ingress.broker_auth import client_kwargs

        self._client = pulsar.Client(self.service_url, operation_timeout_seconds=int(self.connect_timeout),
                                     logger=_quiet_logger(), **client_kwargs(self.token))
        deadline = time.monotonic() + self.connect_timeout
        for short in INPUT_TOPIC.values():
            while True:
                try:
                    self._producers[short] = await asyncio.to_thread(self._create_producer, short)
                    break
                except Exception as exc:  # broker not up yet: retry until the deadline
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"cannot create producer for {short} at {self.service_url}: {exc}") \
                            from exc
                    await asyncio.sleep(0.5)

    def _create_producer(self, short: str) -> Any:
        import pulsar

        # Batching off (one frame = one message, no batching delay) so chunking can be on: frames above
        # the broker's max message size are split by the client and reassembled by consumers.
        return self._client.create_producer(
            topic_url(self.tenant, self.namespace, short),
            batching_enabled=False,
            chunking_enabled=True,
            block_if_queue_full=False,
            max_pending_messages=PRODUCER_QUEUE,
            send_timeout_millis=SEND_TIMEOUT_MS,
            compression_type=pulsar.CompressionType.NONE,
        )

    def send(self, publish: Publish, received_at: float, done: Done) -> None:
        """Queue one message; never blocks. ``received_at`` is time.time() when the frame was complete."""
        import pulsar

        producer = self._producers.get(publish.topic)
        loop = self._loop
        if producer is None or loop is None:
            done(False, f"no producer for {publish.topic}")
            return
        self.inflight += 1
        self.metrics.inflight.inc()
        published, errors, latency = self._metrics_for(publish.topic)
        marks = [0.0, 0.0]  # handed to the client, receipt callback ran (for latency_sink)

        def finish(ok: bool, err: str) -> None:
            self.inflight -= 1
            self.metrics.inflight.dec()
            if ok:
                now = time.time()
                published.inc()
                latency.observe(max(0.0, now - received_at))
                if self.latency_sink is not None:
                    self.latency_sink.append((max(0.0, marks[0] - received_at), max(0.0, marks[1] - marks[0]),
                                              max(0.0, now - marks[1])))
            else:
                errors.inc()
            done(ok, err)

        ok_result = pulsar.Result.Ok

        def callback(result: Any, _msg_id: Any) -> None:  # runs on a pulsar-client thread
            marks[1] = time.time()
            ok = result == ok_result
            self._outcomes.append((finish, ok, "" if ok else str(result)))
            if not self._drain_scheduled:
                self._drain_scheduled = True
                try:
                    loop.call_soon_threadsafe(self._drain_outcomes)
                except RuntimeError:  # loop closed during shutdown: nobody is waiting any more
                    pass

        marks[0] = time.time()
        try:
            producer.send_async(publish.payload, callback, properties=publish.properties,
                                partition_key=publish.key,
                                event_timestamp=publish.event_timestamp or None)
        except Exception as exc:  # e.g. producer queue full or closed
            loop.call_soon(finish, False, str(exc))

    @property
    def outcomes_waiting(self) -> bool:
        """Receipts arrived and wait for the loop (read_many drains them between datagrams)."""
        return bool(self._outcomes)

    def drain_outcomes(self) -> None:
        """Handle the waiting receipts now (on the loop thread) instead of at the next loop pass."""
        self._drain_outcomes()

    def _drain_outcomes(self) -> None:
        # Reset the flag before draining: an outcome appended after this line schedules a new drain,
        # one appended before it is popped below; none is left behind.
        self._drain_scheduled = False
        outcomes = self._outcomes
        while outcomes:
            finish, ok, err = outcomes.popleft()
            try:
                finish(ok, err)
            except Exception:  # one session's failure must not strand the other outcomes
                log.exception("publish outcome handler failed")

    def _metrics_for(self, topic: str) -> tuple[Any, Any, Any]:
        cached = self._topic_metrics.get(topic)
        if cached is None:
            m = self.metrics
            cached = (m.published.labels(topic), m.publish_errors.labels(topic), m.publish_latency.labels(topic))
            self._topic_metrics[topic] = cached
        return cached

    async def close(self) -> None:
        producers, self._producers = list(self._producers.values()), {}
        client, self._client = self._client, None

        def shutdown() -> None:
            for producer in producers:
                try:
                    producer.flush()
                    producer.close()
                except Exception as exc:
                    log.debug("producer close: %s", exc)
            if client is not None:
                client.close()

        await asyncio.to_thread(shutdown)

    @property
    def client(self) -> Any:
        return self._client


def _quiet_logger() -> Any:
    import pulsar

    return pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn)
