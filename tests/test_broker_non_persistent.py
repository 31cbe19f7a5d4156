"""Non-persistent topics through the official client, on our broker and on Apache Pulsar (`backend`).

What docs/non-persistent.md describes: no storage and no backlog, messages reach only consumers
connected when they are published and are dropped for a subscription whose consumers have no
permits, no redelivery, subscriptions that end with their last consumer, Pulsar's admin REST
paths and stats shape for them, and the three regex subscription modes.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import pulsar
import pytest

from tests.broker_helpers import admin, client, drain, receive_all


def np_topic(prefix: str, namespace: str = "public/default") -> str:
    return f"non-persistent://{namespace}/{prefix}-{uuid.uuid4().hex[:8]}"


def rest_path(topic: str) -> str:
    return "/admin/v2/" + topic.replace("://", "/")


def stats_of(backend, topic: str) -> dict[str, Any]:
    status, body = admin(backend.admin_url, "GET", rest_path(topic) + "/stats")
    assert status == 200, (status, body)
    return dict(body)


def test_only_connected_consumers_get_messages_and_nothing_is_stored(backend) -> None:
    topic = np_topic("np-live")
    with client(backend.service_url) as c:
        producer = c.create_producer(topic, batching_enabled=False)
        before = producer.send(b"before")  # no subscription yet: gone
        consumer = c.subscribe(topic, "s")
        time.sleep(0.3)  # its FLOW (permits) reaches the broker before the first message: nothing waits for it
        ids = [producer.send(f"m{i}".encode()) for i in range(3)]
        got = receive_all(consumer, 3, 5000)
        assert [m.data() for m in got] == [b"m0", b"m1", b"m2"]
        assert drain(consumer, 500) == []
        # No ledger holds a non-persistent message: Pulsar names every one 0:0.
        assert {(i.ledger_id(), i.entry_id()) for i in [before, *ids]} == {(0, 0)}
        assert {(m.message_id().ledger_id(), m.message_id().entry_id()) for m in got} == {(0, 0)}
        stats = stats_of(backend, topic)
        later = c.subscribe(topic, "late", initial_position=pulsar.InitialPosition.Earliest)
        assert drain(later, 500) == []  # Earliest finds nothing: nothing was kept
    assert (stats["msgInCounter"], stats["msgOutCounter"], stats["storageSize"], stats["backlogSize"]) == (4, 3, 0, 0)
    sub = stats["subscriptions"]["s"]
    assert (sub["msgBacklog"], sub["isDurable"], sub["type"], sub["msgOutCounter"]) == (0, False, "Exclusive", 3)
    assert "deduplicationStatus" not in stats  # a persistent topic's field only
    assert isinstance(stats["msgDropRate"], float) and isinstance(sub["msgDropRate"], float)
    assert [isinstance(p["msgDropRate"], float) for p in stats["publishers"]] == [True]


def test_message_dropped_for_a_consumer_without_permits(backend) -> None:
    topic = np_topic("np-drop")
    with client(backend.service_url) as c:
        producer = c.create_producer(topic, batching_enabled=False)
        consumer = c.subscribe(topic, "slow", receiver_queue_size=3)
        time.sleep(0.3)  # its permits first, as above
        sent = [f"m{i}".encode() for i in range(20)]
        for payload in sent:
            producer.send(payload)
        got = [m.data() for m in receive_all(consumer, 20, 2000)]
        # The consumer's queue took the first few; the rest found no permits and were dropped.
        assert 0 < len(got) < 20 and got == sent[: len(got)], got
        # Having received, the consumer has permits again: the next message arrives.
        producer.send(b"after")
        assert consumer.receive(5000).data() == b"after"
        stats = stats_of(backend, topic)
    assert stats["msgInCounter"] == 21 and stats["subscriptions"]["slow"]["msgOutCounter"] == len(got) + 1


def test_drop_rate_counts_dropped_messages_on_our_broker(broker) -> None:
    """Apache Pulsar computes its rates only every statsUpdateFrequencyInSecs (60 s in
    standalone.conf), so this value check runs on our broker (rates every second) only; the
    field's presence and type are checked on both above."""
    topic = np_topic("np-drop-rate")
    with client(broker.service_url) as c:
        producer = c.create_producer(topic, batching_enabled=False)
        c.subscribe(topic, "slow", receiver_queue_size=1)
        time.sleep(0.3)  # its permits first, as above
        for i in range(50):
            producer.send(f"m{i}".encode())
        deadline = time.monotonic() + 5
        stats = stats_of(broker, topic)
        while time.monotonic() < deadline and stats["msgDropRate"] == 0.0:
            time.sleep(0.3)
            stats = stats_of(broker, topic)
    assert stats["msgDropRate"] > 0.0 and stats["subscriptions"]["slow"]["msgDropRate"] > 0.0, stats


