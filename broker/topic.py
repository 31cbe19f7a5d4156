"""A topic: its entry log, entry index, producers, de-duplication, schemas and subscriptions.

The entry index (publish time, batch size, Key_Shared slot, delivery time, size of each entry)
is kept in memory only for the part of the log that a subscription may still dispatch: from the
slowest subscription's mark-delete position to the end ("warm"). Entries below it are "cold":
with retention on they stay on disk for hours, and an index entry each would grow the broker
without bound, where Apache Pulsar's broker keeps nothing per retained entry. A cold entry's
facts are read back from its ledger a block at a time when something asks for them (a
subscription or reader starting at Earliest, a seek or reset below the warm part); a few such
blocks are kept. Retention by time uses each ledger's last publish time (storage.Ledger).

Sans-I/O: every file the topic keeps is written by the stores it is given (broker/storage.py:
the entry log, a CursorStore, a TopicMetaStore), times come from the caller (`now_ms`), and the
service and connections it talks back to are the small Protocols below.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Protocol

from broker import non_persistent
from broker.entries import EntryIndex, EntryMeta
from broker.names import TopicName
from broker.proto import pulsar_wire_pb2 as pb
from broker.storage import TopicStores
from broker.subscription import Consumer, Delivery, Subscription, SubType, sticky_slot
from broker.wire import parse_entry_metadata

log = logging.getLogger("wtpulsar.broker.topic")

COLD_BLOCK = 1024  # entries whose facts are read back from disk together
COLD_BLOCKS_KEPT = 4  # such blocks kept per topic (a replay reads them in order)
COOL_MIN = 1024  # entries dropped from the warm index at once, at least (bounds the array shifting)


def entry_meta_of(metadata: pb.MessageMetadata, size: int) -> EntryMeta:
    return EntryMeta(
        publish_time=metadata.publish_time,
        num_messages=max(1, metadata.num_messages_in_batch) if metadata.HasField("num_messages_in_batch") else 1,
        slot=sticky_slot(metadata),
        deliver_at=metadata.deliver_at_time if metadata.HasField("deliver_at_time") else 0,
        size=size,
    )


class TopicHost(Protocol):
    """What a topic asks of the broker that holds it (broker/service.py's BrokerService)."""

    def deduplication_enabled(self, name: TopicName) -> bool: ...

    def mark_dirty(self, topic: Topic) -> None:
        """Entries were appended or receipts queued: sync soon, then call on_synced()."""
        ...


class ProducerConnection(Protocol):
    """What a topic and its neighbours ask of the connection a producer came on (broker/connection.py)."""

    @property
    def closed(self) -> bool: ...

    def send_receipt(self, producer: Producer, sequence_id: int, highest: int, message_id: pb.MessageIdData) -> None: ...

    def close_producer_by_broker(self, producer: Producer) -> None: ...

    def grant_exclusive(self, producer: Producer) -> None:
        """A producer waiting for exclusive access has it now: register it and tell the client."""
        ...


@dataclass(eq=False)
class Receipt:
    sequence_id: int
    highest_sequence_id: int
    offset: int | None  # None: a duplicate, answered with (-1, -1)
    done: bool


@dataclass(eq=False)
class Producer:
    producer_id: int
    name: str
    topic: Topic
    connection: ProducerConnection
    access_mode: int
    epoch: int = 0
    receipts: deque[Receipt] = field(default_factory=deque)
    ready: bool = True
    request_id: int = 0
    schema_version: bytes = b""
    messages_in: int = 0
    bytes_in: int = 0


class Topic:
    def __init__(self, service: TopicHost, name: TopicName, stores: TopicStores, now: float) -> None:
        """`now`: the service's monotonic clock (s), the start of a non-persistent topic's idle time."""
        self.service = service
        self.name = name
        self.log = stores.log
        self.cursor_store = stores.cursors
        self.meta_store = stores.meta
        self._metas = EntryIndex(self.log.start_offset)  # warm part: from the slowest cursor to the end
        self._cold: OrderedDict[int, EntryIndex] = OrderedDict()  # block number -> facts read back
        self._ticks = 0
        self.durable_end = self.log.end_offset
        self.producers: dict[tuple[int, int], Producer] = {}  # (connection id, producer id) -> producer
        self.waiting_exclusive: deque[Producer] = deque()
        self.topic_epoch = 0
        self.subscriptions: dict[str, Subscription] = {}
        self.dedup: dict[str, int] = {}
        self._chunk_progress: dict[str, tuple[int, int]] = {}
        self._pending_producers: set[Producer] = set()
        self._dedup_dirty = False
        self.msg_in = 0
        self.bytes_in = 0
        self.msg_out = 0
        self.bytes_out = 0
        self.msg_dropped = 0  # non-persistent: messages some subscription could not hand over
        self.drop_rates: dict[str, float] = {}  # non-persistent: per subscription, set by the admin server
        self.last_active = now  # non-persistent: last seen with a producer or subscription (monotonic s)
        self._load()

    # ------------------------------------------------------------------ load
    def _load(self) -> None:
        self._load_cursors()
        # Every entry is read for the producers' sequence ids and the ledgers' last publish
        # times, but only the warm part (from the slowest cursor on) is indexed.
        self._metas = EntryIndex(max(self.log.start_offset, self.warm_from()))
        for offset, entry in self.log.entries_from_disk():
            metadata, _ = parse_entry_metadata(entry)
            if offset >= self._metas.base:
                self._metas.append(entry_meta_of(metadata, len(entry)))
            self.log.stamp(offset, metadata.publish_time)
            self._remember_sequence(metadata)
        self.durable_end = self.log.end_offset
        saved = self.meta_store.load()
        for name, seq in saved.dedup.items():
            self.dedup[name] = max(self.dedup.get(name, -1), seq)
        self.topic_epoch = saved.topic_epoch

    def _load_cursors(self) -> None:
        for saved in self.cursor_store.load():
            sub = Subscription(self, saved.name, SubType(int(saved.snapshot.get("type", 0))), True, self.log.start_offset - 1)
            sub.load_json(saved.snapshot)
            sub.replay_journal(saved.journal)
            if sub.mark_delete < self.log.start_offset - 1:
                sub.skip_to(self.log.start_offset)
            self.subscriptions[saved.name] = sub

    def _remember_sequence(self, metadata: pb.MessageMetadata) -> None:
        name = metadata.producer_name
        if metadata.HasField("num_chunks_from_msg") and metadata.chunk_id != metadata.num_chunks_from_msg - 1:
            return
        # A batch is judged by its first sequence id (C++ clients send no highest_sequence_id, and
        # key-based batches hold non-contiguous ids), as the real broker does.
        high = max(metadata.sequence_id, metadata.highest_sequence_id)
        if high > self.dedup.get(name, -1):
            self.dedup[name] = high

    # ------------------------------------------------------------------ entries
    @property
    def log_end(self) -> int:
        return self.log.end_offset

    def entry_meta(self, offset: int) -> EntryMeta:
        if offset >= self._metas.base:
            return self._metas[offset]
        return self._cold_meta(offset)

    def _cold_meta(self, offset: int) -> EntryMeta:
        """Facts of an entry below the warm part, read back from the log with its block."""
        if offset < self.log.start_offset:
            raise IndexError(offset)
        block = offset // COLD_BLOCK
        facts = self._cold.get(block)
        if facts is None or not facts.covers(offset):
            facts = EntryIndex(max(block * COLD_BLOCK, self.log.start_offset))
            for cold in range(facts.base, min((block + 1) * COLD_BLOCK, self._metas.base)):
                entry = self.log.read(cold)
                facts.append(entry_meta_of(parse_entry_metadata(entry)[0], len(entry)))
            self._cold[block] = facts
            if len(self._cold) > COLD_BLOCKS_KEPT:
                self._cold.popitem(last=False)
        else:
            self._cold.move_to_end(block)
        return facts[offset]

    def warm_from(self) -> int:
        """The first offset some subscription may still dispatch (any later entry can be pending,
        parked, delayed or redelivered; none at or below a mark-delete position is). With no
        subscription nothing is needed, but the last entry stays for GET_LAST_MESSAGE_ID."""
        low = min((sub.mark_delete + 1 for sub in self.subscriptions.values()), default=self.log_end)
        return min(low, self.durable_end - 1)

    def warm_entries(self) -> int:
        """Entries whose facts are held in memory (the warm index and the cold blocks read back)."""
        return len(self._metas) + sum(len(block) for block in self._cold.values())

    def cool(self) -> None:
        """Drop the index of entries no subscription can dispatch any more (in steps of at least
        COOL_MIN, or an eighth of the warm part, so the arrays are not shifted on every tick)."""
        count = self.warm_from() - self._metas.base
        if count >= max(COOL_MIN, len(self._metas) // 8):
            self._metas.drop_before(self._metas.base + count)

    def read_entry(self, offset: int) -> bytes:
        return self.log.read(offset)

    def message_id(self, offset: int) -> pb.MessageIdData:
        if not self.name.persistent:
            return non_persistent.message_id(self.name.partition_index)
        ledger_id, entry_id = self.log.position(offset)
        return pb.MessageIdData(ledgerId=ledger_id, entryId=entry_id, partition=self.name.partition_index)

    # ------------------------------------------------------------------ publishing
    @property
    def dedup_enabled(self) -> bool:
        return self.service.deduplication_enabled(self.name)

    def publish(self, producer: Producer, send: pb.CommandSend, entry: bytes, metadata: pb.MessageMetadata) -> None:
        """Append (or recognise a duplicate) and queue the receipt; receipts leave after sync()."""
        name = producer.name
        is_chunk = metadata.HasField("num_chunks_from_msg") and metadata.num_chunks_from_msg > 1
        seq = send.sequence_id
        if not self.name.persistent:
            self._publish_non_persistent(producer, send, entry, metadata)
            return
        if self.dedup_enabled and self._is_duplicate(name, seq, send.highest_sequence_id, is_chunk, metadata):
            producer.receipts.append(Receipt(seq, send.highest_sequence_id, None, True))
            self._pending_producers.add(producer)
            self.service.mark_dirty(self)
            return
        offset = self.log.append(entry, metadata.publish_time)
        self._metas.append(entry_meta_of(metadata, len(entry)))
        if is_chunk:
            if metadata.chunk_id == metadata.num_chunks_from_msg - 1:
                self._chunk_progress.pop(name, None)
            else:
                self._chunk_progress[name] = (seq, metadata.chunk_id)
        self._remember_sequence(metadata)
        self._dedup_dirty = True
        count = send.num_messages or 1
        self.msg_in += count
        self.bytes_in += len(entry)
        producer.messages_in += count
        producer.bytes_in += len(entry)
        producer.receipts.append(Receipt(seq, send.highest_sequence_id, offset, False))
        self._pending_producers.add(producer)
        self.service.mark_dirty(self)

    def _is_duplicate(self, name: str, seq: int, highest: int, is_chunk: bool, metadata: pb.MessageMetadata) -> bool:
        hwm = self.dedup.get(name, -1)
        if is_chunk:
            if seq <= hwm:
                return True
            progress = self._chunk_progress.get(name)
            return progress is not None and progress[0] == seq and metadata.chunk_id <= progress[1]
        return max(seq, highest) <= hwm

    def _publish_non_persistent(self, producer: Producer, send: pb.CommandSend, entry: bytes, metadata: pb.MessageMetadata) -> None:
        """Nothing is stored and nothing is de-duplicated: each subscription hands the message to a
        consumer with permits now, or drops it (broker/non_persistent.py); the receipt says 0:0."""
        meta = entry_meta_of(metadata, len(entry))
        count = meta.num_messages
        for decision in non_persistent.route(self.subscriptions.values(), meta):
            sub = self.subscriptions[decision.subscription]
            if isinstance(decision, non_persistent.Drop):
                sub.msg_drop_counter += decision.messages
                self.msg_dropped += decision.messages
                continue
            consumer = decision.consumer
            consumer.permits -= count
            consumer.messages_out += count
            consumer.bytes_out += len(entry)
            sub.msg_out_counter += count
            sub.bytes_out_counter += len(entry)
            consumer.deliver(Delivery(consumer.consumer_id, non_persistent.NO_OFFSET, meta, entry))
        self.msg_in += send.num_messages or 1
        self.bytes_in += len(entry)
        producer.messages_in += send.num_messages or 1
        producer.bytes_in += len(entry)
        producer.receipts.append(Receipt(send.sequence_id, send.highest_sequence_id, non_persistent.NO_OFFSET, True))
        self._pending_producers.add(producer)
        self.service.mark_dirty(self)

    def open_non_persistent(self, name: str, sub_type: SubType) -> Subscription:
        """A non-persistent topic's subscription: no cursor, gone when its last consumer leaves."""
        sub = Subscription(self, name, sub_type, False, -1)
        self.subscriptions[name] = sub
        return sub

    def on_synced(self, now_ms: int, durable_end: int | None = None) -> None:
        """Entries below `durable_end` are durable: release their receipts in order, then dispatch."""
        self.durable_end = max(self.durable_end, self.log.end_offset if durable_end is None else durable_end)
        for producer in list(self._pending_producers):
            if self._flush_receipts(producer):
                self._pending_producers.discard(producer)
        self.dispatch(now_ms)

    def _flush_receipts(self, producer: Producer) -> bool:
        """Send the receipts that are due, in order. True when none is left waiting."""
        receipts = producer.receipts
        while receipts:
            head = receipts[0]
            if not head.done:
                if head.offset is not None and head.offset < self.durable_end:
                    head.done = True
                else:
                    return False
            receipts.popleft()
            if head.offset is None:
                msg_id = pb.MessageIdData(ledgerId=(1 << 64) - 1, entryId=(1 << 64) - 1)
            else:
                msg_id = self.message_id(head.offset)
            producer.connection.send_receipt(producer, head.sequence_id, head.highest_sequence_id, msg_id)
        return True

    def dispatch(self, now_ms: int) -> None:
        for sub in list(self.subscriptions.values()):
            sub.dispatch(now_ms)

    # ------------------------------------------------------------------ subscriptions
    def create_subscription(self, name: str, sub_type: SubType, durable: bool, initial_earliest: bool) -> Subscription:
        start = self.log.start_offset - 1 if initial_earliest else self.log_end - 1
        sub = Subscription(self, name, sub_type, durable, start)
        if durable:
            self.subscriptions[name] = sub
            self.save_cursor(sub)
        return sub

    def attach_reader(self, name: str, start: pb.MessageIdData | None, initial_earliest: bool) -> Subscription:
        """A non-durable cursor; the next entry delivered is the start id itself (docs/pulsar-wire-protocol.md §7)."""
        sub = Subscription(self, name, pb.CommandSubscribe.Exclusive, False, self.log_end - 1)
        if start is None:
            offset = self.log.start_offset if initial_earliest else self.log_end
        else:
            ledger_id, entry_id = start.ledgerId, start.entryId
            if ledger_id >= 1 << 63 and entry_id >= 1 << 63 and ledger_id != (1 << 63) - 1:
                offset = self.log.start_offset  # earliest (-1, -1)
            elif ledger_id == (1 << 63) - 1:
                offset = self.log_end  # latest
            else:
                offset = max(self.log.start_offset, self.log.offset_of(ledger_id, entry_id))
        sub.reset_to(offset)
        sub.dirty = False
        self.subscriptions[name] = sub
        return sub

    def remove_subscription(self, name: str) -> None:
        sub = self.subscriptions.pop(name, None)
        if sub is not None and sub.durable:
            self.cursor_store.remove(name)

    def journal_acks(self, sub: Subscription) -> None:
        """Hand the acks just applied to the cursor store's journal (one write per ACK command);
        the snapshot in save_cursor() folds the journal in and empties it."""
        if not sub.journal_ops:
            return
        ops, sub.journal_ops = sub.journal_ops, []
        if sub.durable and self.name.persistent:
            self.cursor_store.append_journal(sub.name, ops)

    def save_cursor(self, sub: Subscription) -> None:
        sub.journal_ops.clear()
        if sub.durable and self.name.persistent:
            self.cursor_store.save_snapshot(sub.name, sub.to_json())
        sub.dirty = False

    def consumers(self) -> list[tuple[Subscription, Consumer]]:
        return [(sub, c) for sub in self.subscriptions.values() for c in sub.consumers]

    # ------------------------------------------------------------------ upkeep
    def housekeeping(self, now_ms: int, ttl_seconds: int, retention_ms: int, retention_bytes: int) -> None:
        # Snapshots fold the ack journal in about once a second; the journal alone already
        # survives a crash, so this only bounds the journal's length and the restart time.
        self._ticks += 1
        snapshot = self._ticks % 10 == 0
        for sub in self.subscriptions.values():
            if ttl_seconds > 0 and self.name.persistent:
                self._expire(sub, now_ms - ttl_seconds * 1000)
            if sub.dirty and snapshot:
                self.save_cursor(sub)
        self._trim(now_ms, retention_ms, retention_bytes)
        self.cool()
        if any(s.delayed for s in self.subscriptions.values()):
            self.dispatch(now_ms)

    def _expire(self, sub: Subscription, cutoff_ms: int) -> None:
        offset = sub.mark_delete + 1
        end = self.durable_end
        while offset < end and self.entry_meta(offset).publish_time < cutoff_ms:
            offset += 1
        if offset > sub.mark_delete + 1:
            sub.skip_to(offset)

    def _trim(self, now_ms: int, retention_ms: int, retention_bytes: int) -> None:
        durable = [s for s in self.subscriptions.values() if s.durable]
        if not durable or not self.name.persistent:
            return
        acked_below = min(s.mark_delete for s in durable) + 1
        below = self._retained_from(now_ms, retention_ms, retention_bytes, acked_below)
        if below >= self.log.ledgers[-1].first_offset:
            # Retention keeps no closed ledger: close the current one too once it is acknowledged,
            # so that it can go (while retention keeps data, ledgers roll only when full).
            self.log.roll_if_idle_and_acked(acked_below)
            below = self._retained_from(now_ms, retention_ms, retention_bytes, acked_below)
        if self.log.trimmable(below) and self._dedup_dirty:
            self._save_dedup()  # the entries that prove these sequence ids are about to go
        if self.log.trim(below):
            self._metas.drop_before(self.log.start_offset)
            self._cold.clear()
            for sub in self.subscriptions.values():
                if sub.mark_delete < self.log.start_offset - 1:
                    sub.skip_to(self.log.start_offset)

    def _retained_from(self, now_ms: int, retention_ms: int, retention_bytes: int, acked_below: int) -> int:
        """Where the log may be cut: after the oldest acknowledged ledgers that retention no
        longer asks for. A ledger stays while its last entry is younger than the retention time
        or while the topic is within the retention size (each limit only when set), and every
        later ledger stays with it. Judged per ledger, from its summary: no entry index needed."""
        if retention_ms <= 0 and retention_bytes <= 0:
            return acked_below
        size = self.log.size_bytes
        cut = self.log.start_offset
        for ledger in self.log.ledgers[:-1]:
            end = ledger.first_offset + ledger.count
            if end > acked_below:
                break
            if retention_ms > 0 and ledger.last_publish_time >= now_ms - retention_ms:
                break
            if retention_bytes > 0 and size <= retention_bytes:
                break
            size -= ledger.size
            cut = end
        return cut

    def _save_dedup(self) -> None:
        """Producer high-water marks are rebuilt from the log at load; the store keeps the ones
        whose entries were trimmed."""
        self.meta_store.save_dedup(self.dedup)
        self._dedup_dirty = False

    def close(self) -> None:
        for sub in self.subscriptions.values():
            if sub.dirty:
                self.save_cursor(sub)
        self._save_dedup()
        self.save_meta()
        self.log.close()

    def save_meta(self) -> None:
        self.meta_store.save_epoch(self.topic_epoch)

    def is_idle(self) -> bool:
        return self.log_end == self.log.start_offset and not self.producers and not any(s.consumers for s in self.subscriptions.values())
