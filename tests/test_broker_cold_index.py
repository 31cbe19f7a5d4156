"""The broker keeps no per-entry memory for retained, acknowledged entries, so a long soak does not grow it:
the entry index is warm only from the slowest cursor on, and cold entries are read back from the
ledger files when a new subscription, a reader or a seek goes below it."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pulsar

from broker.config import BrokerConfig
from broker.connection import ServerConnection
from broker.proto import pulsar_wire_pb2 as pb
from broker.service import BrokerService
from broker.storage import POSITION_BLOCK, POSITION_BLOCKS_KEPT, LedgerIds, TopicLog
from broker.topic import COLD_BLOCKS_KEPT, COOL_MIN, Topic
from broker.wire import Frame, FrameDecoder, T, build_entry, command, encode_command, encode_payload_command
from tests.broker_helpers import client, receive_all, unique_topic

TOPIC = "persistent://public/default/cold"
EXCLUSIVE = pb.CommandSubscribe.Exclusive
SHARED = pb.CommandSubscribe.Shared
KEY_SHARED = pb.CommandSubscribe.Key_Shared


class DiskCore:
    """A broker core with a data dir and one connection whose output frames are decoded."""

    def __init__(self, data_dir: Path, **config: Any) -> None:
        self.service = BrokerService(BrokerConfig(data_dir=data_dir, **config))
        self.out = FrameDecoder(1 << 30)
        self.frames: list[Frame] = []
        self.conn = ServerConnection(self.service, lambda b: self.frames.extend(self.out.feed(b)), lambda: None, "core")
        self.conn.data_received(encode_command(command(T.CONNECT, client_version="t", protocol_version=20)))
        self.sequence = 0
        self.request = 100

    def send(self, cmd: pb.BaseCommand, entry: bytes | None = None) -> None:
        self.conn.data_received(encode_payload_command(cmd, entry) if entry is not None else encode_command(cmd))
        self.service.sync()

    def take(self, kind: int) -> list[Frame]:
        frames, self.frames = self.frames, []
        return [f for f in frames if f.command.type == kind]

    def produce(self, count: int, publish_time: int | None = None, size: int = 0) -> None:
        if self.sequence == 0:
            self.send(command(T.PRODUCER, topic=TOPIC, producer_id=1, request_id=1))
        for _ in range(count):
            seq = self.sequence
            self.sequence += 1
            stamp = publish_time if publish_time is not None else 1_000_000 + seq
            meta = pb.MessageMetadata(producer_name="p", sequence_id=seq, publish_time=stamp, partition_key=f"k{seq % 7}")
            body = f"m{seq}".encode() + bytes(size)
            self.send(command(T.SEND, producer_id=1, sequence_id=seq, num_messages=1), build_entry(meta, body))
        self.take(T.SEND_RECEIPT)

    def subscribe(self, consumer_id: int, name: str, sub_type: int = EXCLUSIVE, earliest: bool = True, durable: bool = True) -> None:
        self.request += 1
        position = pb.CommandSubscribe.Earliest if earliest else pb.CommandSubscribe.Latest
        self.send(command(T.SUBSCRIBE, topic=TOPIC, subscription=name, subType=sub_type, consumer_id=consumer_id,
                          request_id=self.request, initialPosition=position, durable=durable))  # fmt: skip
        self.take(T.SUCCESS)

    def receive(self, consumer_id: int, permits: int) -> list[tuple[int, int, bytes]]:
        """(ledger, entry, payload) of every MESSAGE delivered for `permits` permits."""
        self.send(command(T.FLOW, consumer_id=consumer_id, messagePermits=permits))
        out = []
        for frame in self.take(T.MESSAGE):
            mid = frame.command.message.message_id
            assert frame.entry is not None
            out.append((mid.ledgerId, mid.entryId, frame.entry[frame.payload_offset :].rstrip(b"\x00")))
        return out

    def ack_cumulative(self, consumer_id: int, ledger: int, entry: int) -> None:
        self.send(command(T.ACK, consumer_id=consumer_id, ack_type=pb.CommandAck.Cumulative,
                          message_id=[pb.MessageIdData(ledgerId=ledger, entryId=entry)]))  # fmt: skip

    @property
    def topic(self) -> Topic:
        return self.service.topics[TOPIC]


def consume_and_ack_all(core: DiskCore, consumer_id: int, expected: int) -> None:
    got = core.receive(consumer_id, expected + 10)
    assert len(got) == expected
    core.ack_cumulative(consumer_id, got[-1][0], got[-1][1])
    core.service.housekeeping()


def test_index_holds_no_more_than_the_unacknowledged_part(tmp_path: Path) -> None:
    core = DiskCore(tmp_path, retention_minutes=120)
    core.subscribe(1, "live")
    core.produce(5000)
    consume_and_ack_all(core, 1, 5000)
    topic = core.topic
    assert topic.log.start_offset == 0 and topic.log_end == 5000  # retention keeps everything on disk
    assert topic.warm_entries() <= 1  # only the last entry (GET_LAST_MESSAGE_ID) stays
    core.produce(3000)
    got = core.receive(1, 1000)
    core.ack_cumulative(1, got[-1][0], got[-1][1])
    core.service.housekeeping()
    unacked = topic.log_end - (topic.subscriptions["live"].mark_delete + 1)
    assert 1900 <= unacked <= 2000  # the 10 permits left over from the first round deliver too
    assert topic.warm_entries() <= unacked + COOL_MIN
    # The log itself keeps a file position per 1024 records and a few walked blocks, nothing per entry.
    assert sum(len(led.checkpoints) for led in topic.log.ledgers) <= 8000 // POSITION_BLOCK + len(topic.log.ledgers)
    assert len(topic.log._boundaries) <= POSITION_BLOCKS_KEPT


def test_no_subscription_keeps_nothing_warm(tmp_path: Path) -> None:
    core = DiskCore(tmp_path, retention_minutes=120)
    core.produce(3000)
    core.service.housekeeping()
    assert core.topic.warm_entries() <= 1


def test_earliest_subscribers_after_cooling_get_every_retained_message_in_order(tmp_path: Path) -> None:
    core = DiskCore(tmp_path, retention_minutes=120, cache_bytes=4096)  # a small cache: reads come from disk
    core.subscribe(1, "live")
    core.produce(2600)
    consume_and_ack_all(core, 1, 2600)
    assert core.topic.warm_entries() <= 1
    expected = [f"m{i}".encode() for i in range(2600)]
    for consumer_id, name, sub_type, durable in ((2, "late", EXCLUSIVE, True), (3, "shared", SHARED, True),
                                                (4, "keys", KEY_SHARED, True), (5, "reader", EXCLUSIVE, False)):  # fmt: skip
        core.subscribe(consumer_id, name, sub_type, durable=durable)
        got = core.receive(consumer_id, 3000)
        assert [payload for _, _, payload in got] == expected, name
        assert [entry for _, entry, _ in got] == list(range(2600)), name
        assert core.topic.warm_entries() <= 1 + COLD_BLOCKS_KEPT * 1024


def test_seek_below_the_warm_part_by_id_and_by_publish_time(tmp_path: Path) -> None:
    core = DiskCore(tmp_path, retention_minutes=120)
    core.subscribe(1, "live")
    core.produce(3000)
    consume_and_ack_all(core, 1, 3000)
    ledger = core.topic.log.current_ledger_id
    core.send(command(T.SEEK, consumer_id=1, request_id=50, message_id=pb.MessageIdData(ledgerId=ledger, entryId=1234)))
    core.take(T.SUCCESS)
    core.subscribe(1, "live")  # SEEK disconnects the consumer, as Pulsar does
    got = core.receive(1, 5000)
    assert [payload for _, _, payload in got] == [f"m{i}".encode() for i in range(1234, 3000)]
    core.send(command(T.SEEK, consumer_id=1, request_id=51, message_publish_time=1_000_000 + 2100))
    core.subscribe(1, "live")
    got = core.receive(1, 5000)
    assert got[0][2] == b"m2100" and len(got) == 900


def test_retention_by_time_still_deletes_old_ledgers(tmp_path: Path) -> None:
    core = DiskCore(tmp_path, retention_minutes=1, ledger_max_bytes=4096)
    core.subscribe(1, "live")
    old = int(time.time() * 1000) - 5 * 60_000
    core.produce(600, publish_time=old, size=100)
    recent = int(time.time() * 1000)
    core.produce(300, publish_time=recent, size=100)
    consume_and_ack_all(core, 1, 900)
    for _ in range(100):
        core.service.housekeeping()
    log = core.topic.log
    assert 500 <= log.start_offset <= 600  # the old ledgers went, the recent ones stay
    core.subscribe(2, "late")
    got = core.receive(2, 5000)
    assert [p for _, _, p in got] == [f"m{i}".encode() for i in range(log.start_offset, 900)]


def test_retention_by_size_still_deletes_old_ledgers(tmp_path: Path) -> None:
    core = DiskCore(tmp_path, retention_mb=1, ledger_max_bytes=64 * 1024)
    core.subscribe(1, "live")
    core.produce(1000, size=3000)  # ~3 MB
    consume_and_ack_all(core, 1, 1000)
    for _ in range(100):
        core.service.housekeeping()
    log = core.topic.log
    assert log.start_offset > 0 and log.size_bytes <= 1024 * 1024 + 64 * 1024
    core.subscribe(2, "late")
    got = core.receive(2, 5000)
    assert [p[:6] for _, _, p in got] == [f"m{i}".encode() for i in range(log.start_offset, 1000)]


def test_cold_reads_after_reopen_match_what_was_written(tmp_path: Path) -> None:
    entries = [bytes([i % 251]) * random.Random(i).randrange(1, 300) for i in range(3 * POSITION_BLOCK + 17)]
    log = TopicLog(tmp_path / "t", LedgerIds(tmp_path), ledger_max_bytes=200_000)
    for entry in entries:
        log.append(entry)
    log.close()
    reopened = TopicLog(tmp_path / "t", LedgerIds(tmp_path), ledger_max_bytes=200_000)
    assert len(reopened.ledgers) > 2
    order = list(range(len(entries)))
    random.Random(1).shuffle(order)
    assert all(reopened.read(o) == entries[o] for o in order)
    assert len(reopened._boundaries) <= POSITION_BLOCKS_KEPT
    # appends after a walk of the tail block are readable too
    reopened.append(b"new")
    assert reopened.read(len(entries)) == b"new"


def test_kill_restart_with_retention_recovers_cold_entries(broker_factory) -> None:
    broker = broker_factory(extra_args=["--retention-minutes", "120"])
    topic = unique_topic("cold")
    total = 2500
    with client(broker.service_url, operation_timeout_seconds=30) as c:
        consumer = c.subscribe(topic, "live", initial_position=pulsar.InitialPosition.Earliest)
        producer = c.create_producer(topic, batching_enabled=False, block_if_queue_full=True)
        for i in range(total):
            producer.send_async(str(i).encode(), None)
        producer.flush()
        assert len(receive_all(consumer, total)) == total  # acked
        time.sleep(1.5)  # acks flushed, cursor snapshot written, index cooled
        broker.kill()
        broker.start()
        late = c.subscribe(topic, "late", initial_position=pulsar.InitialPosition.Earliest)
        assert [int(m.data()) for m in receive_all(late, total)] == list(range(total))
        try:
            extra = consumer.receive(timeout_millis=500)
        except pulsar.Timeout:
            extra = None
        assert extra is None, "acknowledged messages came back to the live subscription"
