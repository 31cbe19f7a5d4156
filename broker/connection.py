"""One client connection: decodes commands, answers them, and carries deliveries back.

Sans-I/O: bytes come in through `data_received`, bytes leave through the `send` callable given
at construction, and `close` asks the shell to drop the connection. The time comes in too: each
entry point takes the caller's `now_ms` (wall clock, ms; delayed delivery compares it with
`deliver_at`), or the service's clock when the caller has none (tests driving a connection by hand). Errors go where the client
expects them (docs/pulsar-wire-protocol.md §2, §14): inside LOOKUP/PARTITIONED_METADATA/schema/stats
responses, as ERROR for requests that have one, never as SEND_ERROR except for checksums.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from broker import auth
from broker.names import InvalidTopicName, TopicName
from broker.proto import pulsar_wire_pb2 as pb
from broker.schemas import IncompatibleSchema
from broker.service import BrokerService, NamespaceNotFound
from broker.subscription import (
    EXCLUSIVE,
    FAILOVER,
    KEY_SHARED,
    SHARED,
    SUB_TYPE_NAMES,
    Consumer,
    Delivery,
    Subscription,
    SubType,
)
from broker.topic import Producer, Topic
from broker.wire import (
    Frame,
    FrameDecoder,
    FrameError,
    T,
    command,
    encode_command,
    encode_payload_command,
    s64,
    sub_command,
)
from schemas.names import InvalidName, check_subscription

log = logging.getLogger("wtpulsar.broker.connection")

MAX_PROTOCOL_VERSION = 21
NO_REQUEST = (1 << 64) - 1
E = pb  # ServerError values live at module level of the generated code
_MESSAGE_ID_MAX = (1 << 63) - 1


def busy_reason(sub: Subscription | None, sub_name: str, sub_type: SubType) -> str | None:
    """Why a consumer of `sub_type` cannot join a subscription that has consumers, or None."""
    if sub is None or not sub.consumers:
        return None
    if sub.sub_type != sub_type:
        return f"Subscription {sub_name} is of type {SUB_TYPE_NAMES[sub.sub_type]}; cannot attach a {SUB_TYPE_NAMES.get(sub_type, sub_type)} consumer"
    if sub_type == EXCLUSIVE:
        return f"Exclusive consumer is already connected to subscription {sub_name}"
    return None


class ServerConnection:
    def __init__(self, service: BrokerService, send: Callable[[bytes], None], close: Callable[[], None], peer: str = "",
                 now: float | None = None, now_ms: int | None = None) -> None:  # fmt: skip
        """`now`: the service's monotonic clock (s), for the handshake timeout; `now_ms`: wall clock (ms)."""
        self.service = service
        self._send = send
        self._close = close
        self.peer = peer
        service.next_connection_id += 1
        self.id = service.next_connection_id
        # Until CONNECT, a frame (and everything buffered) is bounded by the small pre-CONNECT limit.
        self.decoder = FrameDecoder(service.config.max_pre_connect_bytes)
        self.opened_at = service.monotonic() if now is None else now
        self._now_ms = service.wall_ms() if now_ms is None else now_ms  # of the frames being handled
        service.pending.add(self)
        self.connected = False
        self.closed = False
        self.protocol_version = 0
        self.client_version = ""
        self.role: str | None = None
        self.producers: dict[int, Producer] = {}
        self.consumers: dict[int, tuple[Consumer, Subscription, Topic]] = {}
        self.n_sends = self.n_receipts = self.n_bytes = 0
        self.connected_since = datetime.fromtimestamp(self._now_ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    # ------------------------------------------------------------------ I/O edges
    def data_received(self, data: bytes, now_ms: int | None = None) -> None:
        if self.closed:
            return
        self._now_ms = self.service.wall_ms() if now_ms is None else now_ms
        self.n_bytes += len(data)
        if not self.connected and self.n_bytes > self.service.config.max_pre_connect_bytes:
            log.warning("closing connection from %s: %d bytes before CONNECT (limit %d)", self.peer, self.n_bytes, self.service.config.max_pre_connect_bytes)
            self.abort()
            return
        try:
            frames = self.decoder.feed(data)
        except FrameError as exc:
            log.warning("closing connection from %s: malformed frame: %s", self.peer, exc)
            self.abort()
            return
        for frame in frames:
            if self.closed:
                return
            try:
                self.handle(frame)
            except Exception:  # a bug must cost this connection at most, never the broker
                log.exception("closing connection from %s after an internal error on %s", self.peer, pb.BaseCommand.Type.Name(frame.command.type))
                self.abort()
                return

    def write(self, cmd: pb.BaseCommand) -> None:
        if not self.closed:
            self._send(encode_command(cmd))

    def abort(self, now_ms: int | None = None) -> None:
        if not self.closed:
            self._close()
            self.connection_lost(now_ms)

    def connection_lost(self, now_ms: int | None = None) -> None:
        """Drop every producer and consumer of this connection at once (docs/pulsar-wire-protocol.md §15)."""
        if self.closed:
            return
        self._now_ms = self.service.wall_ms() if now_ms is None else now_ms
        log.debug("connection %s lost: %d sends, %d receipts, %d bytes in", self.peer, self.n_sends, self.n_receipts, self.n_bytes)
        self.closed = True
        self.service.connections.discard(self)
        self.service.pending.discard(self)
        for producer in list(self.producers.values()):
            self._remove_producer(producer)
        for consumer_id in list(self.consumers):
            self._remove_consumer(consumer_id, self._now_ms)

    def handshake_expired(self, now: float) -> bool:
        """True once a connection that has not completed CONNECT is older than the handshake timeout."""
        return not self.connected and not self.closed and now - self.opened_at > self.service.config.handshake_timeout

    # ------------------------------------------------------------------ dispatch
    def handle(self, frame: Frame) -> None:
        cmd = frame.command
        kind = cmd.type
        if not self.connected:
            if kind == T.CONNECT and cmd.HasField("connect"):
                self._on_connect(cmd.connect)
            else:
                log.warning("closing connection from %s: %s before CONNECT", self.peer, pb.BaseCommand.Type.Name(kind))
                self.abort()
            return
        handler = self._HANDLERS.get(kind)
        body = sub_command(cmd)
        if kind not in (T.SEND, T.ACK, T.FLOW) and log.isEnabledFor(logging.DEBUG):
            log.debug("%s: %s", self.peer, str(cmd).replace("\n", " "))
        if handler is None or body is None:
            self._unsupported(cmd)
            return
        if kind == T.SEND:
            self._on_send(body, frame)
        else:
            handler(self, body)

    def _unsupported(self, cmd: pb.BaseCommand) -> None:
        name = pb.BaseCommand.Type.Name(cmd.type) if cmd.type in pb.BaseCommand.Type.values() else str(cmd.type)
        body = sub_command(cmd)
        request_id = getattr(body, "request_id", None) if body is not None else None
        log.warning("connection from %s: unsupported command %s", self.peer, name)
        if request_id is not None:
            self.error(request_id, pb.NotAllowedError, f"command {name} is not supported by this broker")
        elif body is None:
            self.abort()

    def error(self, request_id: int, code: int, message: str) -> None:
        self.write(command(T.ERROR, request_id=request_id, error=code, message=message))

    def success(self, request_id: int, schema: pb.Schema | None = None) -> None:
        self.write(command(T.SUCCESS, request_id=request_id, schema=schema))

    # ------------------------------------------------------------------ connect, keepalive
    def _on_connect(self, body: pb.CommandConnect) -> None:
        secret = self.service.config.auth_token_secret
        if secret is not None:
            try:
                self.role = auth.authenticate(secret, body.auth_method_name, bytes(body.auth_data))
            except auth.AuthenticationFailed as exc:
                log.warning("refusing connection from %s: %s", self.peer, exc)
                self.error(NO_REQUEST, pb.AuthenticationError, "Failed to authenticate")
                self.abort()
                return
        self.protocol_version = min(body.protocol_version, MAX_PROTOCOL_VERSION)
        self.client_version = body.client_version
        self.connected = True
        self.decoder.max_frame_size = self.service.config.max_message_size + 10 * 1024
        self.service.pending.discard(self)
        self.service.connections.add(self)
        self.write(
            command(
                T.CONNECTED,
                server_version=self.service.config.server_version,
                protocol_version=self.protocol_version,
                max_message_size=self.service.config.max_message_size,
            )
        )

    def _on_ping(self, body: pb.CommandPing) -> None:
        self.write(command(T.PONG))

    def _on_pong(self, body: pb.CommandPong) -> None:
        pass

    def _on_auth_response(self, body: pb.CommandAuthResponse) -> None:
        pass  # we never challenge; a stray response is harmless

    # ------------------------------------------------------------------ names, lookup
    def _topic_name(self, text: str) -> TopicName:
        return TopicName.parse(text)

    def _topic_problem(self, text: str) -> tuple[int, str] | None:
        """Why a lookup-style request for `text` must fail (error code, message), or None.

        Lookups and partitioned metadata report errors inside their own response (docs/pulsar-wire-protocol.md §2)."""
        try:
            name = self._topic_name(text)
            self.service.check_namespace(name)
        except InvalidTopicName as exc:
            return pb.InvalidTopicName, str(exc)
        except NamespaceNotFound as exc:
            return pb.TopicNotFound, str(exc)
        if not self.service.can_lookup(self.role, name):
            return pb.AuthorizationError, self._denied("lookup", name)
        return None

    def _denied(self, action: str, name: TopicName) -> str:
        """The refusal message, and one log line for the operator."""
        log.warning("refusing %s on %s to role %r from %s: not authorized", action, name, self.role, self.peer)
        return f"Client with role {self.role!r} is not authorized to {action} on {name}"

    def _on_lookup(self, body: pb.CommandLookupTopic) -> None:
        def reply(**fields: Any) -> None:
            self.write(command(T.LOOKUP_RESPONSE, request_id=body.request_id, **fields))

        listener = body.advertised_listener_name
        if listener:
            reply(response=pb.CommandLookupTopicResponse.Failed, error=pb.ServiceNotReady, message=f"the broker do not have {listener} listener")
            return
        problem = self._topic_problem(body.topic)
        if problem is not None:
            reply(response=pb.CommandLookupTopicResponse.Failed, error=problem[0], message=problem[1])
            return
        reply(
            response=pb.CommandLookupTopicResponse.Connect,
            brokerServiceUrl=self.service.config.service_url,
            authoritative=True,
            proxy_through_service_url=True,
        )

    def _on_partitioned_metadata(self, body: pb.CommandPartitionedTopicMetadata) -> None:
        def reply(**fields: Any) -> None:
            self.write(command(T.PARTITIONED_METADATA_RESPONSE, request_id=body.request_id, **fields))

        problem = self._topic_problem(body.topic)
        if problem is not None:
            reply(response=pb.CommandPartitionedTopicMetadataResponse.Failed, error=problem[0], message=problem[1])
            return
        reply(response=pb.CommandPartitionedTopicMetadataResponse.Success, partitions=self.service.partitions_of(self._topic_name(body.topic)))

    # ------------------------------------------------------------------ producers
    def _on_producer(self, body: pb.CommandProducer) -> None:
        request_id = body.request_id
        existing = self.producers.get(body.producer_id)
        if existing is not None:
            self._producer_success(existing, request_id)
            return
        try:
            name = self._topic_name(body.topic)
            if not self.service.allowed(self.role, name, "produce"):
                self.error(request_id, pb.AuthorizationError, self._denied("produce", name))
                return
            topic = self.service.get_topic(name, create=True)
        except InvalidTopicName as exc:
            self.error(request_id, pb.InvalidTopicName, str(exc))
            return
        except NamespaceNotFound as exc:
            self.error(request_id, pb.TopicNotFound, str(exc))
            return
        assert topic is not None
        if self.service.partitions_of(name) > 0 and name.partition_index < 0:
            self.error(request_id, pb.NotAllowedError, f"{name} is partitioned: produce to its partitions")
            return
        producer_name = body.producer_name or f"wtpulsar-{self.id}-{uuid.uuid4().hex[:8]}"
        for other in topic.producers.values():
            if other.name == producer_name:
                self.error(request_id, pb.ProducerBusy, f"Producer with name '{producer_name}' is already connected to topic")
                return
        schema_version = b""
        if body.HasField("schema"):
            registry = self.service.schema_registry(name)
            try:
                version, added = registry.get_or_add(body.schema)
            except IncompatibleSchema as exc:
                self.error(request_id, pb.IncompatibleSchema, str(exc))
                return
            if added:
                self.service.save_schemas(name)
            schema_version = version.version_bytes
        elif self.service.schema_registry(name).latest is not None:
            schema_version = b""
        mode = body.producer_access_mode
        producer = Producer(body.producer_id, producer_name, topic, self, mode, body.epoch, request_id=request_id, schema_version=schema_version)
        exclusive_holders = [p for p in topic.producers.values() if p.access_mode != pb.Shared]
        if body.HasField("topic_epoch") and mode != pb.Shared and body.topic_epoch < topic.topic_epoch:
            self.error(request_id, pb.ProducerFenced, f"producer epoch {body.topic_epoch} is older than the topic's {topic.topic_epoch}")
            return
        if mode == pb.Shared:
            if exclusive_holders:
                self.error(request_id, pb.ProducerBusy, f"topic {name} has an exclusive producer")
                return
        elif mode == pb.Exclusive:
            if topic.producers:
                self.error(request_id, pb.ProducerFenced, f"topic {name} already has a producer; exclusive access refused")
                return
            topic.topic_epoch += 1
        elif mode == pb.ExclusiveWithFencing:
            for other in list(topic.producers.values()):
                other.connection.close_producer_by_broker(other)
            topic.topic_epoch += 1
        elif mode == pb.WaitForExclusive:
            if topic.producers:
                producer.ready = False
                topic.waiting_exclusive.append(producer)
                self.producers[body.producer_id] = producer
                self.write(command(T.PRODUCER_SUCCESS, request_id=request_id, producer_name=producer_name, last_sequence_id=-1, producer_ready=False))
                return
            topic.topic_epoch += 1
        if body.initial_subscription_name and body.initial_subscription_name not in topic.subscriptions:
            topic.create_subscription(body.initial_subscription_name, SHARED, True, initial_earliest=True)
        if mode != pb.Shared:
            topic.save_meta()
        self._register_producer(producer)
        self._producer_success(producer, request_id)

    def _register_producer(self, producer: Producer) -> None:
        self.producers[producer.producer_id] = producer
        producer.topic.producers[(self.id, producer.producer_id)] = producer

    def _producer_success(self, producer: Producer, request_id: int) -> None:
        topic = producer.topic
        last = topic.dedup.get(producer.name, -1) if topic.dedup_enabled else -1
        fields: dict[str, Any] = {"request_id": request_id, "producer_name": producer.name, "last_sequence_id": last, "producer_ready": True}
        if producer.schema_version:
            fields["schema_version"] = producer.schema_version
        if producer.access_mode != pb.Shared:
            fields["topic_epoch"] = topic.topic_epoch
        self.write(command(T.PRODUCER_SUCCESS, **fields))

    def _remove_producer(self, producer: Producer) -> None:
        self.producers.pop(producer.producer_id, None)
        topic = producer.topic
        topic.producers.pop((self.id, producer.producer_id), None)
        if producer in topic.waiting_exclusive:
            topic.waiting_exclusive.remove(producer)
        if producer.access_mode != pb.Shared and producer.ready:
            self._grant_waiting(topic)

    def _grant_waiting(self, topic: Topic) -> None:
        while topic.waiting_exclusive and not topic.producers:
            waiting = topic.waiting_exclusive.popleft()
            if waiting.connection.closed:
                continue
            waiting.ready = True
            topic.topic_epoch += 1
            topic.save_meta()
            waiting.connection.grant_exclusive(waiting)

    def grant_exclusive(self, producer: Producer) -> None:
        self._register_producer(producer)
        self._producer_success(producer, producer.request_id)

    def _on_close_producer(self, body: pb.CommandCloseProducer) -> None:
        producer = self.producers.get(body.producer_id)
        if producer is not None:
            self._remove_producer(producer)
        self.success(body.request_id)

    def close_producer_by_broker(self, producer: Producer) -> None:
        self._remove_producer(producer)
        self.write(command(T.CLOSE_PRODUCER, producer_id=producer.producer_id, request_id=NO_REQUEST))

    def _on_send(self, body: pb.CommandSend, frame: Frame) -> None:
        self.n_sends += 1
        producer = self.producers.get(body.producer_id)
        if producer is None:
            log.warning("closing connection from %s: SEND for unknown producer %d", self.peer, body.producer_id)
            self.abort()
            return
        if not producer.ready:
            log.warning("closing connection from %s: SEND from producer %s still waiting for exclusive access", self.peer, producer.name)
            self.abort()
            return
        if not frame.checksum_ok:
            log.warning("SEND from %s (producer %s, seq %d): checksum mismatch", self.peer, producer.name, body.sequence_id)
            self.write(command(T.SEND_ERROR, producer_id=body.producer_id, sequence_id=body.sequence_id, error=pb.ChecksumError, message="Checksum failed on the broker"))
            return
        assert frame.entry is not None and frame.metadata is not None
        size = len(frame.entry) - frame.payload_offset
        if size > self.service.config.max_message_size:
            log.warning("closing connection from %s: message of %d bytes exceeds max message size %d", self.peer, size, self.service.config.max_message_size)
            self.abort()
            return
        producer.topic.publish(producer, body, frame.entry, frame.metadata)

    def send_receipt(self, producer: Producer, sequence_id: int, highest: int, message_id: pb.MessageIdData) -> None:
        if producer.connection is self and self.producers.get(producer.producer_id) is producer:
            self.n_receipts += 1
            self.write(command(T.SEND_RECEIPT, producer_id=producer.producer_id, sequence_id=sequence_id, message_id=message_id, highest_sequence_id=highest))

    # ------------------------------------------------------------------ consumers
    def _on_subscribe(self, body: pb.CommandSubscribe) -> None:
        request_id = body.request_id
        if body.consumer_id in self.consumers:
            self.success(request_id)
            return
        try:
            check_subscription(body.subscription)
        except InvalidName as exc:
            self.error(request_id, pb.InvalidTopicName, str(exc))
            return
        try:
            name = self._topic_name(body.topic)
            if not self.service.allowed(self.role, name, "consume"):
                self.error(request_id, pb.AuthorizationError, self._denied("consume", name))
                return
            topic = self.service.get_topic(name, create=body.force_topic_creation or True)
        except InvalidTopicName as exc:
            self.error(request_id, pb.InvalidTopicName, str(exc))
            return
        except NamespaceNotFound as exc:
            self.error(request_id, pb.TopicNotFound, str(exc))
            return
        if topic is None:
            self.error(request_id, pb.TopicNotFound, f"topic {body.topic} does not exist")
            return
        if self.service.partitions_of(name) > 0 and name.partition_index < 0:
            self.error(request_id, pb.NotAllowedError, f"{name} is partitioned: subscribe to its partitions")
            return
        if body.HasField("schema") and body.schema.type != 0:  # 0: Schema.None (bytes)
            registry = self.service.schema_registry(name)
            try:
                existing = registry.find(body.schema.type, bytes(body.schema.schema_data))
                if existing is None:
                    if registry.latest is None and not topic.is_idle():
                        pass  # a typed consumer on an untyped, busy topic: allowed, nothing registered
                    else:
                        _, added = registry.get_or_add(body.schema, allow_add=registry.latest is None)
                        if added:
                            self.service.save_schemas(name)
            except IncompatibleSchema as exc:
                self.error(request_id, pb.IncompatibleSchema, str(exc))
                return
        sub_type = SubType(body.subType)  # proto2: an unknown number parses as the default, Exclusive
        durable = body.durable
        sub_name = body.subscription
        if not name.persistent:
            # Consumers and readers alike get a subscription without a cursor (docs/non-persistent.md).
            sub = topic.subscriptions.get(sub_name)
            busy = busy_reason(sub, sub_name, sub_type)
            if busy is not None:
                self.error(request_id, pb.ConsumerBusy, busy)
                return
            if sub is None:
                sub = topic.open_non_persistent(sub_name, sub_type)
            elif not sub.consumers:
                sub.sub_type = sub_type
        elif durable:
            sub = topic.subscriptions.get(sub_name)
            if sub is not None and not sub.durable:
                self.error(request_id, pb.ConsumerBusy, f"subscription {sub_name} is a reader cursor")
                return
            busy = busy_reason(sub, sub_name, sub_type)
            if busy is not None:
                self.error(request_id, pb.ConsumerBusy, busy)
                return
            if sub is None:
                sub = topic.create_subscription(sub_name, sub_type, True, body.initialPosition == pb.CommandSubscribe.Earliest)
            elif not sub.consumers:
                sub.sub_type = sub_type
        else:
            if sub_name in topic.subscriptions and topic.subscriptions[sub_name].consumers:
                self.error(request_id, pb.ConsumerBusy, f"reader subscription {sub_name} is in use")
                return
            kept = topic.subscriptions.get(sub_name)
            if kept is not None and not kept.durable and not kept.consumers:
                # A reader reconnecting after a seek: the broker keeps the position the seek set and
                # ignores the client's start id, which still names where the reader was (Pulsar reuses
                # the existing non-durable subscription the same way).
                sub = kept
            else:
                start = body.start_message_id if body.HasField("start_message_id") else None
                sub = topic.attach_reader(sub_name, start, body.initialPosition == pb.CommandSubscribe.Earliest)
            sub.sub_type = sub_type
        sticky: list[tuple[int, int]] | None = None
        if sub_type == KEY_SHARED and body.HasField("keySharedMeta") and body.keySharedMeta.keySharedMode == pb.STICKY:
            sticky = [(r.start, r.end) for r in body.keySharedMeta.hashRanges]
            conflict = sub.sticky_conflict(sticky)
            if conflict is not None:
                self.error(request_id, pb.ConsumerAssignError, conflict)
                return
        consumer = Consumer(
            consumer_id=body.consumer_id,
            name=body.consumer_name or f"consumer-{self.id}-{body.consumer_id}",
            sub_type=sub_type,
            priority=body.priority_level,
            deliver=self._deliver,
            notify_active=self._notify_active if self.protocol_version >= 12 else None,
            connection=self,
            sticky_ranges=sticky,
            address=self.peer,
            connected_since=self.connected_since,
        )
        self.consumers[body.consumer_id] = (consumer, sub, topic)
        self.success(request_id)
        sub.add_consumer(consumer)

    def _remove_consumer(self, consumer_id: int, now_ms: int) -> None:
        entry = self.consumers.pop(consumer_id, None)
        if entry is None:
            return
        consumer, sub, topic = entry
        sub.remove_consumer(consumer)
        if not sub.durable and not sub.consumers:
            topic.subscriptions.pop(sub.name, None)
        elif sub.durable and sub.dirty:
            topic.save_cursor(sub)
        topic.dispatch(now_ms)

    def close_consumer_by_broker(self, consumer: Consumer, now_ms: int) -> None:
        self._remove_consumer(consumer.consumer_id, now_ms)
        self.write(command(T.CLOSE_CONSUMER, consumer_id=consumer.consumer_id, request_id=NO_REQUEST))

    def _deliver(self, delivery: Delivery) -> None:
        """A MESSAGE frame for one delivery of a subscription's dispatch."""
        if self.closed:
            return
        entry_info = self.consumers.get(delivery.consumer_id)
        if entry_info is None:
            return
        consumer, _, topic = entry_info
        msg = command(
            T.MESSAGE,
            consumer_id=delivery.consumer_id,
            message_id=topic.message_id(delivery.offset),
            redelivery_count=delivery.redelivery_count or None,
            ack_set=None if delivery.ack_set is None else list(delivery.ack_set),
        )
        topic.msg_out += delivery.meta.num_messages
        topic.bytes_out += len(delivery.entry)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("MESSAGE offset %d (%d msgs) to %s redelivery %d", delivery.offset, delivery.meta.num_messages, consumer.name, delivery.redelivery_count)
        self._send(encode_payload_command(msg, delivery.entry))

    def _notify_active(self, consumer: Consumer, active: bool) -> None:
        self.write(command(T.ACTIVE_CONSUMER_CHANGE, consumer_id=consumer.consumer_id, is_active=active))

    def _lookup_consumer(self, consumer_id: int) -> tuple[Consumer, Subscription, Topic] | None:
        return self.consumers.get(consumer_id)

    def _on_flow(self, body: pb.CommandFlow) -> None:
        found = self._lookup_consumer(body.consumer_id)
        if found is None:
            return
        consumer, sub, topic = found
        sub.flow(consumer, body.messagePermits)
        log.debug("FLOW %d -> permits %d read_pos %d durable_end %d pending %d", body.messagePermits, consumer.permits, sub.read_pos, topic.durable_end, len(sub.pending))
        sub.dispatch(self._now_ms)

    def _offset(self, topic: Topic, message_id: pb.MessageIdData) -> int:
        return topic.log.offset_of(message_id.ledgerId, message_id.entryId)

    def _on_ack(self, body: pb.CommandAck) -> None:
        found = self._lookup_consumer(body.consumer_id)
        if found is None:
            if body.HasField("request_id"):
                self.write(command(T.ACK_RESPONSE, consumer_id=body.consumer_id, request_id=body.request_id, error=pb.ConsumerNotFound, message="Consumer not found"))
            return
        consumer, sub, topic = found
        if not topic.name.persistent:  # nothing is kept, so there is nothing to acknowledge
            if body.HasField("request_id"):
                self.write(command(T.ACK_RESPONSE, consumer_id=body.consumer_id, request_id=body.request_id))
            return
        if body.ack_type == pb.CommandAck.Cumulative:
            if sub.sub_type in (SHARED, KEY_SHARED):
                if body.HasField("request_id"):
                    self.write(command(T.ACK_RESPONSE, consumer_id=body.consumer_id, request_id=body.request_id, error=pb.NotAllowedError, message="Cumulative ack is not allowed on Shared and Key_Shared subscriptions"))
                return
            for message_id in body.message_id:
                sub.ack_cumulative(self._offset(topic, message_id), list(message_id.ack_set) or None)
        else:
            for message_id in body.message_id:
                sub.ack_individual(self._offset(topic, message_id), list(message_id.ack_set) or None)
        topic.journal_acks(sub)
        if body.HasField("request_id"):
            self.write(command(T.ACK_RESPONSE, consumer_id=body.consumer_id, request_id=body.request_id))
        if sub.sub_type == KEY_SHARED:
            sub.dispatch(self._now_ms)  # released key slots may unblock parked entries

    def _on_redeliver(self, body: pb.CommandRedeliverUnacknowledgedMessages) -> None:
        found = self._lookup_consumer(body.consumer_id)
        if found is None:
            return
        consumer, sub, topic = found
        if not topic.name.persistent:  # nothing kept to deliver again
            return
        ids = [self._offset(topic, m) for m in body.message_ids] if body.message_ids else None
        sub.redeliver(consumer, ids)
        sub.dispatch(self._now_ms)

    def _on_unsubscribe(self, body: pb.CommandUnsubscribe) -> None:
        found = self._lookup_consumer(body.consumer_id)
        if found is None:
            self.error(body.request_id, pb.ConsumerNotFound, "Consumer not found")
            return
        consumer, sub, topic = found
        others = [c for c in sub.consumers if c is not consumer]
        if others and not body.force:
            self.error(body.request_id, pb.MetadataError, f"Subscription {sub.name} has other connected consumers")
            return
        for other in others:
            if other.connection is not None:
                other.connection.close_consumer_by_broker(other, self._now_ms)
        self.consumers.pop(body.consumer_id, None)
        sub.remove_consumer(consumer)
        topic.remove_subscription(sub.name)
        self.success(body.request_id)

    def _on_close_consumer(self, body: pb.CommandCloseConsumer) -> None:
        self._remove_consumer(body.consumer_id, self._now_ms)
        self.success(body.request_id)

    def _on_seek(self, body: pb.CommandSeek) -> None:
        found = self._lookup_consumer(body.consumer_id)
        if found is None:
            self.error(body.request_id, pb.MetadataError, "Consumer not found")
            return
        consumer, sub, topic = found
        if not topic.name.persistent:  # Pulsar accepts the seek and changes nothing: there is no cursor
            self.success(body.request_id)
            return
        if body.HasField("message_publish_time"):
            target = topic.log_end
            for offset in range(topic.log.start_offset, topic.log_end):
                if topic.entry_meta(offset).publish_time >= body.message_publish_time:
                    target = offset
                    break
        elif body.HasField("message_id"):
            mid = body.message_id
            ledger, entry = s64(mid.ledgerId), s64(mid.entryId)
            if ledger == -1 and entry == -1:
                target = topic.log.start_offset
            elif ledger == _MESSAGE_ID_MAX:
                target = topic.log_end
            else:
                target = max(topic.log.start_offset, topic.log.offset_of(mid.ledgerId, mid.entryId))
        else:
            self.error(body.request_id, pb.MetadataError, "SEEK needs a message id or a publish time")
            return
        # Real-broker order (docs/pulsar-wire-protocol.md §10): disconnect the subscription's consumers, reset, then answer.
        for other in list(sub.consumers):
            if other.connection is not None:
                other.connection.close_consumer_by_broker(other, self._now_ms)
        sub.reset_to(target)
        if not sub.durable:
            topic.subscriptions[sub.name] = sub
        else:
            topic.save_cursor(sub)
        self.success(body.request_id)

    def _on_get_last_message_id(self, body: pb.CommandGetLastMessageId) -> None:
        found = self._lookup_consumer(body.consumer_id)
        if found is None:
            self.error(body.request_id, pb.ConsumerNotFound, "Consumer not found")
            return
        consumer, sub, topic = found
        if not topic.name.persistent:
            # Pulsar 4.0.8 refuses this on a non-persistent topic too, with UnknownError.
            self.error(body.request_id, pb.UnknownError, f"{topic.name} is non-persistent: it keeps no messages, so it has no last message id")
            return
        partition = topic.name.partition_index
        end = topic.durable_end
        if end > topic.log.start_offset:
            ledger_id, entry_id = topic.log.position(end - 1)
            meta = topic.entry_meta(end - 1)
            batch_index = meta.num_messages - 1 if meta.num_messages > 1 else -1
            last = pb.MessageIdData(ledgerId=ledger_id, entryId=entry_id, partition=partition, batch_index=batch_index)
        else:
            last = pb.MessageIdData(ledgerId=topic.log.current_ledger_id, entryId=(1 << 64) - 1, partition=partition)
        mark = sub.mark_delete
        if mark + 1 >= end and end > topic.log.start_offset:
            md_ledger, md_entry = topic.log.position(end - 1)
        else:
            md_ledger, md_entry = topic.log.position_before(mark + 1)
        mark_delete = pb.MessageIdData(ledgerId=md_ledger, entryId=md_entry & 0xFFFFFFFFFFFFFFFF)
        self.write(command(T.GET_LAST_MESSAGE_ID_RESPONSE, request_id=body.request_id, last_message_id=last, consumer_mark_delete_position=mark_delete))

    def _on_get_topics(self, body: pb.CommandGetTopicsOfNamespace) -> None:
        namespace = body.namespace
        if namespace not in self.service.namespaces:
            self.error(body.request_id, pb.MetadataError, f"Namespace {namespace} does not exist")
            return
        probe = TopicName.parse(f"persistent://{namespace}/x")
        if not self.service.can_lookup(self.role, probe):  # a namespace-wide grant is needed to list
            self.error(body.request_id, pb.AuthorizationError, self._denied("list topics", probe))
            return
        topics = [t for t in self.service.topics_of_namespace(namespace, body.mode) if "/__" not in t]
        if body.topics_pattern:
            try:
                pattern = re.compile(body.topics_pattern)
            except re.error:
                pattern = None
            if pattern is not None:
                topics = [t for t in topics if pattern.fullmatch(t.split("://", 1)[-1]) or pattern.fullmatch(t)]
                self.write(command(T.GET_TOPICS_OF_NAMESPACE_RESPONSE, request_id=body.request_id, topics=topics, filtered=True, changed=True))
                return
        self.write(command(T.GET_TOPICS_OF_NAMESPACE_RESPONSE, request_id=body.request_id, topics=topics, filtered=False, changed=True))

    def _on_get_schema(self, body: pb.CommandGetSchema) -> None:
        def fail(code: int, message: str) -> None:
            self.write(command(T.GET_SCHEMA_RESPONSE, request_id=body.request_id, error_code=code, error_message=message))

        try:
            name = self._topic_name(body.topic)
            if not self.service.can_lookup(self.role, name):
                fail(pb.AuthorizationError, self._denied("lookup", name))
                return
            registry = self.service.schema_registry(name)
        except InvalidTopicName as exc:
            fail(pb.InvalidTopicName, str(exc))
            return
        except NamespaceNotFound as exc:
            fail(pb.TopicNotFound, str(exc))
            return
        version_number = None
        if body.HasField("schema_version") and len(body.schema_version) == 8:
            version_number = int.from_bytes(body.schema_version, "big", signed=True)
        version = registry.get(version_number)
        if version is None:
            fail(pb.TopicNotFound, f"no schema{'' if version_number is None else f' version {version_number}'} for topic {name}")
            return
        self.write(command(T.GET_SCHEMA_RESPONSE, request_id=body.request_id, schema=version.to_proto(str(name.base)), schema_version=version.version_bytes))

    def _on_get_or_create_schema(self, body: pb.CommandGetOrCreateSchema) -> None:
        try:
            name = self._topic_name(body.topic)
            if not self.service.allowed(self.role, name, "produce"):
                self.write(command(T.GET_OR_CREATE_SCHEMA_RESPONSE, request_id=body.request_id, error_code=pb.AuthorizationError, error_message=self._denied("produce", name)))
                return
            version, added = self.service.schema_registry(name).get_or_add(body.schema)
        except InvalidTopicName as exc:
            self.write(command(T.GET_OR_CREATE_SCHEMA_RESPONSE, request_id=body.request_id, error_code=pb.InvalidTopicName, error_message=str(exc)))
            return
        except NamespaceNotFound as exc:
            self.write(command(T.GET_OR_CREATE_SCHEMA_RESPONSE, request_id=body.request_id, error_code=pb.TopicNotFound, error_message=str(exc)))
            return
        except IncompatibleSchema as exc:
            self.write(command(T.GET_OR_CREATE_SCHEMA_RESPONSE, request_id=body.request_id, error_code=pb.IncompatibleSchema, error_message=str(exc)))
            return
        if added:
            self.service.save_schemas(name)
        self.write(command(T.GET_OR_CREATE_SCHEMA_RESPONSE, request_id=body.request_id, schema_version=version.version_bytes))

    def _on_consumer_stats(self, body: pb.CommandConsumerStats) -> None:
        found = self._lookup_consumer(body.consumer_id)
        if found is None:
            self.write(command(T.CONSUMER_STATS_RESPONSE, request_id=body.request_id, error_code=pb.ConsumerNotFound, error_message="Consumer not found"))
            return
        consumer, sub, topic = found
        self.write(
            command(
                T.CONSUMER_STATS_RESPONSE,
                request_id=body.request_id,
                consumerName=consumer.name,
                availablePermits=max(0, consumer.permits),
                unackedMessages=len(consumer.pending),
                address=consumer.address,
                connectedSince=consumer.connected_since,
                type=SUB_TYPE_NAMES.get(sub.sub_type, ""),
                msgBacklog=sub.backlog(),
                msgRateOut=0.0,
                msgThroughputOut=0.0,
                msgRateRedeliver=0.0,
                msgRateExpired=0.0,
                blockedConsumerOnUnackedMsgs=False,
            )
        )

    _HANDLERS: dict[int, Callable[..., None]] = {
        T.PING: _on_ping,
        T.PONG: _on_pong,
        T.AUTH_RESPONSE: _on_auth_response,
        T.LOOKUP: _on_lookup,
        T.PARTITIONED_METADATA: _on_partitioned_metadata,
        T.PRODUCER: _on_producer,
        T.SEND: _on_send,
        T.CLOSE_PRODUCER: _on_close_producer,
        T.SUBSCRIBE: _on_subscribe,
        T.FLOW: _on_flow,
        T.ACK: _on_ack,
        T.REDELIVER_UNACKNOWLEDGED_MESSAGES: _on_redeliver,
        T.UNSUBSCRIBE: _on_unsubscribe,
        T.CLOSE_CONSUMER: _on_close_consumer,
        T.SEEK: _on_seek,
        T.GET_LAST_MESSAGE_ID: _on_get_last_message_id,
        T.GET_TOPICS_OF_NAMESPACE: _on_get_topics,
        T.GET_SCHEMA: _on_get_schema,
        T.GET_OR_CREATE_SCHEMA: _on_get_or_create_schema,
        T.CONSUMER_STATS: _on_consumer_stats,
    }


__all__ = ["ServerConnection", "FAILOVER"]
