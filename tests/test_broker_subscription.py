"""broker/subscription.py driven without I/O: entries, permits, acks and `now` in, whole lists of
Delivery events out, for every subscription type (docs/pulsar-wire-protocol.md §7-§10).

A `Log` stands in for the topic (the subscription's EntrySource), consumers collect what they are
handed in one list, and the time is whatever the test says. No socket and no sleep; files only where
the file cursor store is compared with the in-memory one. At the end, a whole topic over in-memory
stores, and the sticky-range check as a connection answers it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.config import BrokerConfig
from broker.connection import ServerConnection
from broker.entries import EntryMeta
from broker.names import TopicName
from broker.proto import pulsar_wire_pb2 as pb
from broker.service import BrokerService
from broker.storage import FileCursorStore, MemoryCursorStore, TopicMeta, open_topic_stores
from broker.subscription import (
    EXCLUSIVE,
    FAILOVER,
    HASH_RANGE,
    KEY_SHARED,
    SHARED,
    Consumer,
    Delivery,
    Subscription,
    SubType,
    sticky_slot,
)
from broker.topic import Producer, Topic
from broker.wire import FrameDecoder, T, build_entry, command, encode_command

LOW, HIGH = 100, HASH_RANGE - 100  # slots of the lower and the upper half of the hash range


class Log:
    """An in-memory topic: entries with the facts dispatch reads, all of them synced."""

    def __init__(self, partition: int = -1) -> None:
        suffix = f"-partition-{partition}" if partition >= 0 else ""
        self.name = TopicName.parse(f"persistent://public/default/t{suffix}")
        self.metas: list[EntryMeta] = []
        self.entries: list[bytes] = []
        self.durable_end = 0

    @property
    def log_end(self) -> int:
        return len(self.entries)

    def entry_meta(self, offset: int) -> EntryMeta:
        return self.metas[offset]

    def read_entry(self, offset: int) -> bytes:
        return self.entries[offset]

    def append(self, slot: int = LOW, deliver_at: int = 0, messages: int = 1) -> int:
        offset = len(self.entries)
        body = b"e%d" % offset
        self.metas.append(EntryMeta(publish_time=1_000 + offset, num_messages=messages, slot=slot, deliver_at=deliver_at, size=len(body)))
        self.entries.append(body)
        self.durable_end = len(self.entries)
        return offset

    def delivery(self, consumer: Consumer, offset: int, redelivery_count: int = 0, ack_set: tuple[int, ...] | None = None) -> Delivery:
        """The Delivery the subscription is expected to emit for `offset`."""
        return Delivery(consumer.consumer_id, offset, self.metas[offset], self.entries[offset], redelivery_count, ack_set)


class Sub:
    """A subscription over a Log with its consumers' deliveries and active-consumer notices."""

    def __init__(self, sub_type: SubType, log: Log | None = None, durable: bool = True) -> None:
        self.log = log or Log()
        self.sub = Subscription(self.log, "s", sub_type, durable, -1)
        self.sub_type = sub_type
        self.out: list[Delivery] = []
        self.notices: list[tuple[str, bool]] = []

    def join(self, name: str, permits: int = 0, priority: int = 0, sticky: list[tuple[int, int]] | None = None) -> Consumer:
        consumer = Consumer(len(self.sub.consumers) + len(self.notices) + 100 * len(name), name, self.sub_type, priority,
                            deliver=self.out.append, notify_active=lambda c, active: self.notices.append((c.name, active)),
                            permits=permits, sticky_ranges=sticky)  # fmt: skip
        self.sub.add_consumer(consumer)
        return consumer

    def dispatch(self, now_ms: int = 0) -> list[Delivery]:
        self.sub.dispatch(now_ms)
        out = list(self.out)
        self.out.clear()
        return out

    def flow(self, consumer: Consumer, permits: int, now_ms: int = 0) -> list[Delivery]:
        self.sub.flow(consumer, permits)
        return self.dispatch(now_ms)


# ------------------------------------------------------------------ Exclusive


