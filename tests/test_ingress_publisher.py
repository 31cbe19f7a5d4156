"""BrokerPublisher's hand-off of broker receipts to the event loop (batched, nothing lost), with a fake
producer whose receipts arrive on other threads like pulsar-client's."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pulsar

from ingress.metrics import IngressMetrics
from ingress.publisher import BrokerPublisher
from ingress.session import Publish


class FakeProducer:
    """Keeps each send's callback; the test fires them from threads, as the client's IO thread would."""

    def __init__(self, fail_on: set[int] | None = None) -> None:
        self.callbacks: list[Any] = []
        self.fail_on = fail_on or set()

    def send_async(self, payload: bytes, callback: Any, **_kwargs: Any) -> None:
        if len(self.callbacks) in self.fail_on:
            self.callbacks.append(None)
            raise RuntimeError("producer queue is full")
        self.callbacks.append(callback)


def publish(ticket: int) -> Publish:
    return Publish(ticket, "raw-video", b"x" * 10, {"kind": "video"}, "s", 0)


def make_publisher(producer: FakeProducer, loop: asyncio.AbstractEventLoop) -> BrokerPublisher:
    pub = BrokerPublisher("pulsar://127.0.0.1:1", "public", "wtpulsar", IngressMetrics())
    pub._producers["raw-video"] = producer
    pub._loop = loop
    pub.latency_sink = []
    return pub


async def _until(predicate: Any) -> None:
    while not predicate():
        await asyncio.sleep(0.001)


def sample(metrics: IngressMetrics, name: str, labels: dict[str, str]) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_receipts_from_several_threads_all_reach_the_loop_once() -> None:
    async def scenario() -> tuple[BrokerPublisher, list[tuple[int, bool, str]], int]:
        loop = asyncio.get_running_loop()
        producer = FakeProducer()
        pub = make_publisher(producer, loop)
        outcomes: list[tuple[int, bool, str]] = []
        n = 400
        all_done = asyncio.Event()

        def done_for(ticket: int) -> Any:
            def done(ok: bool, err: str) -> None:
                assert threading.current_thread() is threading.main_thread()  # never on the client's thread
                outcomes.append((ticket, ok, err))
                if len(outcomes) == n:
                    all_done.set()
            return done

        for ticket in range(n):
            pub.send(publish(ticket), loop.time(), done_for(ticket))
        assert pub.inflight == n

        def fire(callbacks: list[tuple[int, Any]]) -> None:
            for ticket, callback in callbacks:
                result = pulsar.Result.Timeout if ticket % 50 == 7 else pulsar.Result.Ok
                callback(result, None)

        indexed = list(enumerate(producer.callbacks))
        # Four waves, each waited for: receipts that arrive after a drain ran must schedule another one.
        for wave in range(4):
            part = indexed[wave * n // 4:(wave + 1) * n // 4]
            threads = [threading.Thread(target=fire, args=(part[i::4],)) for i in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                await asyncio.to_thread(t.join)
            target = (wave + 1) * n // 4
            await asyncio.wait_for(_until(lambda t=target: len(outcomes) >= t), 5)
        await asyncio.wait_for(all_done.wait(), 10)
        await asyncio.sleep(0.05)  # a late duplicate would show up here
        return pub, outcomes, n

    pub, outcomes, n = asyncio.run(scenario())
    assert sorted(t for t, _, _ in outcomes) == list(range(n))  # each exactly once
    failed = {t for t, ok, _ in outcomes if not ok}
    assert failed == {t for t in range(n) if t % 50 == 7}
    assert all("Timeout" in err for t, ok, err in outcomes if not ok)
    assert pub.inflight == 0
    assert sample(pub.metrics, "wtpulsar_ingress_inflight", {}) == 0
    assert sample(pub.metrics, "wtpulsar_ingress_published_total", {"topic": "raw-video"}) == n - len(failed)
    assert sample(pub.metrics, "wtpulsar_ingress_publish_errors_total", {"topic": "raw-video"}) == len(failed)
    assert sample(pub.metrics, "wtpulsar_ingress_publish_latency_seconds_count", {"topic": "raw-video"}) \
        == n - len(failed)
    # the benchmark's latency parts: one (to client, to receipt, to loop) tuple per acked publish
    assert pub.latency_sink is not None and len(pub.latency_sink) == n - len(failed)
    assert all(len(p) == 3 and min(p) >= 0.0 for p in pub.latency_sink)


def test_a_failing_handler_does_not_strand_the_other_outcomes() -> None:
    async def scenario() -> list[int]:
        loop = asyncio.get_running_loop()
        producer = FakeProducer()
        pub = make_publisher(producer, loop)
        seen: list[int] = []

        def done_for(ticket: int) -> Any:
            def done(ok: bool, err: str) -> None:
                seen.append(ticket)
                if ticket == 1:
                    raise ValueError("a session's handler broke")
            return done

        for ticket in range(3):
            pub.send(publish(ticket), loop.time(), done_for(ticket))
        # all three receipts land before the loop runs: one drain handles them, in order
        for callback in producer.callbacks:
            callback(pulsar.Result.Ok, None)
        await asyncio.sleep(0.05)
        assert pub.inflight == 0
        return seen

    assert asyncio.run(scenario()) == [0, 1, 2]


def test_send_that_raises_reports_failure_without_a_receipt() -> None:
    async def scenario() -> list[tuple[bool, str]]:
        loop = asyncio.get_running_loop()
        pub = make_publisher(FakeProducer(fail_on={0}), loop)
        out: list[tuple[bool, str]] = []
        pub.send(publish(0), loop.time(), lambda ok, err: out.append((ok, err)))
        await asyncio.sleep(0.01)
        assert pub.inflight == 0
        return out

    assert asyncio.run(scenario()) == [(False, "producer queue is full")]


def test_unknown_topic_fails_at_once() -> None:
    async def scenario() -> list[tuple[bool, str]]:
        loop = asyncio.get_running_loop()
        pub = make_publisher(FakeProducer(), loop)
        out: list[tuple[bool, str]] = []
        pub.send(Publish(0, "no-such-topic", b"", {}, "k", 0), loop.time(), lambda ok, err: out.append((ok, err)))
        return out

    assert asyncio.run(scenario()) == [(False, "no producer for no-such-topic")]
