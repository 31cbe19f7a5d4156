"""Durable per-topic entry log.

Layout under the broker's data dir::

    ledger-id                       next ledger id (global, only grows)
    topics/<domain>/<tenant>/<ns>/<local>/
        ledgers.json                [[ledger_id, first_offset], ...] in order
        <ledger_id>.log             records: len:u32 crc32c:u32 entry-bytes
        cursors/<sub>.json          durable subscription cursors (snapshots, FileCursorStore)
        cursors/<sub>.journal       acks applied since that snapshot, one JSON list a line
        dedup.json, topic.json      producer high-water marks, topic epoch (FileTopicMetaStore)

Each topic has a dense, persistent offset space; offset o lives in the last ledger whose
first_offset <= o, at entry id o - first_offset. A new ledger starts each time a topic is
loaded (a new "incarnation", docs/pulsar-wire-protocol.md §6) and when the current one grows past
`ledger_max_bytes`, so ledgers whose entries every subscription has acknowledged can be deleted
whole. Appends are written at once, before any receipt goes out (that survives kill -9); with
`--sync fsync` the server also makes them durable in groups (fdatasync of every ledger written
since the last group, in a worker thread) before the receipts. A torn record at
the end of the last ledger (kill -9 mid-write) is cut off at load.

Every file a topic keeps is written here: the entry log (TopicLog), the cursors (a CursorStore)
and the topic's own metadata (a TopicMetaStore). Each store has a file version and an in-memory
version with the same behaviour, so broker/topic.py and broker/subscription.py do no file I/O and
run in tests without a data directory.

Memory per stored entry: none. With retention on, a topic keeps entries long after every
subscription has acknowledged them, so nothing here may grow with the number of entries (Apache
Pulsar's broker likewise holds only the ledger list; entry positions live in BookKeeper). A ledger
keeps its size, count, last publish time (for retention by time) and the file position of every
`POSITION_BLOCK`-th record; the positions of one block are found by walking the record headers
from there when an entry must be read from disk, and a few such blocks are kept per topic.
"""

from __future__ import annotations

import bisect
import itertools
import json
import logging
import os
import struct
import urllib.parse
from array import array
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import crc32c

from broker.paths import inside
from schemas.names import file_name

log = logging.getLogger("wtpulsar.broker.storage")

_RECORD = struct.Struct(">II")
DEFAULT_LEDGER_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_CACHE_BYTES = 16 * 1024 * 1024  # recently written entries kept in memory, all topics together
POSITION_BLOCK = 1024  # records per checkpointed file position (8 bytes per 1024 entries kept)
POSITION_BLOCKS_KEPT = 4  # walked blocks of record boundaries kept per topic for disk reads


_LOG_IDS = itertools.count(1)


class EntryCache:
    """Recently written or read entries of every topic under one byte budget (least recently
    added first out), so memory stays flat however many topics a pipeline has."""

    def __init__(self, limit_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.limit = limit_bytes
        self.size = 0
        self._entries: OrderedDict[tuple[int, int], bytes] = OrderedDict()

    def put(self, log_id: int, offset: int, entry: bytes) -> None:
        key = (log_id, offset)
        old = self._entries.pop(key, None)
        if old is not None:
            self.size -= len(old)
        self._entries[key] = entry
        self.size += len(entry)
        while self.size > self.limit and self._entries:
            _, evicted = self._entries.popitem(last=False)
            self.size -= len(evicted)

    def get(self, log_id: int, offset: int) -> bytes | None:
        return self._entries.get((log_id, offset))

    def drop(self, log_id: int, offset: int) -> None:
        entry = self._entries.pop((log_id, offset), None)
        if entry is not None:
            self.size -= len(entry)

    def __len__(self) -> int:
        return len(self._entries)


def write_json_atomic(path: Path, value: object) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(value, separators=(",", ":")))
    os.replace(tmp, path)


def read_json(path: Path, default: object) -> object:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default
    except (OSError, ValueError) as exc:
        log.error("ignoring unreadable %s: %s", path, exc)
        return default


class LedgerIds:
    """The broker-wide ledger id counter: every ledger ever created gets a larger id."""

    def __init__(self, data_dir: Path) -> None:
        self._path = data_dir / "ledger-id"
        self._next = int(str(read_json(self._path, 1)))

    def allocate(self) -> int:
        value = self._next
        self._next += 1
        write_json_atomic(self._path, self._next)
        return value


