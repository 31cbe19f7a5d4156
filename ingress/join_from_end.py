"""Where a late joiner starts, found from the end of a room topic instead of reading it from the start.

A RoomFeed used to read its topic from the earliest message to build the join point (JoinPoint: the
latest init segment and the fragments since the latest keyframe), so the first viewer of a day-long
topic waited for the whole day to be read. Here the join point is found from the end:

1. A reader created at ``MessageId.latest`` with ``start_message_id_inclusive`` returns the newest
   message (the Pulsar client asks the broker for the last message id, ``CommandGetLastMessageId`` in
   PulsarApi.proto; Pulsar docs, "Reader interface"). Nothing there, a stream that ended, or one quiet
   for longer than ``stale_ms``: nothing to join, and that reader tails the topic.
2. A message id is (ledger, entry) and entries of one ledger are numbered from 0 (Pulsar docs,
   "Architecture overview", message ids and ledgers). A reader opened at (ledger, entry - n) reads
   the last n messages: the group since the last keyframe (the page sends one at least every 2 s,
   README "Streaming") is in a window of WINDOW_ENTRIES, widened fourfold while it holds no keyframe.
   That reader, at the end of the topic once it has read the window, tails the topic afterwards.
3. The init segment was published when the stream (or its codec configuration) started, possibly hours
   before. Chunk gives it the properties of its fragments (ENVELOPE.md "Segments"), so it is the first
   message of the topic with the current ``config_of``: found by bisection over the entries of the
   ledger, a reader per probe. When the stream began in an earlier ledger, whose ids a client cannot
   list, the bisection goes by publish time instead (``Reader.seek(timestamp)``, Pulsar docs "Seek by
   time", ``CommandSeek.message_publish_time``), which costs a reconnection per probe (about 100 ms
   with pulsar-client 3.13), still O(log duration) rather than a read of the whole topic.

Anything that does not fit (no init where the bisection led, no keyframe in the ledger) falls back
to reading the topic from its start, which is always right, and ``JoinSearch.fallback`` says why.
Chat takes its last few messages (viewer.CHAT_BACKLOG) from a window that widens the same way.

All I/O goes through ``TopicAccess`` (readers at a position, positions of messages), so tests drive
the finder with a fake topic as well as with a broker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from schemas.framing_codec import Kind

if TYPE_CHECKING:  # egress.RoomFeed hands the viewer classes in
    from ingress.viewer import DeliveryDedup, Item, JoinPoint

WINDOW_ENTRIES = 256  # first window back from the newest message (8.5 s of one 30 fps rendition)
MAX_WIDENINGS = 5  # 256 ... 262,144 entries
BISECT_RESOLUTION_MS = 200.0  # a bisection by time stops here; the rest is read forward
INIT_SCAN_LIMIT = 20_000  # messages read forward from where a bisection ended, looking for the init
READ_TIMEOUT_MS = 5000
CONFIG_PROPERTIES = ("stream", "rendition", "codec_string", "width", "height", "sample_rate", "channels")

Position = tuple[int, int]  # (ledger id, entry id)


class Reader(Protocol):
    def read_next(self, timeout_millis: int | None = None) -> Any: ...

    def has_message_available(self) -> bool: ...

    def seek(self, messageid: Any) -> None: ...

    def close(self) -> None: ...


class TopicAccess(Protocol):
    def open(self, position: Position | None) -> Reader:
        """A reader whose first message is the one at ``position`` (None: the topic's first)."""
        ...

    def position(self, msg: Any) -> Position: ...

    def item(self, msg: Any) -> Item: ...


def config_of(item: Item) -> tuple[str, ...]:
    """What an init segment shares with every fragment it describes."""
    return tuple(item.properties.get(name, "") for name in CONFIG_PROPERTIES)


@dataclass
class JoinSearch:
    """The join point found, what finding it cost, and the reader to tail the topic with."""

    items: list[Item] = field(default_factory=list)
    reader: Any = None
    read: int = 0  # messages read
    readers: int = 0  # readers opened at a position (cheap) ...
    seeks: int = 0  # ... and seeks by publish time (a reconnection each)
    fallback: str = ""  # why the topic was read from its start ("" = it was not)


class JoinFinder:
    """Finds the join point of one topic from its end (module docstring). Runs on a reader thread."""

    def __init__(self, kind: Kind, topic: TopicAccess, join_point: Callable[[Kind], JoinPoint],
                 dedup: Callable[[], DeliveryDedup], stale_ms: float = 10_000.0,
                 window_entries: int = WINDOW_ENTRIES) -> None:
        self.kind = kind
        self.topic = topic
        self.join_point = join_point
        self.dedup = dedup
        self.stale_ms = stale_ms
        self.window_entries = window_entries
        self.result = JoinSearch()

    def find(self, latest: Reader, now_ms: float) -> JoinSearch:
        """``latest`` was created at the newest message, inclusive. The result's reader tails the topic."""
        result = self.result
        result.reader = latest
        if self.kind == Kind.FILE or not latest.has_message_available():
            return result
        newest = self._read(latest)
        last = self.topic.item(newest)
        if self.kind != Kind.CHAT and (last.is_end or now_ms - last.published_ms >= self.stale_ms):
            return result  # a stream that is over: joiners wait for the next one
        ledger, entry = self.topic.position(newest)
        back = self.window_entries
        while True:
            start = max(0, entry - back)
            reader = self._open((ledger, start))
            try:
                join = self._read_to_end(reader)
            except BaseException:
                reader.close()  # the caller closes result.reader (``latest`` so far)
                raise
            enough = len(join.chat) == join.chat.maxlen if self.kind == Kind.CHAT else bool(join.group)
            if enough or start == 0 or back >= self.window_entries * 4**MAX_WIDENINGS:
                break
            reader.close()
            back *= 4
        latest.close()
        result.reader = reader  # at the end of the topic now
        if self.kind == Kind.CHAT:
            result.items = join.snapshot()
            return result
        if not join.group:
            return self._from_start(f"no keyframe in the last {entry - start + 1} entries of the ledger")
        key = join.group[0]
        if join.init is None or config_of(join.init) != config_of(key):
            init = self._find_init(key, ledger, start)
            if init is None:
                return self._from_start("the init segment was not where the bisection led")
            join.init = init
        result.items = join.snapshot()
        return result

    # ---- steps ----------------------------------------------------------------------------------
    def _read(self, reader: Reader) -> Any:
        self.result.read += 1
        return reader.read_next(READ_TIMEOUT_MS)

    def _open(self, position: Position | None) -> Reader:
        self.result.readers += 1
        return self.topic.open(position)

    def _read_to_end(self, reader: Reader) -> JoinPoint:
        join, dedup = self.join_point(self.kind), self.dedup()
        while reader.has_message_available():
            item = self.topic.item(self._read(reader))
            if dedup.accept(item.kind, item.properties, item.payload):
                join.remember(item)
        return join

    def _probe(self, position: Position | None) -> Item | None:
        reader = self._open(position)
        try:
            return self.topic.item(self._read(reader)) if reader.has_message_available() else None
        finally:
            reader.close()

    def _find_init(self, key: Item, ledger: int, window_start: int) -> Item | None:
        """The init of ``key``'s stream and configuration: the first message with its ``config_of``."""
        wanted = config_of(key)
        first_of_ledger = self._probe((ledger, 0))
        if first_of_ledger is None:
            return None
        if config_of(first_of_ledger) == wanted:
            return self._find_init_by_time(wanted, first_of_ledger.published_ms)
        lo, hi = 0, window_start  # config differs at lo, matches at hi
        while hi - lo > 1:
            mid = (lo + hi) // 2
            probe = self._probe((ledger, mid))
            if probe is not None and config_of(probe) == wanted:
                hi = mid
            else:
                lo = mid
        return self._scan_for_init(self._open((ledger, hi)), wanted, key.published_ms)

    def _find_init_by_time(self, wanted: tuple[str, ...], before_ms: float) -> Item | None:
        """The stream began before this ledger: bisect by publish time over the topic from its start."""
        probe = self._open(None)
        try:
            if not probe.has_message_available():
                return None
            first = self.topic.item(self._read(probe))
            if config_of(first) == wanted:
                lo = first.published_ms - 1
            else:
                lo, hi = first.published_ms, before_ms
                while hi - lo > BISECT_RESOLUTION_MS:
                    mid = (lo + hi) / 2
                    self.result.seeks += 1
                    probe.seek(int(mid))
                    if probe.has_message_available() and config_of(self.topic.item(self._read(probe))) == wanted:
                        hi = mid
                    else:
                        lo = mid
            self.result.seeks += 1
            probe.seek(max(0, int(lo)))
        except BaseException:
            probe.close()
            raise
        return self._scan_for_init(probe, wanted, before_ms)

    def _scan_for_init(self, reader: Reader, wanted: tuple[str, ...], until_ms: float) -> Item | None:
        try:
            for _ in range(INIT_SCAN_LIMIT):
                if not reader.has_message_available():
                    return None
                item = self.topic.item(self._read(reader))
                if item.is_init and config_of(item) == wanted:
                    return item
                if item.published_ms > until_ms:
                    return None
            return None
        finally:
            reader.close()

    def _from_start(self, why: str) -> JoinSearch:
        result = self.result
        result.fallback = why
        result.reader.close()
        result.reader = self._open(None)
        result.items = self._read_to_end(result.reader).snapshot()
        return result


class PulsarTopic:
    """``TopicAccess`` over pulsar-client readers of one topic."""

    def __init__(self, client: Any, url: str, item: Callable[[Any], Item]) -> None:
        self.client, self.url, self.item = client, url, item

    def open(self, position: Position | None) -> Reader:
        import pulsar

        start = pulsar.MessageId.earliest if position is None else pulsar.MessageId(-1, position[0], position[1], -1)
        return self.client.create_reader(self.url, start, start_message_id_inclusive=True)  # type: ignore[no-any-return]  # pulsar-client is untyped

    def position(self, msg: Any) -> Position:
        mid = msg.message_id()
        return mid.ledger_id(), mid.entry_id()
