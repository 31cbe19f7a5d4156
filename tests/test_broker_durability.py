"""kill -9 and restart on the same data dir: nothing acknowledged is lost, unacked is redelivered,
acked is not."""

from __future__ import annotations

import threading
import time

import pulsar
import pytest

from tests.broker_helpers import client, drain, receive_all, unique_topic


@pytest.mark.parametrize("sync", ["write", "fsync"])
def test_kill_restart_loses_no_acknowledged_send_and_redelivers_only_unacked(broker_factory, sync: str) -> None:
    broker = broker_factory(extra_args=["--sync", sync])
    topic = unique_topic("durable")
    total = 3000
    confirmed: set[int] = set()
    failed: list[str] = []
    lock = threading.Lock()

    with client(broker.service_url, operation_timeout_seconds=30) as c:
        # Batch-index acks: the acked members of a partly acknowledged batch must not come back.
        consumer = c.subscribe(
            topic, "audit", consumer_type=pulsar.ConsumerType.Shared, initial_position=pulsar.InitialPosition.Earliest, batch_index_ack_enabled=True
        )
        producer = c.create_producer(topic, batching_enabled=True, batching_max_publish_delay_ms=2, block_if_queue_full=True, send_timeout_millis=0)

        def on_sent(value: int):
            def callback(res: pulsar.Result, _msg_id: object) -> None:
                with lock:
                    (confirmed.add(value) if res == pulsar.Result.Ok else failed.append(f"{value}: {res}"))

            return callback

        # First half, consume and acknowledge part of it, then crash the broker mid-stream.
        for i in range(total // 2):
            producer.send_async(str(i).encode(), on_sent(i))
        producer.flush()
        acked_before: set[int] = set()
        for msg in receive_all(consumer, 600, ack=False):
            consumer.acknowledge(msg)
            acked_before.add(int(msg.data()))
        time.sleep(0.3)  # the client sends grouped acks every 100 ms
        for i in range(total // 2, total // 2 + 200):
            producer.send_async(str(i).encode(), on_sent(i))  # some of these are in flight at the kill
        broker.kill()
        broker.start()
        for i in range(total // 2 + 200, total):
            producer.send_async(str(i).encode(), on_sent(i))
        producer.flush()
        deadline = time.monotonic() + 60
        while len(confirmed) < total and time.monotonic() < deadline and not failed:
            time.sleep(0.05)
        assert not failed, failed[:5]
        assert len(confirmed) == total, f"only {len(confirmed)} of {total} sends acknowledged"

        after = [int(m.data()) for m in receive_all(consumer, total - len(acked_before), timeout_ms=15_000)]
        after += [int(m.data()) for m in drain(consumer, 500)]
        consumer.close()

    redelivered_acked = acked_before & set(after)
    assert not redelivered_acked, f"{len(redelivered_acked)} acknowledged messages came back, e.g. {sorted(redelivered_acked)[:5]}"
    missing = set(range(total)) - acked_before - set(after)
    assert not missing, f"{len(missing)} acknowledged sends lost, e.g. {sorted(missing)[:10]}"
    assert len(after) == len(set(after)), "messages delivered twice after the restart"


def test_clean_stop_and_restart_keeps_messages_and_cursor(broker_factory) -> None:
    broker = broker_factory()
    topic = unique_topic("restart")
    with client(broker.service_url) as c:
        consumer = c.subscribe(topic, "s", initial_position=pulsar.InitialPosition.Earliest)
        producer = c.create_producer(topic)
        for i in range(10):
            producer.send(f"m{i}".encode())
        assert len(receive_all(consumer, 4)) == 4
        time.sleep(0.3)
    assert broker.stop() == 0, broker.log_text()[-1000:]
    assert "broker stopped" in broker.log_text()
    broker.start()
    with client(broker.service_url) as c:
        consumer = c.subscribe(topic, "s")
        values = [m.data().decode() for m in receive_all(consumer, 6)]
        assert values == [f"m{i}" for i in range(4, 10)]
        assert drain(consumer) == []


def test_acknowledged_ledgers_are_deleted(broker_factory, tmp_path) -> None:
    broker = broker_factory(extra_args=["--ledger-max-mb", "1"])
    topic = unique_topic("reclaim")
    payload = b"x" * 64 * 1024
    with client(broker.service_url) as c:
        consumer = c.subscribe(topic, "s", initial_position=pulsar.InitialPosition.Earliest)
        producer = c.create_producer(topic, batching_enabled=False)
        for _ in range(64):  # 4 MiB: several 1 MiB ledgers
            producer.send(payload)
        topic_dir = next(broker.data_dir.glob("topics/persistent/public/default/reclaim-*"))
        before = sum(p.stat().st_size for p in topic_dir.glob("*.log"))
        assert before >= 4 * 1024 * 1024
        receive_all(consumer, 64)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            after = sum(p.stat().st_size for p in topic_dir.glob("*.log"))
            if after < 1024 * 1024 + 128 * 1024:
                break
            time.sleep(0.1)
        assert after < 1024 * 1024 + 128 * 1024, f"acknowledged data not reclaimed: {before} -> {after} bytes"
