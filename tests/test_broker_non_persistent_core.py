"""Non-persistent topics without a network: route()'s whole list of decisions for one published
message, and how long an unused topic is kept."""

from __future__ import annotations

from types import SimpleNamespace

from broker.config import BrokerConfig
from broker.entries import EntryMeta
from broker.names import TopicName
from broker.non_persistent import Drop, Handoff, route
from broker.service import BrokerService
from broker.subscription import (
    EXCLUSIVE,
    FAILOVER,
    HASH_RANGE,
    KEY_SHARED,
    SHARED,
    Consumer,
    Subscription,
    SubType,
)

TOPIC = SimpleNamespace(name=SimpleNamespace(partition_index=-1))


def sub(name: str, sub_type: SubType, *permits: int) -> tuple[Subscription, list[Consumer]]:
    s = Subscription(TOPIC, name, sub_type, False, -1)
    consumers = [Consumer(i, f"c{i}", sub_type, 0, deliver=lambda *a: None, permits=p) for i, p in enumerate(permits)]
    for c in consumers:
        s.add_consumer(c)
    return s, consumers


def meta(messages: int = 1, slot: int = 0) -> EntryMeta:
    return EntryMeta(publish_time=1, num_messages=messages, slot=slot, deliver_at=0, size=10)


def test_each_subscription_decides_on_its_own() -> None:
    exclusive, (e0,) = sub("ex", EXCLUSIVE, 5)
    starved, _ = sub("starved", EXCLUSIVE, 0)
    empty, _ = sub("empty", SHARED)
    assert route([exclusive, starved, empty], meta(3)) == [Handoff("ex", e0), Drop("starved", 3), Drop("empty", 3)]


def test_failover_goes_to_the_active_consumer_only() -> None:
    failover, (f0, f1) = sub("fo", FAILOVER, 0, 9)
    assert failover.active is f0
    assert route([failover], meta()) == [Drop("fo", 1)]  # f1 has permits but is not active


def test_shared_round_robin_skips_consumers_without_permits() -> None:
    shared, (a, b, c) = sub("sh", SHARED, 1, 0, 1)
    decisions = [route([shared], meta())[0] for _ in range(3)]
    assert decisions == [Handoff("sh", a), Handoff("sh", c), Handoff("sh", a)]  # route() itself takes no permits
    a.permits = c.permits = 0
    assert route([shared], meta()) == [Drop("sh", 1)]


def test_key_shared_only_the_key_owner_may_take_it() -> None:
    keyed, (k0, k1) = sub("ks", KEY_SHARED, 0, 4)
    low, high = meta(slot=0), meta(slot=HASH_RANGE - 1)
    assert route([keyed], low) == [Drop("ks", 1)]  # slot 0 belongs to c0, which has no permits
    assert route([keyed], high) == [Handoff("ks", k1)]


def test_unused_topic_is_forgotten_after_the_inactive_time() -> None:
    service = BrokerService(BrokerConfig(data_dir=None, inactive_non_persistent_seconds=60))
    idle, used = TopicName.parse("non-persistent://public/default/idle"), TopicName.parse("non-persistent://public/default/used")
    kept = TopicName.parse("persistent://public/default/kept")
    for name in (idle, used, kept):
        service.get_topic(name, create=True)
    service.topics[str(idle)].last_active = service.topics[str(used)].last_active = 1000.0
    service.topics[str(used)].open_non_persistent("s", EXCLUSIVE)
    assert service.drop_inactive_non_persistent(1059.0) == []
    assert service.drop_inactive_non_persistent(1060.0) == [str(idle)]
    assert sorted(service.topics) == [str(used), str(kept)]
    del service.topics[str(used)].subscriptions["s"]  # its last consumer left; active until now
    assert service.drop_inactive_non_persistent(1100.0) == []
    assert service.drop_inactive_non_persistent(1160.0) == [str(used)]
    assert service.topics_of_namespace("public/default", mode=1) == []
