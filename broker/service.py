"""The broker's state: namespaces, partitioned topics, loaded topics, schemas, group commit.

No I/O besides the data directory: the asyncio server calls `sync()` once per event-loop turn
after appends (so receipts leave only once entries are on disk) and `housekeeping()` on a timer.
"""

from __future__ import annotations

import logging
import os
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from broker.config import BrokerConfig
from broker.names import InvalidTopicName, TopicName
from broker.paths import inside
from broker.schemas import SchemaRegistry, SchemaVersion
from broker.storage import EntryCache, LedgerIds, open_topic_stores, read_json, write_json_atomic
from broker.topic import Topic
from schemas.names import InvalidName, check_namespace, check_part, file_name

log = logging.getLogger("wtpulsar.broker")


def now_ms() -> int:
    return int(time.time() * 1000)


class NamespaceNotFound(LookupError):
    pass


class ClientConnection(Protocol):
    """What the service asks of a client connection it counts (broker/connection.py's ServerConnection)."""

    @property
    def peer(self) -> str: ...

    def handshake_expired(self, now: float) -> bool: ...

    def abort(self, now_ms: int | None = None) -> None: ...


@dataclass
class SyncBatch:
    ends: dict[Topic, int]
    fds: set[int]


def flush_files(fds: set[int]) -> None:
    """fdatasync each file; runs in a worker thread so the event loop keeps serving."""
    for fd in fds:
        try:
            os.fdatasync(fd)
        except OSError as exc:  # a ledger deleted meanwhile (topic deleted): nothing left to keep
            log.warning("fdatasync of fd %d failed: %s", fd, exc)


def _valid(saved: Any, check: Callable[[Any], object]) -> Any:
    """Entries of saved metadata whose names pass the rule (older versions accepted any name)."""
    items = saved.items() if isinstance(saved, dict) else saved if isinstance(saved, list) else []
    kept = []
    for item in items:
        try:
            check(item[0] if isinstance(saved, dict) else item)
        except InvalidName as exc:
            log.error("ignoring saved metadata entry %r: %s", item, exc)
            continue
        kept.append(item)
    return dict(kept) if isinstance(saved, dict) else kept


