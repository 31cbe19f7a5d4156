"""Every message delivered exactly once per subscription, in order where the type promises it.

The broker's required delivery matrix: batching off/on x Exclusive/Failover/Shared/Key_Shared x subscribed
before/after producing x receiver queue 1 and 1000. CI runs 2,000 messages per case; the `slow`
variant (make test-slow / make bench) runs the full 20,000.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import defaultdict

import pulsar
import pytest

from tests.broker_helpers import client, receive_all, unique_topic

SUB_TYPES = {
    "Exclusive": pulsar.ConsumerType.Exclusive,
    "Failover": pulsar.ConsumerType.Failover,
    "Shared": pulsar.ConsumerType.Shared,
    "Key_Shared": pulsar.ConsumerType.KeyShared,
}
CASES = list(itertools.product([False, True], SUB_TYPES, ["before", "after"], [1, 1000]))
KEYS = 17


def run_case(service_url: str, batching: bool, sub_type: str, when: str, queue: int, count: int) -> None:
    topic = unique_topic(f"matrix-{sub_type}")
    consumers_per_sub = 2 if sub_type in ("Shared", "Key_Shared", "Failover") else 1
    with client(service_url) as c:
        lock = threading.Lock()
        received: dict[int, list[int]] = defaultdict(list)
        done = threading.Event()
        total: list[int] = []

        def listener_for(idx: int):
            def on_message(consumer: pulsar.Consumer, msg: pulsar.Message) -> None:
                value = int(msg.data())
                with lock:
                    received[idx].append(value)
                    total.append(value)
                    if len(total) >= count:
                        done.set()
                consumer.acknowledge(msg)

            return on_message

        def subscribe() -> list[pulsar.Consumer]:
            return [
                c.subscribe(
                    topic,
                    "sub",
                    consumer_type=SUB_TYPES[sub_type],
                    receiver_queue_size=queue,
                    initial_position=pulsar.InitialPosition.Earliest,
                    consumer_name=f"c{i}",
                    message_listener=listener_for(i),
                )
                for i in range(consumers_per_sub)
            ]

        consumers = subscribe() if when == "before" else []
        producer = c.create_producer(
            topic,
            batching_enabled=batching,
            batching_max_messages=100,
            batching_max_publish_delay_ms=5,
            block_if_queue_full=True,
            batching_type=pulsar.BatchingType.KeyBased if sub_type == "Key_Shared" and batching else pulsar.BatchingType.Default,
        )
        failures: list[str] = []
        for i in range(count):
            producer.send_async(
                f"{i}".encode(),
                lambda res, _id: failures.append(str(res)) if res != pulsar.Result.Ok else None,
                partition_key=f"k{i % KEYS}",
            )
        producer.flush()
        producer.close()
        assert not failures, failures[:5]
        if when == "after":
            consumers = subscribe()
        done.wait(60)
        time.sleep(0.3)  # anything beyond `count` would be a duplicate: give it a moment to show up
        with lock:
            snapshot = list(total)
        assert len(snapshot) == count, f"delivered {len(snapshot)} of {count}"
        assert sorted(snapshot) == list(range(count)), "lost or duplicated messages"
        if sub_type in ("Exclusive", "Failover"):
            delivered = [v for idx in sorted(received) for v in received[idx]]
            assert delivered == list(range(count)), "log order broken"
            assert sum(1 for v in received.values() if v) == 1, "failover delivered to more than the active consumer"
        if sub_type == "Key_Shared":
            for values in received.values():
                per_key: dict[int, list[int]] = defaultdict(list)
                for v in values:
                    per_key[v % KEYS].append(v)
                for key, seq in per_key.items():
                    assert seq == sorted(seq), f"key k{key} out of order"
            if when == "before":  # membership fixed from the start: each key has one owner
                owners = defaultdict(set)
                for idx, values in received.items():
                    for v in values:
                        owners[v % KEYS].add(idx)
                assert all(len(o) == 1 for o in owners.values()), "a key went to two consumers"
        if sub_type == "Shared" and when == "before":
            assert all(received[i] for i in range(len(consumers))), "Shared did not spread over consumers"
        for consumer in consumers:
            consumer.close()


@pytest.mark.parametrize("batching,sub_type,when,queue", CASES, ids=lambda v: str(v))
def test_delivery_matrix(backend, batching: bool, sub_type: str, when: str, queue: int) -> None:
    run_case(backend.service_url, batching, sub_type, when, queue, 2000 if queue > 1 else 500)


@pytest.mark.slow
@pytest.mark.parametrize("batching,sub_type,when,queue", CASES, ids=lambda v: str(v))
def test_delivery_matrix_20000(backend, batching: bool, sub_type: str, when: str, queue: int) -> None:
    run_case(backend.service_url, batching, sub_type, when, queue, 20_000)


def test_receive_all_helper_reports_shortfall(backend) -> None:
    topic = unique_topic("shortfall")
    with client(backend.service_url) as c:
        consumer = c.subscribe(topic, "s")
        producer = c.create_producer(topic)
        producer.send(b"only-one")
        got = receive_all(consumer, 2, timeout_ms=300)
        assert [m.data() for m in got] == [b"only-one"]
