"""Broker settings, with the defaults a single-node development broker should have."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from broker.storage import DEFAULT_CACHE_BYTES, DEFAULT_LEDGER_MAX_BYTES
from broker.wire import DEFAULT_MAX_MESSAGE_SIZE
from schemas.names import rooms_namespace

DEFAULT_NAMESPACES = ("public/default", "public/functions", "public/wtpulsar", "public/" + rooms_namespace("wtpulsar"),
                      "pulsar/system")


SyncMode = Literal["write", "fsync"]


@dataclass
class BrokerConfig:
    data_dir: Path | None = None  # None: everything in memory (tests of the core only)
    host: str = "127.0.0.1"
    port: int = 6650
    http_host: str | None = None
    http_port: int | None = None
    advertised_host: str | None = None
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE  # bytes, advertised in CONNECTED
    deduplication: bool = True  # broker default; namespaces may override (admin API)
    ledger_max_bytes: int = DEFAULT_LEDGER_MAX_BYTES
    cache_bytes: int = DEFAULT_CACHE_BYTES
    ttl_seconds: int = 0  # 0: messages never expire
    retention_minutes: int = 0  # keep acknowledged data this long (0: delete once acked)
    retention_mb: int = 0  # ... or up to this size
    auth_token_secret: bytes | None = None  # HS256 secret; None: no authentication (nor authorization)
    superuser_roles: tuple[str, ...] = ()  # Pulsar's superUserRoles: admin REST and every topic
    max_connections: int = 1024  # open TCP connections at once; more are closed at accept
    max_pre_connect_bytes: int = 64 * 1024  # bytes a connection may send before its CONNECT
    handshake_timeout: float = 10.0  # s a connection may take to complete CONNECT
    namespaces: tuple[str, ...] = DEFAULT_NAMESPACES
    # "write": receipts once the entry is written to the OS (survives kill -9 of the broker, not a
    # machine crash); "fsync": fdatasync (group commit) before receipts, surviving power loss too.
    sync_mode: SyncMode = "write"
    housekeeping_interval: float = 0.1  # s: cursor persistence, delayed delivery, TTL, trimming
    # s a non-persistent topic may sit without producers and subscriptions before it is dropped
    # (Pulsar: brokerDeleteInactiveTopicsFrequencySeconds=60 in conf/standalone.conf)
    inactive_non_persistent_seconds: float = 60.0
    server_version: str = "wtpulsar-broker-0.1.0"
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def service_url(self) -> str:
        return f"pulsar://{self.advertised_host or self.host}:{self.port}"
