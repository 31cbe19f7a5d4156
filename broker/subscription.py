"""Subscriptions: the cursor (what is acknowledged) and dispatch (who gets what next).

Sans-I/O: a Subscription never touches a socket, a file or the clock. It reads entries through
the small `EntrySource` its topic implements, takes `now_ms` from its caller, and hands each
`Delivery` to `Consumer.deliver`, which the connection turns into a MESSAGE frame
(tests/test_broker_subscription.py drives it in memory).
Everything about Key_Shared lives here: the key's hash slot (`sticky_slot`), which consumer a
slot maps to (`_slot_consumer`: sticky ranges, else auto-split), and the ordering rule below.
Rules follow docs/pulsar-wire-protocol.md §7–§10:
* Exclusive/Failover: one active consumer reads in log order from `read_pos`; an id-less
  redelivery or a change of active consumer rewinds to the first unacknowledged entry.
* Shared: round-robin over consumers with permits; entries held by a consumer that leaves, or
  that are nacked, go to a replay set served before new entries.
* Key_Shared: the entry's sticky key picks the consumer (docs/pulsar-wire-protocol.md §8); a key never goes to a second
  consumer while an earlier entry of the same hash slot is unacknowledged on another one.
* Delayed delivery only on Shared/Key_Shared.
"""

from __future__ import annotations

import base64
import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Protocol

import mmh3
from sortedcontainers import SortedSet

from broker.entries import EntryMeta
from broker.names import TopicName
from broker.proto import pulsar_wire_pb2 as pb


class SubType(IntEnum):
    """A subscription's type, numbered as on the wire (`CommandSubscribe.SubType`, docs/pulsar-wire-protocol.md)."""

    EXCLUSIVE = pb.CommandSubscribe.Exclusive
    SHARED = pb.CommandSubscribe.Shared
    FAILOVER = pb.CommandSubscribe.Failover
    KEY_SHARED = pb.CommandSubscribe.Key_Shared


EXCLUSIVE, SHARED, FAILOVER, KEY_SHARED = SubType.EXCLUSIVE, SubType.SHARED, SubType.FAILOVER, SubType.KEY_SHARED
SUB_TYPE_NAMES = {EXCLUSIVE: "Exclusive", SHARED: "Shared", FAILOVER: "Failover", KEY_SHARED: "Key_Shared"}
HASH_RANGE = 65536  # Key_Shared slots (docs/pulsar-wire-protocol.md §8)
MAX_REPLAY_LOOKAHEAD = 10_000  # Key_Shared entries parked for busy consumers before reading stops
NONE_KEY = b"NONE_KEY"


def sticky_slot(metadata: pb.MessageMetadata) -> int:
    """Key_Shared hash slot of an entry (docs/pulsar-wire-protocol.md §8): ordering key, else partition key, else NONE_KEY."""
    if metadata.HasField("ordering_key"):
        key = bytes(metadata.ordering_key)
    elif metadata.HasField("partition_key"):
        key = metadata.partition_key.encode("utf-8")
        if metadata.partition_key_b64_encoded:
            try:
                key = base64.b64decode(key)
            except ValueError:
                pass
    else:
        key = NONE_KEY
    return (mmh3.hash(key, 0, signed=False) & 0x7FFFFFFF) % HASH_RANGE


class EntrySource(Protocol):
    """What a subscription reads from its topic (broker/topic.py's Topic is one)."""

    @property
    def name(self) -> TopicName: ...

    @property
    def log_end(self) -> int:
        """One past the last entry appended."""
        ...

    @property
    def durable_end(self) -> int:
        """One past the last entry that may be dispatched (synced)."""
        ...

    def entry_meta(self, offset: int) -> EntryMeta: ...

    def read_entry(self, offset: int) -> bytes: ...


class ConsumerConnection(Protocol):
    """What the broker asks of the connection that holds a consumer (broker/connection.py)."""

    @property
    def client_version(self) -> str: ...

    def close_consumer_by_broker(self, consumer: Consumer, now_ms: int) -> None: ...


@dataclass(frozen=True)
class Delivery:
    """One entry handed to a consumer: what the connection turns into a MESSAGE frame."""

    consumer_id: int
    offset: int
    meta: EntryMeta
    entry: bytes
    redelivery_count: int = 0
    ack_set: tuple[int, ...] | None = None  # batch indexes still unacknowledged (bit set), if some are