def test_exclusive_delivers_in_log_order_as_permits_allow() -> None:
    s = Sub(EXCLUSIVE)
    offsets = [s.log.append() for _ in range(5)]
    c = s.join("c")
    assert s.dispatch() == []  # no permits yet
    assert s.flow(c, 3) == [s.log.delivery(c, o) for o in offsets[:3]]
    assert s.flow(c, 10) == [s.log.delivery(c, o) for o in offsets[3:]]
    assert c.permits == 8 and s.sub.backlog() == 5
    later = s.log.append()
    assert s.dispatch() == [s.log.delivery(c, later)]


def test_exclusive_cumulative_ack_clears_the_backlog_and_rewind_redelivers_the_rest_with_count_0() -> None:
    s = Sub(EXCLUSIVE)
    offsets = [s.log.append() for _ in range(4)]
    c = s.join("c", permits=10)
    assert s.dispatch() == [s.log.delivery(c, o) for o in offsets]
    s.sub.ack_cumulative(1)
    assert s.sub.mark_delete == 1 and s.sub.backlog() == 2
    s.sub.redeliver(c, None)  # Exclusive keeps no redelivery count (docs/pulsar-wire-protocol.md §10)
    assert s.dispatch() == [s.log.delivery(c, 2), s.log.delivery(c, 3)]


def test_exclusive_ignores_delivery_time() -> None:
    s = Sub(EXCLUSIVE)
    late = s.log.append(deliver_at=5_000)
    c = s.join("c", permits=1)
    assert s.dispatch(now_ms=1_000) == [s.log.delivery(c, late)]  # delayed delivery is Shared/Key_Shared only


# ------------------------------------------------------------------ Shared


def test_shared_deals_round_robin_over_consumers_with_permits() -> None:
    s = Sub(SHARED)
    offsets = [s.log.append() for _ in range(7)]
    a, b, c = s.join("a", permits=5), s.join("b", permits=0), s.join("c", permits=2)
    assert s.dispatch() == [s.log.delivery(a, 0), s.log.delivery(c, 1), s.log.delivery(a, 2), s.log.delivery(c, 3),
                            s.log.delivery(a, 4), s.log.delivery(a, 5), s.log.delivery(a, 6)]  # fmt: skip
    assert (a.permits, b.permits, c.permits) == (0, 0, 0)
    more = [s.log.append() for _ in range(3)]
    assert s.dispatch() == []
    assert s.flow(b, 1) == [s.log.delivery(b, more[0])]
    assert len(offsets) == 7 and s.sub.backlog() == 10


def test_shared_batch_costs_its_messages_in_permits() -> None:
    s = Sub(SHARED)
    batch, single = s.log.append(messages=4), s.log.append()
    a = s.join("a", permits=4)
    assert s.dispatch() == [s.log.delivery(a, batch)] and a.permits == 0
    assert s.flow(a, 1) == [s.log.delivery(a, single)]


def test_shared_nack_redelivers_first_with_a_growing_count() -> None:
    s = Sub(SHARED)
    first, second = s.log.append(), s.log.append()
    a = s.join("a", permits=2)
    assert s.dispatch() == [s.log.delivery(a, first), s.log.delivery(a, second)]
    third = s.log.append()
    s.sub.redeliver(a, [second])
    assert s.flow(a, 2) == [s.log.delivery(a, second, redelivery_count=1), s.log.delivery(a, third)]
    s.sub.redeliver(a, [second])
    assert s.flow(a, 1) == [s.log.delivery(a, second, redelivery_count=2)]


def test_shared_departed_consumers_entries_go_to_the_others_first() -> None:
    s = Sub(SHARED)
    offsets = [s.log.append() for _ in range(4)]
    a, b = s.join("a", permits=1), s.join("b", permits=1)
    assert s.dispatch() == [s.log.delivery(a, 0), s.log.delivery(b, 1)]
    s.sub.remove_consumer(a)
    assert s.flow(b, 2) == [s.log.delivery(b, 0), s.log.delivery(b, 2)]  # a's entry before new ones, count unchanged
    assert s.sub.pending == {0: b, 1: b, 2: b} and len(offsets) == 4