@dataclass(slots=True)
class Ledger:
    ledger_id: int
    first_offset: int
    count: int
    size: int
    path: Path
    fd: int = -1  # open for reads (and appends when current)
    checkpoints: array[int] = field(default_factory=lambda: array("q"))  # file position of record k * POSITION_BLOCK
    last_publish_time: int = 0  # of its last entry (ms), for retention by time without an entry index


class TopicLog:
    """Append-only entry log of one topic. `None` directory means in memory only."""

    def __init__(
        self,
        directory: Path | None,
        ledger_ids: LedgerIds | None,
        ledger_max_bytes: int = DEFAULT_LEDGER_MAX_BYTES,
        cache: EntryCache | None = None,
    ) -> None:
        self.directory = directory
        self._ledger_ids = ledger_ids
        self.ledger_max_bytes = ledger_max_bytes
        self._cache = cache if cache is not None else EntryCache()
        self._id = next(_LOG_IDS)  # never reused, unlike id(): a deleted topic's cached entries cannot leak
        self.ledgers: list[Ledger] = []
        self._firsts: list[int] = []
        self._dirty_fds: set[int] = set()  # ledgers written since the last take_dirty()
        self._memory: dict[int, bytes] = {}  # in-memory topics only
        # (ledger id, block) -> file positions of the block's records plus the end of its last one
        self._boundaries: OrderedDict[tuple[int, int], array[int]] = OrderedDict()
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            self._load()
        self._start_ledger()

    # ---- loading ----
    def _load(self) -> None:
        assert self.directory is not None
        table = read_json(self.directory / "ledgers.json", [])
        assert isinstance(table, list)
        for ledger_id, first in table:
            path = self.directory / f"{ledger_id}.log"
            if not path.exists():
                continue  # deleted after every subscription acknowledged it
            checkpoints = array("q")
            count, size = self._scan(path, checkpoints)
            fd = os.open(path, os.O_RDONLY)
            self.ledgers.append(Ledger(ledger_id, first, count, size, path, fd, checkpoints))
        self._firsts = [led.first_offset for led in self.ledgers]

    @staticmethod
    def _scan(path: Path, checkpoints: array[int]) -> tuple[int, int]:
        """Count whole records and note where every POSITION_BLOCK-th starts; cut a torn tail."""
        data = path.read_bytes()
        pos = count = 0
        while pos + 8 <= len(data):
            length, crc = _RECORD.unpack_from(data, pos)
            end = pos + 8 + length
            if end > len(data) or crc32c.crc32c(data[pos + 8 : end]) != crc:
                break
            if count % POSITION_BLOCK == 0:
                checkpoints.append(pos)
            pos = end
            count += 1
        if pos != len(data):
            log.warning("%s: cutting %d bytes of a torn record at its end", path, len(data) - pos)
            with open(path, "r+b") as handle:
                handle.truncate(pos)
        return count, pos

    def _start_ledger(self) -> None:
        first = self.end_offset
        ledger_id = self._ledger_ids.allocate() if self._ledger_ids else (self.ledgers[-1].ledger_id + 1 if self.ledgers else 1)
        if self.directory is None:
            self.ledgers.append(Ledger(ledger_id, first, 0, 0, Path("-")))
        else:
            path = self.directory / f"{ledger_id}.log"
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            self.ledgers.append(Ledger(ledger_id, first, 0, 0, path, fd))
            self._write_table()
        self._firsts.append(first)

    def _write_table(self) -> None:
        assert self.directory is not None
        write_json_atomic(self.directory / "ledgers.json", [[led.ledger_id, led.first_offset] for led in self.ledgers])

    # ---- positions ----
    @property
    def start_offset(self) -> int:
        return self.ledgers[0].first_offset

    @property
    def end_offset(self) -> int:
        """One past the last entry."""
        if not self.ledgers:
            return 0
        last = self.ledgers[-1]
        return last.first_offset + last.count

    @property
    def current_ledger_id(self) -> int:
        return self.ledgers[-1].ledger_id

    def position(self, offset: int) -> tuple[int, int]:
        """(ledger id, entry id) of an offset; offsets past the end map into the current ledger."""
        index = bisect.bisect_right(self._firsts, offset) - 1
        if index < 0:
            index = 0
        ledger = self.ledgers[index]
        return ledger.ledger_id, offset - ledger.first_offset

    def position_before(self, offset: int) -> tuple[int, int]:
        """The position just before `offset` as Pulsar shows it: (ledger, entry - 1)."""
        ledger_id, entry = self.position(offset)
        return ledger_id, entry - 1

    def offset_of(self, ledger_id: int, entry_id: int) -> int:
        """Offset of a (ledger, entry) position; clamps to the nearest existing boundary."""
        for ledger in self.ledgers:
            if ledger.ledger_id == ledger_id:
                return ledger.first_offset + max(0, min(entry_id, ledger.count))
            if ledger.ledger_id > ledger_id:
                return ledger.first_offset
        return self.end_offset

    # ---- entries ----
    def append(self, entry: bytes, publish_time: int = 0) -> int:
        ledger = self.ledgers[-1]
        if ledger.size >= self.ledger_max_bytes and ledger.count:
            self._start_ledger()
            ledger = self.ledgers[-1]
        offset = ledger.first_offset + ledger.count
        if self.directory is None:
            self._memory[offset] = entry
        else:
            if ledger.count % POSITION_BLOCK == 0:
                ledger.checkpoints.append(ledger.size)
            os.write(ledger.fd, _RECORD.pack(len(entry), crc32c.crc32c(entry)) + entry)
            self._dirty_fds.add(ledger.fd)
            self._remember(offset, entry)
            block, index = divmod(ledger.count, POSITION_BLOCK)
            walked = self._boundaries.get((ledger.ledger_id, block))
            if walked is not None and len(walked) == index + 1:  # keep a walked tail block whole
                walked.append(ledger.size + 8 + len(entry))
        ledger.count += 1
        ledger.size += 8 + len(entry)
        ledger.last_publish_time = publish_time
        return offset

    def stamp(self, offset: int, publish_time: int) -> None:
        """Note an entry's publish time while loading (the entries are read in order)."""
        index = bisect.bisect_right(self._firsts, offset) - 1
        if index >= 0:
            self.ledgers[index].last_publish_time = publish_time

    def _remember(self, offset: int, entry: bytes) -> None:
        self._cache.put(self._id, offset, entry)

    def read(self, offset: int) -> bytes:
        if self.directory is None:
            return self._memory[offset]
        cached = self._cache.get(self._id, offset)
        if cached is not None:
            return cached
        return self._read_from_disk(offset)

    def _read_from_disk(self, offset: int) -> bytes:
        index = bisect.bisect_right(self._firsts, offset) - 1
        if index < 0:
            raise KeyError(offset)
        ledger = self.ledgers[index]
        wanted = offset - ledger.first_offset
        if not 0 <= wanted < ledger.count:
            raise KeyError(offset)
        # One positioned read per entry (the OS page cache serves replays); not kept in our cache,
        # which is for the tail that live consumers read.
        block, index = divmod(wanted, POSITION_BLOCK)
        walked = self._walked_block(ledger, block)
        if index + 1 >= len(walked):  # walked before this entry was appended
            self._boundaries.pop((ledger.ledger_id, block), None)
            walked = self._walked_block(ledger, block)
        pos, end = walked[index], walked[index + 1]
        return os.pread(ledger.fd, end - pos, pos)[8:]

    def _walked_block(self, ledger: Ledger, block: int) -> array[int]:
        """Record boundaries of one block, from its checkpoint by reading each record's header."""
        key = (ledger.ledger_id, block)
        walked = self._boundaries.get(key)
        if walked is not None:
            self._boundaries.move_to_end(key)
            return walked
        pos = ledger.checkpoints[block]
        walked = array("q", [pos])
        for _ in range(min(POSITION_BLOCK, ledger.count - block * POSITION_BLOCK)):
            (length,) = struct.unpack(">I", os.pread(ledger.fd, 4, pos))
            pos += 8 + length
            walked.append(pos)
        self._boundaries[key] = walked
        if len(self._boundaries) > POSITION_BLOCKS_KEPT:
            self._boundaries.popitem(last=False)
        return walked

    def entries_from_disk(self) -> Iterator[tuple[int, bytes]]:
        """Every stored entry in order, one ledger file in memory at a time (rebuilding at load)."""
        for ledger in self.ledgers:
            if self.directory is None or ledger.count == 0:
                continue
            data = ledger.path.read_bytes()[: ledger.size]
            pos = 0
            for i in range(ledger.count):
                (length,) = struct.unpack_from(">I", data, pos)
                yield ledger.first_offset + i, data[pos + 8 : pos + 8 + length]
                pos += 8 + length

    def take_dirty(self) -> set[int]:
        """File descriptors of every ledger appended to since the last call (rollover included)."""
        fds, self._dirty_fds = self._dirty_fds, set()
        return fds

    def sync(self) -> None:
        for fd in self.take_dirty():
            os.fdatasync(fd)

    @property
    def size_bytes(self) -> int:
        return sum(led.size for led in self.ledgers)

    def trimmable(self, below_offset: int) -> bool:
        first = self.ledgers[0]
        return len(self.ledgers) > 1 and first.first_offset + first.count <= below_offset

    def trim(self, below_offset: int) -> int:
        """Delete whole ledgers all of whose entries are below `below_offset`. Returns bytes freed."""
        freed = 0
        while len(self.ledgers) > 1 and self.ledgers[0].first_offset + self.ledgers[0].count <= below_offset:
            ledger = self.ledgers.pop(0)
            self._firsts.pop(0)
            freed += ledger.size
            for offset in range(ledger.first_offset, ledger.first_offset + ledger.count):
                self._cache.drop(self._id, offset)
                self._memory.pop(offset, None)
            for key in [k for k in self._boundaries if k[0] == ledger.ledger_id]:
                del self._boundaries[key]
            if self.directory is not None:
                os.close(ledger.fd)
                ledger.path.unlink(missing_ok=True)
        if freed and self.directory is not None:
            self._write_table()
        return freed

    def roll_if_idle_and_acked(self, below_offset: int) -> None:
        """Start a new ledger when everything in the current one is acknowledged, so it can go."""
        current = self.ledgers[-1]
        if current.count and current.first_offset + current.count <= below_offset and current.size > 1024 * 1024:
            self._start_ledger()

    def close(self) -> None:
        self.sync()
        for ledger in self.ledgers:
            if ledger.fd >= 0:
                os.close(ledger.fd)
                ledger.fd = -1

    def delete(self) -> None:
        self.close()
        if self.directory is not None:
            for child in sorted(self.directory.rglob("*"), reverse=True):
                child.unlink() if child.is_file() else child.rmdir()
            self.directory.rmdir()


