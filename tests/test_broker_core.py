"""Unit tests of the broker's sans-I/O pieces: framing, names, storage, cursor arithmetic."""

from __future__ import annotations

import os

import pytest

from broker.config import BrokerConfig
from broker.connection import ServerConnection
from broker.names import InvalidTopicName, TopicName
from broker.proto import pulsar_wire_pb2 as pb
from broker.service import BrokerService
from broker.storage import LedgerIds, TopicLog
from broker.wire import (
    Frame,
    FrameDecoder,
    FrameError,
    T,
    build_entry,
    command,
    encode_command,
    encode_payload_command,
    s64,
    u64,
)


def test_frames_survive_any_segmentation() -> None:
    meta = pb.MessageMetadata(producer_name="p", sequence_id=3, publish_time=9)
    stream = encode_command(command(T.PING)) + encode_payload_command(command(T.SEND, producer_id=1, sequence_id=3), build_entry(meta, b"body"))
    for split in (1, 2, 7, len(stream)):
        decoder = FrameDecoder()
        frames = []
        for start in range(0, len(stream), split):
            frames.extend(decoder.feed(stream[start : start + split]))
        assert [f.command.type for f in frames] == [T.PING, T.SEND]
        send = frames[1]
        assert send.metadata is not None and send.entry is not None
        assert send.checksum_ok and send.metadata.sequence_id == 3
        assert send.entry[send.payload_offset :] == b"body"


def test_checksum_mismatch_is_flagged_not_fatal() -> None:
    entry = bytearray(build_entry(pb.MessageMetadata(producer_name="p", sequence_id=0, publish_time=1), b"abc"))
    entry[-1] ^= 1
    frame = FrameDecoder().feed(encode_payload_command(command(T.SEND, producer_id=1, sequence_id=0), bytes(entry)))[0]
    assert not frame.checksum_ok


def test_entries_without_checksum_are_accepted() -> None:
    entry = build_entry(pb.MessageMetadata(producer_name="p", sequence_id=0, publish_time=1), b"abc", checksum=False)
    frame = FrameDecoder().feed(encode_payload_command(command(T.SEND, producer_id=1, sequence_id=0), entry))[0]
    assert frame.entry is not None
    assert frame.checksum_ok and frame.entry[frame.payload_offset :] == b"abc"


@pytest.mark.parametrize(
    "data,reason",
    [
        (b"\x00\x00\x00\x02\x00\x00", "smaller than"),
        (b"\x00\x00\x00\x08\x00\x00\x00\x09xxxx", "does not fit"),
        (b"\x00\x00\x00\x08\x00\x00\x00\x04\xff\xff\xff\xff", "undecodable"),
        ((1 << 30).to_bytes(4, "big"), "exceeds the limit"),
    ],
)
def test_malformed_frames_raise_frame_error_with_reason(data: bytes, reason: str) -> None:
    with pytest.raises(FrameError, match=reason):
        FrameDecoder().feed(data)


def test_int64_sentinels_round_trip() -> None:
    assert u64(-1) == (1 << 64) - 1 and s64(u64(-1)) == -1 and s64(5) == 5


@pytest.mark.parametrize(
    "text,expected",
    [
        ("t", "persistent://public/default/t"),
        ("acme/live/t", "persistent://acme/live/t"),
        ("non-persistent://a/b/c-partition-3", "non-persistent://a/b/c-partition-3"),
    ],
)
def test_topic_names(text: str, expected: str) -> None:
    assert str(TopicName.parse(text)) == expected


def test_partition_names() -> None:
    name = TopicName.parse("persistent://a/b/c-partition-3")
    assert name.partition_index == 3 and str(name.base) == "persistent://a/b/c"
    assert TopicName.parse("persistent://a/b/c").partition_index == -1


@pytest.mark.parametrize("text", ["persistent://a/b", "persistent://a/b/c\n", "persistent://a\n/b/c", "persistent://a/b/../x", "file://a/b/c", "persistent://a b/c/d", "persistent://a/b/c/d", "persistent://a/b/.."])
def test_invalid_topic_names(text: str) -> None:
    with pytest.raises(InvalidTopicName):
        TopicName.parse(text)


def test_log_positions_ledgers_and_torn_tail(tmp_path) -> None:
    ids = LedgerIds(tmp_path)
    log = TopicLog(tmp_path / "t", ids)
    first_ledger = log.current_ledger_id
    offsets = [log.append(f"e{i}".encode()) for i in range(3)]
    log.sync()
    assert offsets == [0, 1, 2] and log.position(2) == (first_ledger, 2)
    ledger_path = log.ledgers[-1].path
    log.close()
    with open(ledger_path, "ab") as handle:  # a crash in the middle of a record
        handle.write(b"\x00\x00\x00\x10\x00")
    reopened = TopicLog(tmp_path / "t", LedgerIds(tmp_path))
    assert reopened.end_offset == 3 and [reopened.read(o) for o in range(3)] == [b"e0", b"e1", b"e2"]
    assert reopened.current_ledger_id > first_ledger  # a new incarnation, never a reused id
    assert reopened.position(3) == (reopened.current_ledger_id, 0)
    assert reopened.position_before(0) == (first_ledger, -1)
    assert os.path.getsize(ledger_path) == reopened.ledgers[0].size