def test_ack_removes_from_the_backlog_and_acked_entries_are_not_redelivered() -> None:
    s = Sub(SHARED)
    offsets = [s.log.append() for _ in range(3)]
    a, b = s.join("a", permits=3), s.join("b")
    assert s.dispatch() == [s.log.delivery(a, o) for o in offsets]
    s.sub.ack_individual(1)
    assert s.sub.backlog() == 2 and s.sub.mark_delete == -1
    s.sub.ack_individual(0)
    assert s.sub.backlog() == 1 and s.sub.mark_delete == 1  # 0 and 1 acked: the mark moves past both
    s.sub.remove_consumer(a)
    assert s.flow(b, 5) == [s.log.delivery(b, 2)]


def test_partly_acked_batch_is_redelivered_with_its_ack_set() -> None:
    s = Sub(SHARED)
    batch = s.log.append(messages=4)
    a = s.join("a", permits=4)
    assert s.dispatch() == [s.log.delivery(a, batch)]
    s.sub.ack_individual(batch, [0b1010])  # indexes 0 and 2 acked: bits of 1 and 3 still set
    assert s.sub.backlog() == 1
    s.sub.redeliver(a, [batch])
    assert s.flow(a, 1) == [s.log.delivery(a, batch, redelivery_count=1, ack_set=(0b1010,))]
    assert a.permits == 1 - 2  # one permit lets the entry go; it costs its two unacknowledged messages
    s.sub.ack_individual(batch, [0])
    assert s.sub.backlog() == 0 and s.sub.mark_delete == batch


# ------------------------------------------------------------------ delayed delivery


@pytest.mark.parametrize("sub_type", [SHARED, KEY_SHARED])
def test_delayed_entries_wait_until_now_passes_their_time(sub_type: SubType) -> None:
    s = Sub(sub_type)
    soon, late, plain = s.log.append(deliver_at=5_000), s.log.append(deliver_at=9_000), s.log.append()
    a = s.join("a", permits=10)
    assert s.dispatch(now_ms=4_999) == [s.log.delivery(a, plain)]
    assert s.dispatch(now_ms=4_999) == []
    assert s.dispatch(now_ms=5_000) == [s.log.delivery(a, soon)]
    assert s.dispatch(now_ms=8_999) == []
    assert s.dispatch(now_ms=20_000) == [s.log.delivery(a, late)]
    assert s.sub.delayed == []


def test_delayed_entry_released_while_no_consumer_has_permits_waits_for_flow() -> None:
    s = Sub(SHARED)
    late = s.log.append(deliver_at=5_000)
    a = s.join("a")
    assert s.dispatch(now_ms=6_000) == []
    assert s.flow(a, 1, now_ms=6_001) == [s.log.delivery(a, late)]


# ------------------------------------------------------------------ Key_Shared


def test_key_shared_auto_split_keeps_each_key_on_one_consumer() -> None:
    s = Sub(KEY_SHARED)
    slots = [LOW, HIGH, LOW, HIGH, LOW]
    offsets = [s.log.append(slot=slot) for slot in slots]
    b, a = s.join("b", permits=10), s.join("a", permits=10)  # ranked by name: a owns the lower half
    assert s.dispatch() == [s.log.delivery(a if slot == LOW else b, o) for o, slot in zip(offsets, slots, strict=True)]


def test_key_shared_busy_consumer_holds_back_only_its_own_keys() -> None:
    s = Sub(KEY_SHARED)
    a, b = s.join("a", permits=0), s.join("b", permits=10)
    low1, high1, low2, high2 = s.log.append(LOW), s.log.append(HIGH), s.log.append(LOW), s.log.append(HIGH)
    assert s.dispatch() == [s.log.delivery(b, high1), s.log.delivery(b, high2)]
    assert s.flow(a, 10) == [s.log.delivery(a, low1), s.log.delivery(a, low2)]  # parked ones, in log order