# ---------------------------------------------------------------------------- cursors
# A durable subscription's cursor is a snapshot (what Subscription.to_json() gives) plus a journal
# of the acks applied since (Subscription.journal_ops, one list per ACK command). The snapshot
# folds the journal in and empties it; at load the journal is replayed over the snapshot.

JournalOp = list[Any]


@dataclass(frozen=True)
class SavedCursor:
    """One durable subscription as stored: its snapshot and the journal written after it."""

    name: str
    snapshot: dict[str, Any]
    journal: list[JournalOp]


class CursorStore(Protocol):
    def load(self) -> list[SavedCursor]:
        """Every saved cursor, by subscription name in order."""
        ...

    def append_journal(self, name: str, ops: list[JournalOp]) -> None:
        """Record acks applied after the last snapshot (one write, survives a killed process)."""
        ...

    def save_snapshot(self, name: str, snapshot: dict[str, Any]) -> None:
        """Replace the cursor with `snapshot` and empty its journal."""
        ...

    def remove(self, name: str) -> None:
        ...


def cursor_file(cursors: Path, sub_name: str) -> Path:
    """Where a durable subscription's cursor lives: one percent-encoded file name, proven inside."""
    return inside(cursors, file_name(sub_name) + ".json")


def read_journal(path: Path) -> list[JournalOp]:
    ops: list[JournalOp] = []
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return ops
    for line in lines:
        try:
            ops.extend(json.loads(line))
        except ValueError:
            break  # a torn last line from a crash: the acks in it were never confirmed
    return ops