class BrokerService:
    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.data_dir = config.data_dir
        self.topics: dict[str, Topic] = {}
        self._dirty: set[Topic] = set()
        self.schedule_sync: Callable[[], None] = lambda: None
        self._schemas: dict[str, SchemaRegistry] = {}
        self.connections: set[ClientConnection] = set()  # connected (CONNECT done)
        self.pending: set[ClientConnection] = set()  # accepted, CONNECT not yet done
        self.next_connection_id = 0
        self.started = time.time()
        self.entry_cache = EntryCache(config.cache_bytes)
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.ledger_ids: LedgerIds | None = LedgerIds(self.data_dir)
        else:
            self.ledger_ids = None
        self._load_metadata()

    # ------------------------------------------------------------------ the clock
    # The broker core (topic.py, subscription.py, connection.py) reads no clock: the asyncio shell
    # passes the time in, and these are what it (and a caller without a time of its own) reads.
    @staticmethod
    def wall_ms() -> int:
        return now_ms()

    @staticmethod
    def monotonic() -> float:
        return time.monotonic()

    # ------------------------------------------------------------------ metadata
    def _meta_path(self, name: str) -> Path | None:
        return self.data_dir / name if self.data_dir is not None else None

    def _load_metadata(self) -> None:
        namespaces: dict[str, dict[str, Any]] = {ns: {} for ns in self.config.namespaces}
        tenants: set[str] = {ns.split("/")[0] for ns in namespaces}
        partitioned: dict[str, int] = {}
        path = self._meta_path("metadata.json")
        if path is not None:
            saved = read_json(path, {})
            if isinstance(saved, dict):
                namespaces.update(_valid(saved.get("namespaces", {}), check_namespace))
                tenants.update(_valid(saved.get("tenants", []), lambda t: check_part("tenant", t)))
                partitioned.update(_valid(saved.get("partitioned", {}), TopicName.parse))
        self.namespaces = namespaces
        self.tenants = tenants
        self.partitioned = partitioned

    def save_metadata(self) -> None:
        path = self._meta_path("metadata.json")
        if path is not None:
            write_json_atomic(
                path,
                {"namespaces": self.namespaces, "tenants": sorted(self.tenants), "partitioned": self.partitioned},
            )

    def create_tenant(self, tenant: str) -> bool:
        """False when it exists already; InvalidName when the name breaks the rule."""
        check_part("tenant", tenant)
        if tenant in self.tenants:
            return False
        self.tenants.add(tenant)
        self.save_metadata()
        return True

    def delete_tenant(self, tenant: str) -> bool:
        if tenant not in self.tenants or any(ns.split("/")[0] == tenant for ns in self.namespaces):
            return False
        self.tenants.discard(tenant)
        self.save_metadata()
        return True

    def create_namespace(self, namespace: str) -> bool:
        check_namespace(namespace)
        if namespace in self.namespaces:
            return False
        self.tenants.add(namespace.split("/")[0])
        self.namespaces[namespace] = {}
        self.save_metadata()
        return True

    def delete_namespace(self, namespace: str) -> bool:
        if namespace not in self.namespaces or self.topics_of_namespace(namespace, mode=2):
            return False
        del self.namespaces[namespace]
        self.save_metadata()
        return True

    def set_namespace_policy(self, namespace: str, key: str, value: Any) -> None:
        if namespace not in self.namespaces:
            raise NamespaceNotFound(namespace)
        if value is None:
            self.namespaces[namespace].pop(key, None)
        else:
            self.namespaces[namespace][key] = value
        self.save_metadata()

    def deduplication_enabled(self, name: TopicName) -> bool:
        policy = self.namespaces.get(name.namespace_name, {}).get("deduplication")
        return self.config.deduplication if policy is None else bool(policy)

    # ------------------------------------------------------------------ authorization (SECURITY.md)
    def allowed(self, role: str | None, name: TopicName, action: str) -> bool:
        """Pulsar's rule: with authentication on, a superuser may do anything; another role may do
        `action` on a topic when its namespace grants it to the role or the topic itself does."""
        if self.config.auth_token_secret is None:
            return True
        if role is None:
            return False
        if role in self.config.superuser_roles:
            return True
        policy = self.namespaces.get(name.namespace_name, {})
        if action in policy.get("permissions", {}).get(role, ()):
            return True
        topic_roles = policy.get("topic_permissions", {})
        return any(action in topic_roles.get(str(topic), {}).get(role, ()) for topic in {name, name.base})

    def can_lookup(self, role: str | None, name: TopicName) -> bool:
        return self.allowed(role, name, "produce") or self.allowed(role, name, "consume")

    def check_namespace(self, name: TopicName) -> None:
        if name.namespace_name not in self.namespaces:
            raise NamespaceNotFound(f"Namespace {name.namespace_name} does not exist")

    def partitions_of(self, name: TopicName) -> int:
        return self.partitioned.get(str(name.base if name.partition_index < 0 else name), 0)

    def create_partitioned(self, name: TopicName, partitions: int) -> None:
        self.check_namespace(name)
        self.partitioned[str(name)] = partitions
        self.save_metadata()
        for i in range(partitions):
            self.get_topic(name.partition(i), create=True)

    def delete_partitioned(self, name: TopicName) -> bool:
        count = self.partitioned.pop(str(name), None)
        if count is None:
            return False
        self.save_metadata()
        for i in range(count):
            self.delete_topic(name.partition(i))
        return True

    # ------------------------------------------------------------------ topics
    def topic_dir(self, name: TopicName) -> Path | None:
        if self.data_dir is None or not name.persistent:
            return None
        return inside(self.data_dir, "topics", name.domain, name.tenant, name.namespace, file_name(name.local))

    def topic_exists(self, name: TopicName) -> bool:
        if str(name) in self.topics:
            return True
        directory = self.topic_dir(name)
        return directory is not None and (directory / "ledgers.json").exists()

    def get_topic(self, name: TopicName, create: bool = True) -> Topic | None:
        key = str(name)
        topic = self.topics.get(key)
        if topic is not None:
            return topic
        if not create and not self.topic_exists(name):
            return None
        self.check_namespace(name)
        stores = open_topic_stores(self.topic_dir(name), self.ledger_ids, self.config.ledger_max_bytes, self.entry_cache)
        topic = Topic(self, name, stores, self.monotonic())
        self.topics[key] = topic
        return topic

    def delete_topic(self, name: TopicName, force: bool = False) -> bool:
        topic = self.get_topic(name, create=False)
        if topic is None:
            return False
        if not force and (topic.producers or any(s.consumers for s in topic.subscriptions.values())):
            raise RuntimeError(f"topic {name} has active producers or consumers")
        now = now_ms()
        for sub in list(topic.subscriptions.values()):
            for consumer in list(sub.consumers):
                if consumer.connection is not None:
                    consumer.connection.close_consumer_by_broker(consumer, now)
        for producer in list(topic.producers.values()):
            producer.connection.close_producer_by_broker(producer)
        self.topics.pop(str(name), None)
        self._dirty.discard(topic)
        topic.log.delete()
        return True

    def topics_of_namespace(self, namespace: str, mode: int = 0) -> list[str]:
        """Existing topics of a namespace (mode: 0 persistent, 1 non-persistent, 2 all) (docs/pulsar-wire-protocol.md §11)."""
        tenant, _, ns = namespace.partition("/")
        names: set[str] = set()
        for key, topic in self.topics.items():
            if topic.name.namespace_name == namespace and (mode == 2 or topic.name.persistent == (mode == 0)):
                names.add(key)
        if self.data_dir is not None and mode in (0, 2):
            check_namespace(namespace)
            base = inside(self.data_dir, "topics", "persistent", tenant, ns)
            if base.is_dir():
                for child in base.iterdir():
                    if (child / "ledgers.json").exists():
                        try:
                            names.add(str(TopicName.parse(f"persistent://{tenant}/{ns}/{urllib.parse.unquote(child.name)}")))
                        except InvalidTopicName:
                            log.warning("ignoring %s: not a valid topic directory name", child)
        for key in self.partitioned:
            name = TopicName.parse(key)
            if name.namespace_name == namespace and (mode == 2 or name.persistent == (mode == 0)):
                names.update(str(name.partition(i)) for i in range(self.partitioned[key]))
        return sorted(names)

    # ------------------------------------------------------------------ schemas (per base topic)
    def schema_registry(self, name: TopicName) -> SchemaRegistry:
        """The topic's schemas; NamespaceNotFound (nothing touched on disk) when its namespace is unknown."""
        self.check_namespace(name)
        base = str(name.base)
        registry = self._schemas.get(base)
        if registry is None:
            path = self._schema_path(name)
            versions = read_json(path, []) if path is not None else []
            registry = SchemaRegistry([SchemaVersion.from_json(v) for v in versions] if isinstance(versions, list) else [])
            self._schemas[base] = registry
        return registry

    def _schema_path(self, name: TopicName) -> Path | None:
        if self.data_dir is None:
            return None
        base = name.base
        return inside(self.data_dir, "schemas", base.domain, base.tenant, base.namespace, file_name(base.local) + ".json")

    def save_schemas(self, name: TopicName) -> None:
        path = self._schema_path(name)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, [v.to_json() for v in self.schema_registry(name).versions])

    # ------------------------------------------------------------------ group commit and upkeep
    def mark_dirty(self, topic: Topic) -> None:
        if not self._dirty:
            self.schedule_sync()
        self._dirty.add(topic)

    def sync(self) -> None:
        """Make every append durable now, then release receipts and dispatch (tests, shutdown)."""
        batch = self.begin_sync()
        flush_files(batch.fds if self.config.sync_mode == "fsync" else set())
        self.complete_sync(batch)

    def begin_sync(self) -> SyncBatch:
        """Snapshot what is to become durable: each dirty topic's end offset and its ledger files."""
        dirty, self._dirty = self._dirty, set()
        ends = {topic: topic.log.end_offset for topic in dirty}
        fds: set[int] = set()
        for topic in dirty:
            fds |= topic.log.take_dirty()
        return SyncBatch(ends, fds)

    def complete_sync(self, batch: SyncBatch) -> None:
        now = now_ms()
        for topic, end in batch.ends.items():
            if self.topics.get(str(topic.name)) is topic:
                topic.on_synced(now, end)

    def expire_handshakes(self, now: float) -> None:
        """Close connections that did not complete CONNECT within the handshake timeout."""
        for connection in [c for c in self.pending if c.handshake_expired(now)]:
            log.warning("closing connection from %s: no CONNECT within %.0f s", connection.peer, self.config.handshake_timeout)
            connection.abort()

    def drop_inactive_non_persistent(self, now: float) -> list[str]:
        """Forget non-persistent topics that have had no producer and no subscription for
        `inactive_non_persistent_seconds` (they hold nothing; docs/non-persistent.md §5). The names dropped."""
        dropped = []
        for key, topic in list(self.topics.items()):
            if topic.name.persistent:
                continue
            if topic.producers or topic.subscriptions or self.partitions_of(topic.name) > 0:
                topic.last_active = now
            elif now - topic.last_active >= self.config.inactive_non_persistent_seconds:
                del self.topics[key]
                self._dirty.discard(topic)
                dropped.append(key)
        return dropped

    def housekeeping(self) -> None:
        self.expire_handshakes(time.monotonic())
        self.drop_inactive_non_persistent(time.monotonic())
        now = now_ms()
        retention_ms = self.config.retention_minutes * 60_000
        retention_bytes = self.config.retention_mb * 1024 * 1024
        for topic in list(self.topics.values()):
            topic.housekeeping(now, self.config.ttl_seconds, retention_ms, retention_bytes)

    def close(self) -> None:
        self.sync()
        for topic in self.topics.values():
            topic.close()
        self.save_metadata()