def test_key_shared_key_moves_to_a_new_owner_only_once_the_old_one_acked() -> None:
    s = Sub(KEY_SHARED)
    mid = HASH_RANGE // 2 + 1000  # upper half with two consumers, the middle third with three
    a, c = s.join("a", permits=10), s.join("c", permits=10)
    first = s.log.append(mid)
    assert s.dispatch() == [s.log.delivery(c, first)]
    b = s.join("b", permits=10)  # ranked a, b, c: the slot now maps to b
    second = s.log.append(mid)
    assert s.dispatch() == []  # c still holds an earlier entry of this key
    s.sub.ack_individual(first)
    assert s.dispatch() == [s.log.delivery(b, second)]
    assert a.permits == 10


def test_key_shared_departed_consumers_keys_go_to_the_new_owner_with_their_entries() -> None:
    s = Sub(KEY_SHARED)
    a, b = s.join("a", permits=10), s.join("b", permits=10)
    high = s.log.append(HIGH)
    assert s.dispatch() == [s.log.delivery(b, high)]
    s.sub.remove_consumer(b)
    assert s.dispatch() == [s.log.delivery(a, high)]  # every slot is a's now; count unchanged (not a nack)


def test_key_shared_sticky_ranges_decide_and_uncovered_slots_wait() -> None:
    s = Sub(KEY_SHARED)
    low = s.join("low", permits=10, sticky=[(0, 999)])
    high = s.join("high", permits=10, sticky=[(HASH_RANGE - 1000, HASH_RANGE - 1)])
    inside_low, outside, inside_high = s.log.append(LOW), s.log.append(HASH_RANGE // 2), s.log.append(HIGH)
    assert s.dispatch() == [s.log.delivery(low, inside_low), s.log.delivery(high, inside_high)]
    middle = s.join("middle", permits=10, sticky=[(1000, HASH_RANGE - 1001)])
    assert s.dispatch() == [s.log.delivery(middle, outside)]


def test_key_shared_sticky_ranges_must_not_overlap() -> None:
    s = Sub(KEY_SHARED)
    s.join("low", sticky=[(0, 999), (5_000, 5_999)])
    assert s.sub.sticky_conflict([(1_000, 4_999), (6_000, 6_000)]) is None
    assert s.sub.sticky_conflict([(6_000, 7_000), (5_999, 5_999)]) == "Range conflict with consumer low: [5000, 5999] overlaps [5999, 5999]"


def test_key_shared_nack_redelivers_to_the_same_consumer_with_a_count() -> None:
    s = Sub(KEY_SHARED)
    a, b = s.join("a", permits=10), s.join("b", permits=10)
    low = s.log.append(LOW)
    assert s.dispatch() == [s.log.delivery(a, low)]
    s.sub.redeliver(a, None)
    assert s.dispatch() == [s.log.delivery(a, low, redelivery_count=1)]
    assert b.permits == 10


def test_sticky_slot_follows_ordering_key_then_partition_key_then_none_key() -> None:
    def meta(**fields: object) -> pb.MessageMetadata:
        return pb.MessageMetadata(producer_name="p", sequence_id=0, publish_time=1, **fields)

    assert sticky_slot(meta(ordering_key=b"k", partition_key="other")) == sticky_slot(meta(partition_key="k"))
    assert sticky_slot(meta()) == sticky_slot(meta(partition_key="NONE_KEY"))
    assert sticky_slot(meta(partition_key="aw==", partition_key_b64_encoded=True)) == sticky_slot(meta(partition_key="k"))
    assert all(0 <= sticky_slot(meta(partition_key=f"k{i}")) < HASH_RANGE for i in range(100))


# ------------------------------------------------------------------ Failover


def test_failover_active_is_first_by_priority_then_name_and_switches_on_disconnect() -> None:
    s = Sub(FAILOVER)
    offsets = [s.log.append() for _ in range(3)]
    z = s.join("z", permits=10, priority=0)
    a = s.join("a", permits=10, priority=1)  # a lower name, but a worse priority level
    assert s.sub.active is z and s.notices == [("z", True), ("a", False)]
    assert s.dispatch() == [s.log.delivery(z, o) for o in offsets]
    s.sub.ack_cumulative(0)
    s.notices.clear()
    s.sub.remove_consumer(z)
    assert s.sub.active is a and s.notices == [("a", True)]
    assert s.dispatch() == [s.log.delivery(a, 1), s.log.delivery(a, 2)]  # every unacked entry again, count 0


def test_failover_joining_consumer_first_by_name_takes_over_and_rewinds() -> None:
    s = Sub(FAILOVER)
    entry = s.log.append()
    b = s.join("b", permits=10)
    assert s.dispatch() == [s.log.delivery(b, entry)]
    a = s.join("a", permits=10)
    assert s.notices == [("b", True), ("b", False), ("a", True)]
    assert s.dispatch() == [s.log.delivery(a, entry)]


def test_failover_partition_i_goes_to_consumer_i_mod_n() -> None:
    s = Sub(FAILOVER, Log(partition=3))
    entry = s.log.append()
    a, b = s.join("a", permits=10), s.join("b", permits=10)
    assert s.sub.active is b  # 3 mod 2 = 1: the second by name
    assert s.dispatch() == [s.log.delivery(b, entry)] and a.permits == 10


# ------------------------------------------------------------------ the cursor store


def cursor_after_acks(store: MemoryCursorStore | FileCursorStore) -> Subscription:
    """Snapshot after two acks, journal after three more, then a subscription rebuilt from the store."""
    s = Sub(SHARED)
    for _ in range(8):
        s.log.append(messages=2)
    s.sub.ack_individual(0)
    s.sub.ack_individual(2)
    store.save_snapshot("s", s.sub.to_json())
    s.sub.journal_ops.clear()
    s.sub.ack_individual(1)
    s.sub.ack_individual(5, [0b10])
    s.sub.ack_cumulative(3)
    store.append_journal("s", s.sub.journal_ops)
    (saved,) = store.load()
    again = Subscription(s.log, saved.name, SubType(saved.snapshot["type"]), True, -1)
    again.load_json(saved.snapshot)
    again.replay_journal(saved.journal)
    return again


def test_file_and_memory_cursor_stores_restore_the_same_cursor(tmp_path: Path) -> None:
    restored = [cursor_after_acks(MemoryCursorStore()), cursor_after_acks(FileCursorStore(tmp_path))]
    assert [(r.mark_delete, r.acked, r.batch_acks, r.backlog()) for r in restored] == [(3, set(), {5: [0b10]}, 4)] * 2


def test_file_cursor_store_drops_a_torn_journal_line_and_forgets_removed_cursors(tmp_path: Path) -> None:
    store = FileCursorStore(tmp_path)
    store.save_snapshot("s", {"type": SHARED, "mark_delete": 1})
    store.append_journal("s", [["i", 3]])
    with open(tmp_path / "cursors" / "s.journal", "a") as handle:
        handle.write('[["i", 4')  # a crash in the middle of a write
    assert [(c.name, c.snapshot, c.journal) for c in store.load()] == [("s", {"type": SHARED, "mark_delete": 1}, [["i", 3]])]
    store.save_snapshot("s", {"type": SHARED, "mark_delete": 4})
    assert [c.journal for c in store.load()] == [[]]  # a snapshot folds the journal in
    store.remove("s")
    assert store.load() == [] and not list((tmp_path / "cursors").iterdir())


# ------------------------------------------------------------------ a whole topic over in-memory stores


class Host:
    """The service as a topic sees it (TopicHost)."""

    def __init__(self) -> None:
        self.dirty: list[Topic] = []

    def deduplication_enabled(self, name: TopicName) -> bool:
        return False

    def mark_dirty(self, topic: Topic) -> None:
        self.dirty.append(topic)


class ProducerSide:
    """A producer's connection as a topic sees it (ProducerConnection): receipts are recorded."""

    closed = False

    def __init__(self) -> None:
        self.receipts: list[tuple[int, int]] = []

    def send_receipt(self, producer: Producer, sequence_id: int, highest: int, message_id: pb.MessageIdData) -> None:
        self.receipts.append((sequence_id, message_id.entryId))

    def close_producer_by_broker(self, producer: Producer) -> None:
        raise AssertionError("not expected")

    def grant_exclusive(self, producer: Producer) -> None:
        raise AssertionError("not expected")


def test_topic_over_memory_stores_dispatches_after_sync_and_journals_acks() -> None:
    stores = open_topic_stores(None, None)
    assert isinstance(stores.cursors, MemoryCursorStore)
    host, side = Host(), ProducerSide()
    topic = Topic(host, TopicName.parse("persistent://public/default/t"), stores, now=0.0)
    sub = topic.create_subscription("s", SHARED, True, initial_earliest=True)
    assert stores.cursors.snapshots["s"]["mark_delete"] == -1
    out: list[Delivery] = []
    consumer = Consumer(1, "c", SHARED, 0, deliver=out.append, permits=10)
    sub.add_consumer(consumer)
    producer = Producer(1, "p", topic, side, pb.Shared)
    for seq in range(2):
        meta = pb.MessageMetadata(producer_name="p", sequence_id=seq, publish_time=1_000 + seq, partition_key=f"k{seq}")
        topic.publish(producer, pb.CommandSend(producer_id=1, sequence_id=seq, num_messages=1), build_entry(meta, b"m%d" % seq), meta)
    assert out == [] and side.receipts == [] and host.dirty == [topic, topic]  # nothing leaves before the sync
    topic.on_synced(now_ms=2_000)
    assert side.receipts == [(0, 0), (1, 1)]
    assert [(d.consumer_id, d.offset, d.redelivery_count, d.ack_set) for d in out] == [(1, 0, 0, None), (1, 1, 0, None)]
    assert [d.meta.slot for d in out] == [sticky_slot(pb.MessageMetadata(partition_key=k)) for k in ("k0", "k1")]
    sub.ack_individual(1)
    topic.journal_acks(sub)
    assert stores.cursors.journals == {"s": [["i", 1]]} and sub.backlog() == 1
    topic.save_cursor(sub)
    assert stores.cursors.journals == {} and stores.cursors.snapshots["s"]["acked"] == [[1, 1]]
    topic.close()
    assert stores.meta.load() == TopicMeta({"p": 1}, 0)


def test_overlapping_sticky_ranges_are_refused_on_the_wire() -> None:
    service = BrokerService(BrokerConfig(data_dir=None))
    decoder, frames = FrameDecoder(1 << 30), []
    conn = ServerConnection(service, lambda data: frames.extend(decoder.feed(data)), lambda: None, "test", now=0.0, now_ms=1_000)
    conn.data_received(encode_command(command(T.CONNECT, client_version="t", protocol_version=20)), now_ms=1_000)

    def subscribe(consumer_id: int, start: int, end: int) -> pb.BaseCommand:
        meta = pb.KeySharedMeta(keySharedMode=pb.STICKY, hashRanges=[pb.IntRange(start=start, end=end)])
        conn.data_received(encode_command(command(T.SUBSCRIBE, topic="persistent://public/default/sticky", subscription="s",
                                                  subType=KEY_SHARED, consumer_id=consumer_id, request_id=consumer_id,
                                                  consumer_name=f"c{consumer_id}", keySharedMeta=meta)), now_ms=1_000)  # fmt: skip
        return frames.pop().command

    assert subscribe(1, 0, 999).type == T.SUCCESS
    refused = subscribe(2, 900, 2_000)
    assert (refused.type, refused.error.error, refused.error.message) == (T.ERROR, pb.ConsumerAssignError, "Range conflict with consumer c1: [0, 999] overlaps [900, 2000]")
    assert subscribe(3, 1_000, 2_000).type == T.SUCCESS
