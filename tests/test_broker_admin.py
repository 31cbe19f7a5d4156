"""Admin REST (Pulsar's /admin/v2 path shapes), retention/TTL and producer/consumer modes."""

from __future__ import annotations

import threading
import time

import pulsar
from pulsar.schema import AvroSchema, Integer, Record, String

from broker.proto import pulsar_wire_pb2 as pb
from broker.wire import T, command, encode_command
from tests.broker_helpers import admin, client, drain, receive_all, unique_topic
from tests.test_broker_bad_input import RawClient


def series(text: str, topic: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus samples of one topic: (name, sorted labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples
            if sample.labels.get("topic") == topic}


def test_tenants_namespaces_topics_and_stats(backend) -> None:
    url = backend.admin_url
    assert admin(url, "GET", "/admin/v2/brokers/health") == (200, "ok")
    status, clusters = admin(url, "GET", "/admin/v2/clusters")
    assert status == 200 and clusters == ["standalone"]
    # Pulsar wants a TenantInfo naming existing clusters (412 and the reason otherwise).
    assert admin(url, "PUT", "/admin/v2/tenants/acme") == (412, {"reason": "TenantInfo is null"})
    assert admin(url, "PUT", "/admin/v2/tenants/acme", {}) == (412, {"reason": "Clusters cannot be null"})
    assert admin(url, "PUT", "/admin/v2/tenants/acme", {"allowedClusters": ["elsewhere"]}) == (
        412, {"reason": "Clusters do not exist"})
    info = {"adminRoles": [], "allowedClusters": clusters}
    assert admin(url, "PUT", "/admin/v2/tenants/acme", info)[0] == 204
    assert admin(url, "PUT", "/admin/v2/tenants/acme", info)[0] == 409
    assert "acme" in admin(url, "GET", "/admin/v2/tenants")[1]
    assert admin(url, "PUT", "/admin/v2/namespaces/acme/live")[0] == 204
    assert admin(url, "GET", "/admin/v2/namespaces/acme") == (200, ["acme/live"])
    assert admin(url, "PUT", "/admin/v2/namespaces/nobody/live")[0] == 404
    assert admin(url, "PUT", "/admin/v2/persistent/acme/live/plain")[0] == 204
    assert admin(url, "PUT", "/admin/v2/persistent/acme/live/plain")[0] == 409
    assert admin(url, "PUT", "/admin/v2/persistent/acme/live/wide/partitions", 2)[0] == 204
    assert admin(url, "PUT", "/admin/v2/persistent/acme/live/bad/partitions", "two")[0] == 400  # not an int
    topics = admin(url, "GET", "/admin/v2/persistent/acme/live")[1]
    assert set(topics) == {"persistent://acme/live/plain", "persistent://acme/live/wide-partition-0", "persistent://acme/live/wide-partition-1"}
    assert admin(url, "GET", "/admin/v2/persistent/acme/live/partitioned") == (200, ["persistent://acme/live/wide"])
    with client(backend.service_url) as c:
        consumer = c.subscribe("persistent://acme/live/plain", "viewer")
        producer = c.create_producer("persistent://acme/live/plain")
        for _ in range(3):
            producer.send(b"12345")
        receive_all(consumer, 1)
        time.sleep(1.3)  # rates are computed once a second
        status, stats = admin(url, "GET", "/admin/v2/persistent/acme/live/plain/stats")
        assert status == 200
        assert stats["msgInCounter"] == 3 and stats["storageSize"] > 0
        assert stats["subscriptions"]["viewer"]["msgBacklog"] == 2
        # prefetched, not acked, but an Exclusive subscription counts no unacked messages (as Pulsar)
        assert stats["subscriptions"]["viewer"]["consumers"][0]["unackedMessages"] == 0
        assert stats["publishers"][0]["accessMode"] == "Shared"
        metrics = series(admin(url, "GET", "/metrics/")[1], "persistent://acme/live/plain")
        labels = {"cluster": "standalone", "namespace": "acme/live", "topic": "persistent://acme/live/plain"}
        assert metrics[("pulsar_in_messages_total", tuple(sorted(labels.items())))] == 3
        assert metrics[("pulsar_subscription_back_log", tuple(sorted({**labels, "subscription": "viewer"}.items())))] == 2
        assert admin(url, "DELETE", "/admin/v2/persistent/acme/live/plain")[0] == 412  # in use
        consumer.close()
        producer.close()
    assert admin(url, "DELETE", "/admin/v2/persistent/acme/live/plain")[0] == 204
    assert admin(url, "DELETE", "/admin/v2/persistent/acme/live/wide/partitions")[0] == 204
    assert admin(url, "GET", "/admin/v2/persistent/acme/live") == (200, [])
    assert admin(url, "DELETE", "/admin/v2/namespaces/acme/live")[0] == 204
    assert admin(url, "GET", "/admin/v2/persistent/acme/nothere/x/stats")[0] == 404


def test_namespace_deduplication_switch(broker) -> None:
    url = broker.admin_url
    admin(url, "PUT", "/admin/v2/namespaces/public/nodedup")
    assert admin(url, "POST", "/admin/v2/namespaces/public/nodedup/deduplication", False)[0] == 204
    assert admin(url, "GET", "/admin/v2/namespaces/public/nodedup/deduplication") == (200, False)
    assert admin(url, "POST", "/admin/v2/namespaces/public/nodedup/deduplication", "yes")[0] == 400
    raw = RawClient(broker.port)
    raw.connect()
    from broker.wire import build_entry, encode_payload_command

    topic = unique_topic("dup", "public/nodedup")
    raw.send(encode_command(command(T.PRODUCER, topic=topic, producer_id=1, request_id=1, producer_name="same")))
    assert raw.next().command.producer_success.last_sequence_id == -1
    entry = build_entry(pb.MessageMetadata(producer_name="same", sequence_id=5, publish_time=1), b"x")
    for _ in range(2):  # dedup off: a resend with the same sequence id is stored twice
        raw.send(encode_payload_command(command(T.SEND, producer_id=1, sequence_id=5), entry))
    ids = [raw.next().command.send_receipt.message_id.entryId for _ in range(2)]
    assert ids == [0, 1]
    topic2 = unique_topic("dup")  # public/default keeps the broker default: on
    raw.send(encode_command(command(T.PRODUCER, topic=topic2, producer_id=2, request_id=2, producer_name="same2")))
    raw.next()
    entry2 = build_entry(pb.MessageMetadata(producer_name="same2", sequence_id=5, publish_time=1), b"x")
    for _ in range(2):
        raw.send(encode_payload_command(command(T.SEND, producer_id=2, sequence_id=5), entry2))
    receipts = [raw.next().command.send_receipt.message_id for _ in range(2)]
    assert receipts[0].entryId == 0 and receipts[1].entryId == (1 << 64) - 1  # duplicate: (-1, -1), not stored


def test_ttl_expires_unconsumed_messages(broker_factory) -> None:
    broker = broker_factory(extra_args=["--ttl-seconds", "1"])
    topic = unique_topic("ttl")
    with client(broker.service_url) as c:
        consumer = c.subscribe(topic, "slow")
        producer = c.create_producer(topic)
        producer.send(b"old")
        consumer.close()
        time.sleep(1.6)
        producer.send(b"fresh")
        consumer = c.subscribe(topic, "slow")
        assert [m.data() for m in receive_all(consumer, 2, timeout_ms=1500)] == [b"fresh"]
    status, stats = admin(broker.admin_url, "GET", "/admin/v2/" + topic.replace("://", "/") + "/stats")
    assert stats["subscriptions"]["slow"]["expiredMessages"] == 1


def test_retention_keeps_acknowledged_data_for_readers(broker_factory) -> None:
    broker = broker_factory(extra_args=["--retention-minutes", "10", "--ledger-max-mb", "1"])
    topic = unique_topic("retain")
    with client(broker.service_url) as c:
        consumer = c.subscribe(topic, "s")
        producer = c.create_producer(topic, batching_enabled=False)
        for _ in range(40):
            producer.send(b"r" * 64 * 1024)
        receive_all(consumer, 40)
        time.sleep(0.5)
        reader = c.create_reader(topic, pulsar.MessageId.earliest)
        assert sum(1 for _ in iter(lambda: reader.read_next(2000) if reader.has_message_available() else None, None)) == 40


def test_wait_for_exclusive_producer_gets_access_when_owner_leaves(backend) -> None:
    topic = unique_topic("wait")
    with client(backend.service_url) as c:
        owner = c.create_producer(topic, access_mode=pulsar.ProducerAccessMode.Exclusive)
        got: list[pulsar.Producer] = []
        waiter = threading.Thread(target=lambda: got.append(c.create_producer(topic, access_mode=pulsar.ProducerAccessMode.WaitForExclusive)))
        waiter.start()
        time.sleep(0.5)
        assert not got, "the waiting producer was admitted while the owner was connected"
        owner.close()
        waiter.join(10)
        assert got, "the waiting producer never got access"
        got[0].send(b"my turn")


def test_cumulative_ack_on_exclusive(backend) -> None:
    topic = unique_topic("cumulative")
    with client(backend.service_url) as c:
        consumer = c.subscribe(topic, "s")
        producer = c.create_producer(topic, batching_enabled=False)
        for i in range(10):
            producer.send(str(i).encode())
        msgs = receive_all(consumer, 10, ack=False)
        consumer.acknowledge_cumulative(msgs[6])
        time.sleep(0.3)
        consumer.close()
        consumer = c.subscribe(topic, "s")
        assert [m.data() for m in receive_all(consumer, 3)] == [b"7", b"8", b"9"]
        assert drain(consumer) == []


def test_schema_versions_evolve_compatibly(broker) -> None:
    class V1(Record):
        _record_name = "Reading"
        name = String()

    class V2(Record):
        _record_name = "Reading"
        name = String()
        level = Integer(default=0, required_default=True)

    topic = unique_topic("evolve")
    with client(broker.service_url) as c:
        c.create_producer(topic, schema=AvroSchema(V1)).send(V1(name="a"))
        c.create_producer(topic, schema=AvroSchema(V2)).send(V2(name="b", level=3))
    raw = RawClient(broker.port)
    raw.connect()
    for version in (0, 1):
        raw.send(encode_command(command(T.GET_SCHEMA, request_id=10 + version, topic=topic, schema_version=version.to_bytes(8, "big"))))
        reply = raw.next().command.getSchemaResponse
        assert reply.schema_version == version.to_bytes(8, "big") and reply.schema.type == pb.Schema.Avro
    raw.send(encode_command(command(T.GET_SCHEMA, request_id=20, topic=topic, schema_version=(7).to_bytes(8, "big"))))
    assert raw.next().command.getSchemaResponse.error_code == pb.TopicNotFound