class FileCursorStore:
    """Cursors under `<topic dir>/cursors/`: `<sub>.json` snapshots and `<sub>.journal` journals.

    A journal line is a plain append: it reaches the page cache, so a killed broker process
    loses none of the acks in it; a snapshot is written atomically, then the journal goes."""

    def __init__(self, topic_dir: Path) -> None:
        self.directory = topic_dir / "cursors"

    def _path(self, name: str) -> Path:
        self.directory.mkdir(exist_ok=True)
        return cursor_file(self.directory, name)

    def load(self) -> list[SavedCursor]:
        saved: list[SavedCursor] = []
        if not self.directory.is_dir():
            return saved
        for path in sorted(self.directory.glob("*.json")):
            data = read_json(path, None)
            if not isinstance(data, dict):
                continue
            saved.append(SavedCursor(urllib.parse.unquote(path.stem), data, read_journal(path.with_suffix(".journal"))))
        return saved

    def append_journal(self, name: str, ops: list[JournalOp]) -> None:
        line = (json.dumps(ops, separators=(",", ":")) + "\n").encode()
        fd = os.open(self._path(name).with_suffix(".journal"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def save_snapshot(self, name: str, snapshot: dict[str, Any]) -> None:
        path = self._path(name)
        write_json_atomic(path, snapshot)
        path.with_suffix(".journal").unlink(missing_ok=True)

    def remove(self, name: str) -> None:
        path = self._path(name)
        path.unlink(missing_ok=True)
        path.with_suffix(".journal").unlink(missing_ok=True)


class MemoryCursorStore:
    """The same store in dicts: for brokers without a data dir, and for tests (a topic made again
    over the same store reloads its cursors as it would from disk)."""

    def __init__(self) -> None:
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.journals: dict[str, list[JournalOp]] = {}

    def load(self) -> list[SavedCursor]:
        return [SavedCursor(name, json.loads(json.dumps(self.snapshots[name])), list(self.journals.get(name, [])))
                for name in sorted(self.snapshots)]  # fmt: skip

    def append_journal(self, name: str, ops: list[JournalOp]) -> None:
        self.journals.setdefault(name, []).extend(ops)  # the subscription hands over fresh lists

    def save_snapshot(self, name: str, snapshot: dict[str, Any]) -> None:
        self.snapshots[name] = json.loads(json.dumps(snapshot))  # a copy, as a file would hold
        self.journals.pop(name, None)

    def remove(self, name: str) -> None:
        self.snapshots.pop(name, None)
        self.journals.pop(name, None)


# ---------------------------------------------------------------------------- topic metadata
@dataclass
class TopicMeta:
    """What a topic keeps besides its log and cursors: producers' sequence-id high-water marks
    whose entries were trimmed, and the topic epoch of exclusive producers."""

    dedup: dict[str, int] = field(default_factory=dict)
    topic_epoch: int = 0


class TopicMetaStore(Protocol):
    def load(self) -> TopicMeta:
        ...

    def save_dedup(self, dedup: dict[str, int]) -> None:
        ...

    def save_epoch(self, topic_epoch: int) -> None:
        ...


class FileTopicMetaStore:
    """`dedup.json` and `topic.json` in the topic's directory, each written atomically."""

    def __init__(self, topic_dir: Path) -> None:
        self.directory = topic_dir

    def load(self) -> TopicMeta:
        meta = TopicMeta()
        saved = read_json(self.directory / "dedup.json", {})
        if isinstance(saved, dict):
            meta.dedup = {str(name): int(seq) for name, seq in saved.items()}
        topic = read_json(self.directory / "topic.json", {})
        if isinstance(topic, dict):
            meta.topic_epoch = int(topic.get("topic_epoch", 0))
        return meta

    def save_dedup(self, dedup: dict[str, int]) -> None:
        write_json_atomic(self.directory / "dedup.json", dedup)

    def save_epoch(self, topic_epoch: int) -> None:
        write_json_atomic(self.directory / "topic.json", {"topic_epoch": topic_epoch})


class MemoryTopicMetaStore:
    def __init__(self) -> None:
        self.saved = TopicMeta()

    def load(self) -> TopicMeta:
        return TopicMeta(dict(self.saved.dedup), self.saved.topic_epoch)

    def save_dedup(self, dedup: dict[str, int]) -> None:
        self.saved.dedup = dict(dedup)

    def save_epoch(self, topic_epoch: int) -> None:
        self.saved.topic_epoch = topic_epoch


@dataclass(frozen=True)
class TopicStores:
    """Everything a topic reads and writes outside memory, made for it by open_topic_stores()."""

    log: TopicLog
    cursors: CursorStore
    meta: TopicMetaStore


def open_topic_stores(directory: Path | None, ledger_ids: LedgerIds | None, ledger_max_bytes: int = DEFAULT_LEDGER_MAX_BYTES,
                      cache: EntryCache | None = None) -> TopicStores:  # fmt: skip
    """File stores under `directory`, or in-memory ones when it is None (no data dir, non-persistent)."""
    log = TopicLog(directory, ledger_ids, ledger_max_bytes, cache)
    if directory is None:
        return TopicStores(log, MemoryCursorStore(), MemoryTopicMetaStore())
    return TopicStores(log, FileCursorStore(directory), FileTopicMetaStore(directory))
