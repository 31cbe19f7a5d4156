"""Writes the broker fuzz corpus: valid frames of each command the broker handles.

Run `python -m tests.make_broker_corpus` to regenerate tests/fuzz_corpus/broker/.
"""

from __future__ import annotations

from pathlib import Path

from broker.proto import pulsar_wire_pb2 as pb
from broker.wire import T, build_entry, command, encode_command, encode_payload_command

CORPUS = Path(__file__).parent / "fuzz_corpus" / "broker"
TOPIC = "persistent://public/default/fuzz"


def frames() -> dict[str, bytes]:
    meta = pb.MessageMetadata(producer_name="p", sequence_id=0, publish_time=1, partition_key="k", num_messages_in_batch=1)
    mid = pb.MessageIdData(ledgerId=1, entryId=0)
    return {
        "connect": encode_command(command(T.CONNECT, client_version="fuzz", protocol_version=20)),
        "ping": encode_command(command(T.PING)),
        "lookup": encode_command(command(T.LOOKUP, topic=TOPIC, request_id=1)),
        "partitioned": encode_command(command(T.PARTITIONED_METADATA, topic=TOPIC, request_id=2)),
        "producer": encode_command(command(T.PRODUCER, topic=TOPIC, producer_id=1, request_id=3)),
        "send": encode_payload_command(command(T.SEND, producer_id=1, sequence_id=0), build_entry(meta, b"hello")),
        "subscribe": encode_command(command(T.SUBSCRIBE, topic=TOPIC, subscription="s", subType=pb.CommandSubscribe.Shared, consumer_id=1, request_id=4)),
        "flow": encode_command(command(T.FLOW, consumer_id=1, messagePermits=100)),
        "ack": encode_command(command(T.ACK, consumer_id=1, ack_type=pb.CommandAck.Individual, message_id=[mid])),
        "redeliver": encode_command(command(T.REDELIVER_UNACKNOWLEDGED_MESSAGES, consumer_id=1, message_ids=[mid])),
        "seek": encode_command(command(T.SEEK, consumer_id=1, request_id=5, message_id=mid)),
        "last_id": encode_command(command(T.GET_LAST_MESSAGE_ID, consumer_id=1, request_id=6)),
        "topics": encode_command(command(T.GET_TOPICS_OF_NAMESPACE, request_id=7, namespace="public/default")),
        "schema": encode_command(command(T.GET_SCHEMA, request_id=8, topic=TOPIC)),
        "unsubscribe": encode_command(command(T.UNSUBSCRIBE, consumer_id=1, request_id=9)),
        "close_producer": encode_command(command(T.CLOSE_PRODUCER, producer_id=1, request_id=10)),
    }


def main() -> None:
    CORPUS.mkdir(parents=True, exist_ok=True)
    for name, data in frames().items():
        (CORPUS / f"{name}.bin").write_bytes(data)


if __name__ == "__main__":
    main()
