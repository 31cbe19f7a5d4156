"""Function state: the local stand-in for Pulsar's BookKeeper table service (docs/pulsar-functions.md §1.6).

With state storage, the official instance uses table namespace `<tenant>_<namespace>` (`-` → `_`)
and table = function name, shared by all instances of the function. Here that table is one
SQLite file `<state_dir>/<tenant>_<namespace>/<name>.sqlite` (WAL mode, so the N instance
processes can use it at once; each increment is a single atomic UPSERT).

Counters live in the same key space as values, as in BookKeeper, where a counter is an 8-byte
big-endian long: `get_state` of a counter key returns those 8 bytes.

Without state storage (`--no-state`), `NullState` reproduces the official behaviour:
`incr`/`put` do nothing, the getters return None, and `delete` raises AttributeError.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Protocol

_SCHEMA = "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, num INTEGER, val BLOB)"


class StateStore(Protocol):
    def incr(self, key: str, amount: int) -> None: ...
    def get_counter(self, key: str) -> int | None: ...
    def delete(self, key: str) -> None: ...
    def put(self, key: str, value: bytes) -> None: ...
    def get(self, key: str) -> bytes | None: ...
    def close(self) -> None: ...


def table_path(state_dir: str | Path, tenant: str, namespace: str, name: str) -> Path:
    table_ns = f"{tenant}_{namespace}".replace("-", "_")
    return Path(state_dir) / table_ns / f"{name}.sqlite"


class SqliteState:
    """Durable counters and values shared by every instance of one function."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # The context is used from the execution thread and from publish callbacks.
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    def incr(self, key: str, amount: int) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO kv(key, num, val) VALUES (?, ?, NULL) "
                "ON CONFLICT(key) DO UPDATE SET num = COALESCE(kv.num, 0) + excluded.num, val = NULL",
                (key, int(amount)),
            )

    def get_counter(self, key: str) -> int | None:
        with self._lock:
            row = self._db.execute("SELECT num, val FROM kv WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        num, val = row
        if num is not None:
            return int(num)
        # A value written with put_state: BookKeeper reads it as a long only if it is 8 bytes.
        if len(val) == 8:
            return int.from_bytes(val, "big", signed=True)
        raise ValueError(f"state key {key!r} holds a {len(val)}-byte value, not a counter")

    def delete(self, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM kv WHERE key = ?", (key,))

    def put(self, key: str, value: bytes) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO kv(key, num, val) VALUES (?, NULL, ?) "
                "ON CONFLICT(key) DO UPDATE SET num = NULL, val = excluded.val",
                (key, bytes(value)),
            )

    def get(self, key: str) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT num, val FROM kv WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        num, val = row
        if num is not None:
            return int(num).to_bytes(8, "big", signed=True)
        return bytes(val)

    def close(self) -> None:
        with self._lock:
            self._db.close()


class NullState:
    """No state storage configured (docs/pulsar-functions.md §1.6)."""

    def incr(self, key: str, amount: int) -> None:
        return None

    def get_counter(self, key: str) -> int | None:
        return None

    def delete(self, key: str) -> None:
        # The official context calls a method on a missing table object.
        raise AttributeError("'NoneType' object has no attribute 'delete_key' (no state storage configured)")

    def put(self, key: str, value: bytes) -> None:
        return None

    def get(self, key: str) -> bytes | None:
        return None

    def close(self) -> None:
        return None


def open_state(state_dir: str | Path | None, tenant: str, namespace: str, name: str) -> StateStore:
    if state_dir is None:
        return NullState()
    return SqliteState(table_path(state_dir, tenant, namespace, name))