@dataclass(eq=False)
class Consumer:
    consumer_id: int
    name: str
    sub_type: SubType
    priority: int
    deliver: Callable[[Delivery], None]
    notify_active: Callable[[Consumer, bool], None] | None = None
    connection: ConsumerConnection | None = None
    permits: int = 0
    sticky_ranges: list[tuple[int, int]] | None = None  # Key_Shared STICKY (inclusive)
    pending: set[int] = field(default_factory=set)
    messages_out: int = 0
    bytes_out: int = 0
    address: str = ""
    connected_since: str = ""


class Subscription:
    def __init__(self, topic: EntrySource, name: str, sub_type: SubType, durable: bool, mark_delete: int) -> None:
        self.topic = topic
        self.name = name
        self.sub_type = sub_type
        self.durable = durable
        self.mark_delete = mark_delete  # every offset <= this is acknowledged
        self.acked: set[int] = set()  # individually acknowledged offsets > mark_delete
        self.batch_acks: dict[int, list[int]] = {}  # offset -> words of indexes still unacked
        self.read_pos = mark_delete + 1
        self.consumers: list[Consumer] = []
        self.pending: dict[int, Consumer] = {}
        self.replay: SortedSet = SortedSet()  # offsets to deliver (again) before new entries
        self._ranked: list[Consumer] | None = None  # Key_Shared AUTO_SPLIT order, rebuilt on change
        # Key_Shared: parked entries bucketed by the consumer their key maps to (None: no owner),
        # so a consumer's FLOW only walks its own backlog.
        self.parked: dict[Consumer | None, SortedSet] = {}
        self._parked_in: dict[int, Consumer | None] = {}
        self.delayed: list[tuple[int, int]] = []  # heap of (deliver_at ms, offset)
        self.redelivery_counts: dict[int, int] = {}
        self.slot_owner: dict[int, tuple[Consumer, int]] = {}  # Key_Shared: slot -> (consumer, pending count)
        self.active: Consumer | None = None
        self.dirty = False
        self._rr = 0
        self.properties: dict[str, str] = {}
        self.msg_out_counter = 0
        self.bytes_out_counter = 0
        self.msg_drop_counter = 0  # non-persistent topics: messages no consumer could take
        self.expired_counter = 0
        self.journal_ops: list[list[Any]] = []  # acks applied since the last journal flush

    # ------------------------------------------------------------------ consumers
    def add_consumer(self, consumer: Consumer) -> None:
        self.consumers.append(consumer)
        self._ranked = None
        self._rebucket()
        if self.sub_type == FAILOVER:
            self._elect_active(new=consumer)
        elif self.sub_type == EXCLUSIVE:
            self.active = consumer

    def remove_consumer(self, consumer: Consumer) -> None:
        if consumer not in self.consumers:
            return
        self.consumers.remove(consumer)
        self._ranked = None
        self._rebucket()
        for offset in sorted(consumer.pending):
            if self.pending.get(offset) is consumer:
                del self.pending[offset]
                if self.sub_type in (SHARED, KEY_SHARED):
                    self._push_replay(offset)
        consumer.pending.clear()
        for slot in [s for s, (owner, _) in self.slot_owner.items() if owner is consumer]:
            del self.slot_owner[slot]
        if self.sub_type in (EXCLUSIVE, FAILOVER) and consumer is self.active:
            self.active = None
            self._rewind()
            if self.sub_type == FAILOVER:
                self._elect_active()

    def _elect_active(self, new: Consumer | None = None) -> None:
        """Failover: the first consumer by (priority, name) is active (docs/pulsar-wire-protocol.md §7); others wait."""
        if not self.consumers:
            self.active = None
            return
        partition = self.topic.name.partition_index
        ranked = sorted(self.consumers, key=lambda c: (c.priority, c.name, c.consumer_id))
        top = [c for c in ranked if c.priority == ranked[0].priority]
        chosen = top[partition % len(top)] if partition >= 0 else top[0]
        changed = chosen is not self.active
        if changed:
            if self.active is not None:
                self._rewind()
            self.active = chosen
        for consumer in self.consumers:
            if (changed or consumer is new) and consumer.notify_active is not None:
                consumer.notify_active(consumer, consumer is chosen)

    # ------------------------------------------------------------------ flow and dispatch
    def flow(self, consumer: Consumer, permits: int) -> None:
        consumer.permits += permits

    def dispatch(self, now_ms: int) -> None:
        if not self.consumers:
            return
        if self.sub_type in (EXCLUSIVE, FAILOVER):
            self._dispatch_in_order()
        else:
            self._release_due(now_ms)
            self._dispatch_shared(now_ms)

    def _dispatch_in_order(self) -> None:
        consumer = self.active
        if consumer is None:
            return
        end = self.topic.durable_end
        while consumer.permits > 0 and self.read_pos < end:
            offset = self.read_pos
            self.read_pos += 1
            if offset <= self.mark_delete or offset in self.acked or offset in self.pending:
                continue
            self._send(consumer, offset)

    def _dispatch_shared(self, now_ms: int) -> None:
        if self.sub_type == KEY_SHARED:
            self._dispatch_parked()
        elif self.replay:
            while self.replay and self._any_permits():
                offset = self.replay[0]
                self.replay.discard(offset)
                if offset <= self.mark_delete or offset in self.acked or offset in self.pending:
                    continue
                consumer = self._choose(offset)
                assert consumer is not None  # someone has permits
                self._send(consumer, offset)
            if self.replay:
                return
        end = self.topic.durable_end
        while self.read_pos < end:
            offset = self.read_pos
            if offset <= self.mark_delete or offset in self.acked or offset in self.pending or offset in self.replay:
                self.read_pos += 1
                continue
            meta = self.topic.entry_meta(offset)
            if meta.deliver_at > now_ms:
                heapq.heappush(self.delayed, (meta.deliver_at, offset))
                self.read_pos += 1
                continue
            if not self._any_permits():
                return
            consumer = self._choose(offset, meta)
            if consumer is None:
                if self.sub_type == SHARED or len(self.replay) >= MAX_REPLAY_LOOKAHEAD:
                    return
                self._push_replay(offset)
                self.read_pos += 1
                continue
            self.read_pos += 1
            self._send(consumer, offset)

    def _dispatch_parked(self) -> None:
        """Key_Shared: each consumer with permits takes its own parked entries, in log order."""
        for consumer in self.consumers:
            bucket = self.parked.get(consumer)
            index = 0
            while bucket and consumer.permits > 0 and index < len(bucket):
                offset = bucket[index]
                if offset <= self.mark_delete or offset in self.acked or offset in self.pending:
                    self._unpark(offset)
                    continue
                owner = self.slot_owner.get(self.topic.entry_meta(offset).slot)
                if owner is not None and owner[0] is not consumer:
                    index += 1  # an earlier entry of this key is still held by another consumer
                    continue
                self._unpark(offset)
                self._send(consumer, offset)

    def _rebucket(self) -> None:
        if self.sub_type != KEY_SHARED:
            return
        self.parked = {}
        self._parked_in = {}
        for offset in self.replay:
            self._bucket(offset)

    def _bucket(self, offset: int) -> None:
        target = self._slot_consumer(self.topic.entry_meta(offset).slot) if self.consumers else None
        bucket = self.parked.get(target)
        if bucket is None:
            bucket = self.parked[target] = SortedSet()
        bucket.add(offset)
        self._parked_in[offset] = target

    def _unpark(self, offset: int) -> None:
        self.replay.discard(offset)
        if offset in self._parked_in:
            self.parked[self._parked_in.pop(offset)].discard(offset)

    def _any_permits(self) -> bool:
        return any(c.permits > 0 for c in self.consumers)

    def _release_due(self, now_ms: int) -> None:
        while self.delayed and self.delayed[0][0] <= now_ms:
            _, offset = heapq.heappop(self.delayed)
            self._push_replay(offset)

    def _push_replay(self, offset: int) -> None:
        if offset in self.replay:
            return
        self.replay.add(offset)
        if self.sub_type == KEY_SHARED:
            self._bucket(offset)

    def _choose(self, offset: int, meta: EntryMeta | None = None) -> Consumer | None:
        if self.sub_type == SHARED:
            count = len(self.consumers)
            for i in range(count):
                consumer = self.consumers[(self._rr + i) % count]
                if consumer.permits > 0:
                    self._rr = (self._rr + i + 1) % count
                    return consumer
            return None
        meta = meta or self.topic.entry_meta(offset)
        slot = meta.slot
        target = self._slot_consumer(slot)
        if target is None or target.permits <= 0:
            return None
        owner = self.slot_owner.get(slot)
        if owner is not None and owner[0] is not target:
            return None  # earlier entries of this key are still held by another consumer
        return target

    def choose_now(self, meta: EntryMeta) -> Consumer | None:
        """For a message that cannot wait (non-persistent topics): Shared, the next consumer in
        round-robin order with permits; Key_Shared, the consumer its key maps to, permits or not."""
        if not self.consumers:
            return None
        if self.sub_type == SHARED:
            return self._choose(-1, meta)
        return self._slot_consumer(meta.slot)

    def sticky_conflict(self, ranges: list[tuple[int, int]]) -> str | None:
        """Why a Key_Shared STICKY consumer declaring `ranges` cannot join (a slot range overlaps one
        a consumer already holds: ConsumerAssignError, docs/pulsar-wire-protocol.md §8), or None."""
        for other in self.consumers:
            for start, end in other.sticky_ranges or ():
                for s2, e2 in ranges:
                    if s2 <= end and start <= e2:
                        return f"Range conflict with consumer {other.name}: [{start}, {end}] overlaps [{s2}, {e2}]"
        return None

    def _slot_consumer(self, slot: int) -> Consumer | None:
        sticky = [c for c in self.consumers if c.sticky_ranges]
        if sticky:
            for consumer in sticky:
                for start, end in consumer.sticky_ranges or ():
                    if start <= slot <= end:
                        return consumer
            return None
        if self._ranked is None:
            self._ranked = sorted(self.consumers, key=lambda c: (c.name, c.consumer_id))
        ranked = self._ranked
        return ranked[slot * len(ranked) // HASH_RANGE]

    def _send(self, consumer: Consumer, offset: int) -> None:
        meta = self.topic.entry_meta(offset)
        entry = self.topic.read_entry(offset)
        ack_set = self.batch_acks.get(offset)
        cost = meta.num_messages
        if ack_set is not None:
            cost = sum(bin(w & 0xFFFFFFFFFFFFFFFF).count("1") for w in ack_set) or 1
        consumer.permits -= cost
        consumer.pending.add(offset)
        self.pending[offset] = consumer
        if self.sub_type == KEY_SHARED:
            owner = self.slot_owner.get(meta.slot)
            self.slot_owner[meta.slot] = (consumer, (owner[1] if owner else 0) + 1)
        consumer.messages_out += cost
        consumer.bytes_out += len(entry)
        self.msg_out_counter += cost
        self.bytes_out_counter += len(entry)
        consumer.deliver(Delivery(consumer.consumer_id, offset, meta, entry, self.redelivery_counts.get(offset, 0),
                                  None if ack_set is None else tuple(ack_set)))  # fmt: skip

    def _release_pending(self, offset: int) -> None:
        consumer = self.pending.pop(offset, None)
        if consumer is None:
            return
        consumer.pending.discard(offset)
        if self.sub_type == KEY_SHARED:
            slot = self.topic.entry_meta(offset).slot
            owner = self.slot_owner.get(slot)
            if owner is not None:
                if owner[1] <= 1:
                    del self.slot_owner[slot]
                else:
                    self.slot_owner[slot] = (owner[0], owner[1] - 1)

    # ------------------------------------------------------------------ acknowledgements
    def is_acked(self, offset: int) -> bool:
        return offset <= self.mark_delete or offset in self.acked

    def ack_individual(self, offset: int, ack_set: list[int] | None = None) -> None:
        if self.is_acked(offset) or offset >= self.topic.log_end:
            return
        if ack_set:
            previous = self.batch_acks.get(offset)
            words = [a & b for a, b in zip(previous, ack_set, strict=False)] if previous else list(ack_set)
            if any(words):
                self.batch_acks[offset] = words
                self.dirty = True
                if self.durable:
                    self.journal_ops.append(["b", offset, words])
                return
        self._ack_whole(offset)
        if self.durable:
            self.journal_ops.append(["i", offset])
        self._advance()

    def _ack_whole(self, offset: int) -> None:
        self.acked.add(offset)
        self.batch_acks.pop(offset, None)
        self.redelivery_counts.pop(offset, None)
        self._release_pending(offset)
        self.dirty = True

    def ack_cumulative(self, offset: int, ack_set: list[int] | None = None) -> None:
        if self.durable:
            self.journal_ops.append(["c", offset, list(ack_set or [])])
        target = min(offset, self.topic.log_end - 1)
        if ack_set and any(ack_set) and offset == target:
            target -= 1
            previous = self.batch_acks.get(offset)
            self.batch_acks[offset] = [a & b for a, b in zip(previous, ack_set, strict=False)] if previous else list(ack_set)
        if target <= self.mark_delete:
            return
        for pending_offset in [o for o in self.pending if o <= target]:
            self._release_pending(pending_offset)
        self.mark_delete = target
        self._drop_below_mark()
        self.dirty = True
        self._advance()

    def _advance(self) -> None:
        while self.mark_delete + 1 in self.acked:
            self.mark_delete += 1
            self.acked.discard(self.mark_delete)
        if self.read_pos <= self.mark_delete:
            self.read_pos = self.mark_delete + 1

    def _drop_below_mark(self) -> None:
        mark = self.mark_delete
        self.acked = {o for o in self.acked if o > mark}
        for table in (self.batch_acks, self.redelivery_counts):
            for offset in [o for o in table if o <= mark]:
                del table[offset]
        if self.read_pos <= mark:
            self.read_pos = mark + 1

    def skip_to(self, offset: int) -> None:
        """Acknowledge everything before `offset` (TTL expiry, trimmed ledgers)."""
        if offset - 1 > self.mark_delete:
            for pending_offset in [o for o in self.pending if o < offset]:
                self._release_pending(pending_offset)
            self.expired_counter += offset - 1 - self.mark_delete
            if self.durable:
                self.journal_ops.append(["c", offset - 1, []])
            self.mark_delete = offset - 1
            self._drop_below_mark()
            self._advance()
            self.dirty = True

    # ------------------------------------------------------------------ redelivery, seek
    def redeliver(self, consumer: Consumer, offsets: list[int] | None) -> None:
        if self.sub_type in (EXCLUSIVE, FAILOVER):
            # Ids or not, an in-order subscription rewinds to its first unacknowledged entry (docs/pulsar-wire-protocol.md §10).
            # Pulsar tracks no redelivery count there (single-active-consumer dispatchers have the
            # tracker disabled): the rewound messages arrive with count 0, as on Apache Pulsar.
            self._rewind()
            return
        if offsets is None:
            offsets = sorted(consumer.pending)
        for offset in offsets:
            if self.pending.get(offset) is consumer:
                self._release_pending(offset)
                self.redelivery_counts[offset] = self.redelivery_counts.get(offset, 0) + 1
                self._push_replay(offset)

    def _rewind(self) -> None:
        for c in self.consumers:
            c.pending.clear()
        self.pending.clear()
        self.read_pos = self.mark_delete + 1

    def reset_to(self, offset: int) -> None:
        """Seek: the next entry delivered is `offset` itself (docs/pulsar-wire-protocol.md §10)."""
        self.pending.clear()
        for c in self.consumers:
            c.pending.clear()
        self.slot_owner.clear()
        self.replay.clear()
        self.parked.clear()
        self._parked_in.clear()
        self.delayed.clear()
        self.mark_delete = offset - 1
        self.acked = set()
        self.batch_acks = {}
        self.redelivery_counts = {}
        self.read_pos = offset
        self.dirty = True

    # ------------------------------------------------------------------ stats and persistence
    def backlog(self) -> int:
        end = self.topic.log_end
        return max(0, end - (self.mark_delete + 1) - sum(1 for o in self.acked if o < end))

    def to_json(self) -> dict[str, Any]:
        ranges: list[list[int]] = []
        for offset in sorted(self.acked):
            if ranges and ranges[-1][1] == offset - 1:
                ranges[-1][1] = offset
            else:
                ranges.append([offset, offset])
        return {
            "type": int(self.sub_type),
            "mark_delete": self.mark_delete,
            "acked": ranges,
            "batch": {str(k): v for k, v in self.batch_acks.items()},
            "properties": self.properties,
        }

    def replay_journal(self, ops: list[list[Any]]) -> None:
        """Re-apply acks recorded after the last snapshot (idempotent)."""
        for op in ops:
            kind = op[0]
            if kind == "i":
                self.ack_individual(int(op[1]))
            elif kind == "b":
                self.ack_individual(int(op[1]), [int(w) for w in op[2]])
            elif kind == "c":
                self.ack_cumulative(int(op[1]), [int(w) for w in op[2]] or None)
        self.journal_ops.clear()

    def load_json(self, data: dict[str, Any]) -> None:
        self.mark_delete = int(data.get("mark_delete", self.mark_delete))
        self.acked = {o for start, end in data.get("acked", []) for o in range(int(start), int(end) + 1)}
        self.batch_acks = {int(k): [int(w) for w in v] for k, v in data.get("batch", {}).items()}
        self.properties = dict(data.get("properties", {}))
        self.read_pos = self.mark_delete + 1
        self._advance()