def test_no_redelivery_and_subscription_ends_with_its_last_consumer(backend) -> None:
    topic = np_topic("np-nack")
    with client(backend.service_url) as c:
        producer = c.create_producer(topic, batching_enabled=False)
        consumer = c.subscribe(topic, "s", consumer_type=pulsar.ConsumerType.Shared, negative_ack_redelivery_delay_ms=100)
        time.sleep(0.3)  # its permits first, as above
        producer.send(b"once")
        msg = consumer.receive(5000)
        consumer.negative_acknowledge(msg)
        consumer.redeliver_unacknowledged_messages()
        assert drain(consumer, 1000) == []  # nothing kept, nothing to deliver again
        consumer.acknowledge(msg)  # accepted, and changes nothing
        consumer.seek(pulsar.MessageId.earliest)  # accepted: there is no cursor to move
        assert drain(consumer, 500) == []
        with pytest.raises(pulsar.UnknownError):  # Pulsar's answer too: no last message id is kept
            consumer.get_last_message_id()
        assert list(stats_of(backend, topic)["subscriptions"]) == ["s"]
        consumer.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and stats_of(backend, topic)["subscriptions"]:
            time.sleep(0.2)
        assert stats_of(backend, topic)["subscriptions"] == {}


def test_shared_round_robin_and_second_exclusive_consumer_refused(backend) -> None:
    topic = np_topic("np-shared")
    with client(backend.service_url) as c:
        producer = c.create_producer(topic, batching_enabled=False)
        a = c.subscribe(topic, "sh", consumer_type=pulsar.ConsumerType.Shared)
        b = c.subscribe(topic, "sh", consumer_type=pulsar.ConsumerType.Shared)
        time.sleep(0.5)  # both have sent their first permits
        for i in range(10):
            producer.send(f"s{i}".encode())
        got_a = [m.data() for m in receive_all(a, 5, 3000)]
        got_b = [m.data() for m in receive_all(b, 5, 3000)]
        assert len(got_a) == len(got_b) == 5 and sorted(got_a + got_b) == sorted(f"s{i}".encode() for i in range(10))
        assert drain(a, 300) == [] and drain(b, 300) == []
        c.subscribe(topic, "ex")
        with pytest.raises(pulsar.ConsumerBusy):
            c.subscribe(topic, "ex")


def test_reader_sees_only_what_is_published_after_it_connects(backend) -> None:
    topic = np_topic("np-reader")
    with client(backend.service_url) as c:
        producer = c.create_producer(topic, batching_enabled=False)
        producer.send(b"old")
        reader = c.create_reader(topic, pulsar.MessageId.earliest)
        time.sleep(0.3)
        producer.send(b"new")
        assert reader.read_next(5000).data() == b"new"
        with pytest.raises(pulsar.Timeout):
            reader.read_next(500)
        subs = stats_of(backend, topic)["subscriptions"]
        assert [(s["type"], s["isDurable"]) for s in subs.values()] == [("Exclusive", False)]


def test_admin_rest_create_list_stats_delete(backend) -> None:
    topic = np_topic("np-admin")
    path = rest_path(topic)
    status, body = admin(backend.admin_url, "GET", path + "/stats")
    assert status == 404 and body["reason"] == f"Topic {topic} not found"
    assert admin(backend.admin_url, "PUT", path)[0] == 204
    assert admin(backend.admin_url, "GET", path + "/stats")[0] == 200
    status, listed = admin(backend.admin_url, "GET", "/admin/v2/non-persistent/public/default")
    assert status == 200 and topic in listed
    status, persistent = admin(backend.admin_url, "GET", "/admin/v2/persistent/public/default")
    assert status == 200 and topic not in persistent and topic.replace("non-persistent://", "persistent://") not in persistent
    assert admin(backend.admin_url, "DELETE", path)[0] == 204
    assert admin(backend.admin_url, "GET", path + "/stats")[0] == 404


def test_partitioned_non_persistent_topic(backend) -> None:
    topic = np_topic("np-parts")
    path = rest_path(topic)
    assert admin(backend.admin_url, "PUT", path + "/partitions", 2)[0] == 204
    assert admin(backend.admin_url, "GET", path + "/partitions") == (200, {"partitions": 2, "deleted": False})
    with client(backend.service_url) as c:
        consumer = c.subscribe(topic, "ps")
        time.sleep(0.3)  # its permits first, as above
        producer = c.create_producer(topic, batching_enabled=False)
        for i in range(4):
            producer.send(f"p{i}".encode(), partition_key=str(i))
        got = receive_all(consumer, 4, 5000)
        assert sorted(m.data() for m in got) == [b"p0", b"p1", b"p2", b"p3"]
        assert {m.topic_name() for m in got} <= {f"{topic}-partition-{i}" for i in range(2)}
        status, stats = admin(backend.admin_url, "GET", path + "/partitioned-stats")
    assert status == 200 and stats["msgInCounter"] == 4 and stats["storageSize"] == 0
    assert isinstance(stats["msgDropRate"], float)
    status, listed = admin(backend.admin_url, "GET", "/admin/v2/non-persistent/public/default/partitioned")
    assert status == 200 and topic in listed


