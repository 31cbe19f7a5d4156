"""Drive one broker through one scenario with the official `pulsar-client`: the same calls for every broker.

One scenario = one fresh topic in public/default, one consumer (Exclusive, Earliest, default receiver
queue) subscribed *before* anything is produced, receiving and acking each message in its own thread,
and one producer (send_async with block_if_queue_full) in the calling thread. Producer and consumer use
separate `pulsar.Client`s, so separate TCP connections, as two applications would.

* unpaced (``rate is None``): send as fast as the client allows for `seconds`, then flush.
* paced: send at `rate` msg/s on a monotonic-clock schedule for `seconds`; latency = receive time minus
  the send time carried in the payload.

Then wait for the consumer to catch up. A broker that stops delivering is given up on after `stall`
seconds without a new message (or `drain_limit` seconds in all): whatever did not arrive is lost.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any  # pulsar-client's Consumer and Producer carry no type information

from bench._broker_payload import ArrivalCounter, PayloadFactory, Tally, parse

RECEIVE_POLL = 200  # ms: how often the consumer thread checks whether to stop


@dataclass(frozen=True)
class Scenario:
    key: str
    """Stable id used in the JSON and by the targets ("tput-1k", ...)."""
    title: str
    size: int
    """Payload bytes."""
    batching: bool
    rate: float | None = None
    """msg/s for a paced run; None = as fast as possible."""


@dataclass(frozen=True)
class Limits:
    seconds: float
    """How long the producer sends."""
    stall: float
    """Give up after this long with no new delivery (s)."""
    drain_limit: float
    """Give up this long after the producer finished, even if messages still trickle in (s)."""
    send_timeout_ms: int
    operation_timeout_s: int


@dataclass
class RunResult:
    sent: int = 0
    """Messages handed to send_async (ids 0..sent-1)."""
    send_failed: int = 0
    """Send callbacks that reported an error (paced run only; those ids may still have arrived)."""
    tally: Tally = field(default_factory=lambda: Tally(0, 0, 0, 0))
    start_ns: int = 0
    """time.monotonic_ns() of the first send."""
    elapsed: float = 0.0
    """First send to last new delivery, seconds."""
    publish_elapsed: float = 0.0
    """First send until flush() returned (every receipt in), seconds."""
    latencies_ms: list[float] = field(default_factory=list)
    broker_cpu_s: float | None = None
    """CPU seconds the broker process used during the run (filled in by the caller)."""
    client_cpu_s: float | None = None
    """CPU seconds this (client) process used during the run, all threads."""
    gave_up: str | None = None
    """Why the wait for deliveries ended early, if it did."""
    error: str | None = None


class _Receiver(threading.Thread):
    """Receives and acks until told to stop; records ids and (optionally) latencies."""

    def __init__(self, consumer: Any, size: int, record_latency: bool) -> None:
        super().__init__(name="bench-receiver", daemon=True)
        self.consumer = consumer
        self.size = size
        self.record_latency = record_latency
        self.counter = ArrivalCounter()
        self.latencies_ms: list[float] = []
        self.last_new_ns = 0
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        import pulsar

        consumer = self.consumer
        counter = self.counter
        try:
            while not self.stop.is_set():
                try:
                    msg = consumer.receive(RECEIVE_POLL)
                except pulsar.Timeout:
                    continue
                now = time.monotonic_ns()
                data = msg.data()
                consumer.acknowledge(msg)
                if len(data) != self.size:
                    counter.add_malformed()
                    continue
                ident, sent_ns = parse(data)
                before = counter.distinct
                counter.add(ident)
                if counter.distinct != before:
                    self.last_new_ns = now
                if self.record_latency:
                    self.latencies_ms.append((now - sent_ns) / 1e6)
        except BaseException as exc:  # reported with the figures, never swallowed
            self.error = exc


def run_scenario(service_url: str, scenario: Scenario, limits: Limits, client_log: Path,
                 domain: str = "persistent") -> RunResult:
    """`domain` "non-persistent" runs the same scenario on a non-persistent topic."""
    import pulsar

    result = RunResult()
    topic = f"{domain}://public/default/bench-{scenario.key}-{uuid.uuid4().hex[:8]}"

    def client() -> pulsar.Client:
        return pulsar.Client(service_url, operation_timeout_seconds=limits.operation_timeout_s,
                             logger=pulsar.FileLogger(pulsar.LoggerLevel.Warn, str(client_log)))

    consumer_client, producer_client = client(), client()
    receiver: _Receiver | None = None
    try:
        consumer = consumer_client.subscribe(topic, "bench", consumer_type=pulsar.ConsumerType.Exclusive,
                                             initial_position=pulsar.InitialPosition.Earliest)
        producer = producer_client.create_producer(topic, batching_enabled=scenario.batching,
                                                   block_if_queue_full=True,
                                                   send_timeout_millis=limits.send_timeout_ms)
        receiver = _Receiver(consumer, scenario.size, record_latency=scenario.rate is not None)
        receiver.start()
        _produce(producer, scenario, limits, result)
        _drain(receiver, limits, result)
    except Exception as exc:  # a broker that refuses or times out still gets a row
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        if receiver is not None:
            receiver.stop.set()
            receiver.join(RECEIVE_POLL / 1000 * 5)
            result.tally = receiver.counter.tally(result.sent)
            result.latencies_ms = receiver.latencies_ms
            if receiver.error is not None and result.error is None:
                result.error = f"receiver: {type(receiver.error).__name__}: {receiver.error}"
        else:
            result.tally = Tally(0, result.sent, 0, 0)
        for c in (producer_client, consumer_client):
            try:
                c.close()
            except Exception:  # closing a client of a broker that already failed
                pass
    return result


def _produce(producer: Any, scenario: Scenario, limits: Limits, result: RunResult) -> None:
    """Send for `limits.seconds`, then flush (which returns once every send has its receipt or failed).

    The unpaced runs pass no send callback: a Python callback costs the client's I/O thread a GIL
    hand-off per message, which halves what one Python producer can offer (measured: ~30 us per
    send_async without, ~55 us with). Lost and duplicated are judged at the consumer anyway. The paced
    run is slow enough to afford one, so it also counts failed sends.
    """
    import pulsar

    factory = PayloadFactory(scenario.size)
    failures: list[object] = []

    def on_sent(res: object, _msg_id: object) -> None:
        if res != pulsar.Result.Ok:
            failures.append(res)

    send_async = producer.send_async
    start_ns = result.start_ns = time.monotonic_ns()
    if scenario.rate is None:
        deadline_ns = start_ns + int(limits.seconds * 1e9)
        ident = 0
        while time.monotonic_ns() < deadline_ns:
            for _ in range(64):  # read the clock every 64 sends, not every one
                send_async(factory.make(ident, 0), None)
                ident += 1
                result.sent = ident
    else:
        interval_ns = int(1e9 / scenario.rate)
        for ident in range(int(limits.seconds * scenario.rate)):
            due = start_ns + ident * interval_ns
            now = time.monotonic_ns()
            if due > now:
                time.sleep((due - now) / 1e9)
            send_async(factory.make(ident, time.monotonic_ns()), on_sent)
            result.sent = ident + 1
    producer.flush()
    result.publish_elapsed = (time.monotonic_ns() - start_ns) / 1e9
    result.send_failed = len(failures)


def _drain(receiver: _Receiver, limits: Limits, result: RunResult) -> None:
    produced_at = time.monotonic()
    while receiver.counter.distinct < result.sent:
        now = time.monotonic()
        last_new = receiver.last_new_ns / 1e9 if receiver.last_new_ns else produced_at
        if now - max(last_new, produced_at) > limits.stall:
            result.gave_up = f"no new message for {limits.stall:.0f} s"
            break
        if now - produced_at > limits.drain_limit:
            result.gave_up = f"still incomplete {limits.drain_limit:.0f} s after the last send"
            break
        if not receiver.is_alive():
            result.gave_up = "the receiving thread stopped"
            break
        time.sleep(0.01)
    end_ns = receiver.last_new_ns or time.monotonic_ns()
    result.elapsed = max((end_ns - result.start_ns) / 1e9, 1e-9)