def test_trim_deletes_whole_acknowledged_ledgers(tmp_path) -> None:
    log = TopicLog(tmp_path / "t", LedgerIds(tmp_path), ledger_max_bytes=100)
    for i in range(10):
        log.append(bytes(40) + bytes([i]))
    assert len(log.ledgers) > 2
    freed = log.trim(6)
    assert freed > 0 and log.start_offset <= 6 and log.read(6)[-1] == 6
    with pytest.raises(KeyError):
        log.read(0)


class Core:
    """A broker core in memory with one connection whose output is decoded for inspection."""

    def __init__(self) -> None:
        self.service = BrokerService(BrokerConfig(data_dir=None))
        self.out = FrameDecoder(1 << 30)
        self.frames: list[Frame] = []
        self.conn = ServerConnection(self.service, lambda b: self.frames.extend(self.out.feed(b)), lambda: None, "core")
        self.conn.data_received(encode_command(command(T.CONNECT, client_version="t", protocol_version=20)))

    def send(self, cmd: pb.BaseCommand, entry: bytes | None = None) -> None:
        self.conn.data_received(encode_payload_command(cmd, entry) if entry is not None else encode_command(cmd))
        self.service.sync()

    def take(self) -> list[Frame]:
        frames, self.frames = self.frames, []
        return frames


def test_batch_index_acks_and_redelivery_counts_in_memory() -> None:
    core = Core()
    topic = "persistent://public/default/core"
    core.send(command(T.PRODUCER, topic=topic, producer_id=1, request_id=1))
    meta = pb.MessageMetadata(producer_name="p", sequence_id=0, publish_time=1, num_messages_in_batch=4)
    core.send(command(T.SEND, producer_id=1, sequence_id=0, num_messages=4), build_entry(meta, b"batch"))
    core.send(command(T.SUBSCRIBE, topic=topic, subscription="s", subType=pb.CommandSubscribe.Shared, consumer_id=1, request_id=2, initialPosition=pb.CommandSubscribe.Earliest))
    core.send(command(T.FLOW, consumer_id=1, messagePermits=10))
    msgs = [f for f in core.take() if f.command.type == T.MESSAGE]
    assert len(msgs) == 1
    mid = msgs[0].command.message.message_id
    # Ack indexes 0 and 2: bits still set are the unacknowledged ones (1 and 3) -> 0b1010.
    core.send(command(T.ACK, consumer_id=1, ack_type=pb.CommandAck.Individual, message_id=[pb.MessageIdData(ledgerId=mid.ledgerId, entryId=mid.entryId, ack_set=[0b1010])], request_id=7))
    acks = [f for f in core.take() if f.command.type == T.ACK_RESPONSE]
    assert acks and acks[0].command.ackResponse.request_id == 7 and not acks[0].command.ackResponse.HasField("error")
    core.send(command(T.REDELIVER_UNACKNOWLEDGED_MESSAGES, consumer_id=1, message_ids=[pb.MessageIdData(ledgerId=mid.ledgerId, entryId=mid.entryId)]))
    again = [f for f in core.take() if f.command.type == T.MESSAGE]
    assert len(again) == 1
    assert again[0].command.message.redelivery_count == 1
    assert list(again[0].command.message.ack_set) == [0b1010]
    core.send(command(T.ACK, consumer_id=1, ack_type=pb.CommandAck.Individual, message_id=[pb.MessageIdData(ledgerId=mid.ledgerId, entryId=mid.entryId, ack_set=[0])]))
    sub = core.service.topics[topic].subscriptions["s"]
    assert sub.mark_delete == 0 and not sub.batch_acks


def test_cumulative_ack_refused_on_shared_with_receipt() -> None:
    core = Core()
    topic = "persistent://public/default/core2"
    core.send(command(T.SUBSCRIBE, topic=topic, subscription="s", subType=pb.CommandSubscribe.Shared, consumer_id=1, request_id=2))
    core.take()
    core.send(command(T.ACK, consumer_id=1, ack_type=pb.CommandAck.Cumulative, message_id=[pb.MessageIdData(ledgerId=1, entryId=0)], request_id=3))
    reply = core.take()[0].command.ackResponse
    assert reply.error == pb.NotAllowedError and "Cumulative" in reply.message


def test_entry_cache_is_one_budget_for_all_topics(tmp_path) -> None:
    from broker.storage import EntryCache

    cache = EntryCache(limit_bytes=1000)
    logs = [TopicLog(tmp_path / f"t{i}", LedgerIds(tmp_path), cache=cache) for i in range(4)]
    for log in logs:
        for _ in range(10):
            log.append(bytes(100))
    assert cache.size <= 1000 and len(cache) == 10
    # evicted entries come back from disk, unchanged
    assert all(log.read(o) == bytes(100) for log in logs for o in range(10))