MODES = {
    "persistent-only": (pulsar.RegexSubscriptionMode.PersistentOnly, [b"P"]),
    "non-persistent-only": (pulsar.RegexSubscriptionMode.NonPersistentOnly, [b"N"]),
    "all": (pulsar.RegexSubscriptionMode.AllTopics, [b"N", b"P"]),
}


@pytest.mark.parametrize("mode", list(MODES))
def test_regex_subscription_modes(backend, mode: str) -> None:
    namespace = "public/regex-modes"
    admin(backend.admin_url, "PUT", f"/admin/v2/namespaces/{namespace}")
    tag = uuid.uuid4().hex[:8]
    regex_mode, expected = MODES[mode]
    with client(backend.service_url) as c:
        persistent = c.create_producer(f"persistent://{namespace}/rx{tag}-p", batching_enabled=False)
        non_persistent = c.create_producer(f"non-persistent://{namespace}/rx{tag}-n", batching_enabled=False)
        consumer = c.subscribe(re.compile(f"{namespace}/rx{tag}-.*"), "s", regex_subscription_mode=regex_mode)
        time.sleep(0.5)  # the non-persistent topic keeps nothing: let the consumers' permits arrive first
        persistent.send(b"P")
        non_persistent.send(b"N")
        got = receive_all(consumer, len(expected), 5000) + drain(consumer, 500)
    assert sorted(m.data() for m in got) == expected


def test_regex_all_mode_finds_a_non_persistent_topic_created_later(backend, monkeypatch) -> None:
    # As in test_broker_features: the Python wrapper never passes pattern_auto_discovery_period on.
    import _pulsar

    original = _pulsar.ConsumerConfiguration

    def configured():
        conf = original()
        conf.pattern_auto_discovery_period(1)
        return conf

    monkeypatch.setattr(_pulsar, "ConsumerConfiguration", configured)
    namespace = "public/regex-modes"
    admin(backend.admin_url, "PUT", f"/admin/v2/namespaces/{namespace}")
    tag = uuid.uuid4().hex[:8]
    with client(backend.service_url) as c:
        c.create_producer(f"persistent://{namespace}/late{tag}-p")  # so the pattern matches a topic from the start
        consumer = c.subscribe(re.compile(f"persistent://{namespace}/late{tag}-.*"), "s",
                               regex_subscription_mode=pulsar.RegexSubscriptionMode.AllTopics)
        later = f"non-persistent://{namespace}/late{tag}-n"
        producer = c.create_producer(later, batching_enabled=False)
        deadline = time.monotonic() + 20
        got = None
        while time.monotonic() < deadline and got is None:
            producer.send(b"late")  # lost until the consumer has found the topic: send again
            try:
                got = consumer.receive(1000)
            except pulsar.Timeout:
                continue
    assert got is not None and got.data() == b"late" and got.topic_name() == later


def test_key_shared_keeps_each_key_on_one_consumer_and_failover_uses_one(backend) -> None:
    keyed, failover = np_topic("np-keyed"), np_topic("np-failover")
    with client(backend.service_url) as c:
        k1 = c.subscribe(keyed, "ks", consumer_type=pulsar.ConsumerType.KeyShared, consumer_name="k1")
        k2 = c.subscribe(keyed, "ks", consumer_type=pulsar.ConsumerType.KeyShared, consumer_name="k2")
        f1 = c.subscribe(failover, "fo", consumer_type=pulsar.ConsumerType.Failover, consumer_name="f1")
        f2 = c.subscribe(failover, "fo", consumer_type=pulsar.ConsumerType.Failover, consumer_name="f2")
        time.sleep(0.5)  # their permits first, as above
        keyed_producer = c.create_producer(keyed, batching_enabled=False)
        failover_producer = c.create_producer(failover, batching_enabled=False)
        for i in range(40):
            keyed_producer.send(f"{i}".encode(), partition_key=f"key-{i % 8}")
            failover_producer.send(f"{i}".encode())
        got = {name: drain(consumer, 1500) for name, consumer in (("k1", k1), ("k2", k2), ("f1", f1), ("f2", f2))}
    keys = {name: {m.partition_key() for m in got[name]} for name in ("k1", "k2")}
    assert sorted(int(m.data()) for m in got["k1"] + got["k2"]) == list(range(40))
    assert keys["k1"].isdisjoint(keys["k2"]), keys
    # One active consumer takes everything (which one is Pulsar's choice on a non-partitioned topic).
    assert sorted(len(got[name]) for name in ("f1", "f2")) == [0, 40]
