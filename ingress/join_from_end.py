"""Where a late joiner starts, found from the end of a room topic instead of reading it from the start.

A RoomFeed used to read its topic from the earliest message to build the join point (JoinPoint: the
latest init segment and the fragments since the latest keyframe), so the first viewer of a day-long
topic waited for the whole day to be read. Here the join point is found from the end:

1. A reader created at ``MessageId.latest`` with ``start_message_id_inclusive`` returns the newest
   message (the Pulsar client asks the broker for the last message id and seeks to it; Pulsar docs,
   "Reader interface", and ``CommandGetLastMessageId`` in PulsarApi.proto). Nothing there, a stream
   that ended, or one quiet for longer than ``stale_ms``: there is nothing to join.
2. The reader seeks by publish time to ``lookback_ms`` before that message (``Reader.seek(timestamp)``,
   Pulsar's "Seek by time", ``CommandSeek.message_publish_time``) and reads to the end, which gives the
   group since the last keyframe (the page sends one at least every 2 s; README "Streaming"). No
   keyframe in the window: the window grows fourfold, up to ``MAX_WIDENINGS`` times.
3. The init segment was published when the stream (or its codec configuration) started, possibly hours
   before. A second reader bisects by publish time for the first message of the current stream and
   configuration (same ``stream``, ``codec_string`` and size or audio format: chunk gives the init the
   properties of its fragments, ENVELOPE.md "Segments"), then reads forward from there to the init.
   That costs O(log duration) seeks, not a read of the whole topic.

Anything that does not fit (no init where it should be, a window that never held a keyframe) falls back
to reading the topic from the start, which is always right, and says so in ``JoinSearch.fallback``.
Chat keeps its last few messages (egress.CHAT_BACKLOG) from a window that widens the same way.

The I/O is a reader with ``read_next``/``has_message_available``/``seek`` and a function opening a
second one, so tests can drive it with a fake as well as with a broker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from schemas.framing import Kind

if TYPE_CHECKING:  # egress hands its classes in (RoomFeed), so this module does not import it
    from ingress.egress import DeliveryDedup, Item, JoinPoint

LOOKBACK_MS = 5000.0  # more than two keyframe intervals of the page (at least one every 2 s)
MAX_WIDENINGS = 4  # 5 s, 20 s, 80 s, 320 s, 1280 s
BISECT_RESOLUTION_MS = 500.0  # bisection stops here; the rest is read forward
INIT_SCAN_LIMIT = 20_000  # messages read forward from the bisection's end looking for the init
READ_TIMEOUT_MS = 5000
CONFIG_PROPERTIES = ("stream", "rendition", "codec_string", "width", "height", "sample_rate", "channels")


class Reader(Protocol):
    def read_next(self, timeout_millis: int | None = None) -> Any: ...

    def has_message_available(self) -> bool: ...

    def seek(self, messageid: Any) -> None: ...


def config_of(item: Item) -> tuple[str, ...]:
    """What an init segment shares with every fragment it describes."""
    return tuple(item.properties.get(name, "") for name in CONFIG_PROPERTIES)


@dataclass
class JoinSearch:
    """The join point found, and what finding it cost."""

    items: list[Item] = field(default_factory=list)
    read: int = 0  # messages read
    seeks: int = 0
    fallback: str = ""  # why the topic was read from the start ("" = it was not)


class JoinFinder:
    """Finds the join point of one topic from its end (module docstring)."""

    def __init__(self, kind: Kind, to_item: Callable[[Any], Item], open_probe: Callable[[], Any],
                 join_point: Callable[[Kind], JoinPoint], dedup: Callable[[], DeliveryDedup],
                 lookback_ms: float = LOOKBACK_MS, stale_ms: float = 10_000.0) -> None:
        self.kind = kind
        self.to_item = to_item
        self.join_point = join_point
        self.dedup = dedup
        self.open_probe = open_probe  # a second reader, at the earliest message, for the init search
        self.lookback_ms = lookback_ms
        self.stale_ms = stale_ms
        self.result = JoinSearch()

    def find(self, reader: Reader, now_ms: float) -> JoinSearch:
        """``reader`` was created at the latest message, inclusive; it is left at the end of the topic."""
        if self.kind == Kind.FILE or not reader.has_message_available():
            return self.result
        last = self._read(reader)
        if self.kind != Kind.CHAT and (last.is_end or now_ms - last.published_ms >= self.stale_ms):
            return self.result  # a stream that is over: joiners wait for the next one
        lookback = self.lookback_ms
        for _ in range(MAX_WIDENINGS + 1):
            join = self._window(reader, last.published_ms - lookback)
            if self.kind == Kind.CHAT:
                if len(join.chat) == join.chat.maxlen or last.published_ms - lookback <= 0:
                    break
            elif join.group:
                break
            lookback *= 4
        else:
            if self.kind == Kind.CHAT:
                self.result.items = join.snapshot()
                return self.result
            return self._from_start(reader, "no keyframe within the widest window")
        if self.kind != Kind.CHAT and (join.init is None or config_of(join.init) != config_of(join.group[0])):
            init = self._find_init(join.group[0])
            if init is None:
                return self._from_start(reader, "the init segment was not where the bisection led")
            join.init = init
        self.result.items = join.snapshot()
        return self.result

    # ---- steps ----------------------------------------------------------------------------------
    def _read(self, reader: Reader) -> Item:
        self.result.read += 1
        return self.to_item(reader.read_next(READ_TIMEOUT_MS))

    def _seek(self, reader: Reader, target: Any) -> None:
        self.result.seeks += 1
        reader.seek(target)

    def _window(self, reader: Reader, since_ms: float) -> JoinPoint:
        """Everything from ``since_ms`` to the end, as a join point (repeats dropped)."""
        self._seek(reader, max(0, int(since_ms)))
        join, dedup = self.join_point(self.kind), self.dedup()
        while reader.has_message_available():
            item = self._read(reader)
            if dedup.accept(item.kind, item.properties, item.payload):
                join.remember(item)
        return join

    def _find_init(self, key: Item) -> Item | None:
        """The init segment of ``key``'s stream and configuration, by bisection on publish time."""
        import pulsar

        wanted = config_of(key)
        probe = self.open_probe()
        try:
            if not probe.has_message_available():
                return None
            first = self._read(probe)
            if config_of(first) == wanted:  # the topic starts with this stream: its init is near the start
                self._seek(probe, pulsar.MessageId.earliest)
            else:
                lo, hi = first.published_ms, key.published_ms
                while hi - lo > BISECT_RESOLUTION_MS:
                    mid = (lo + hi) / 2
                    self._seek(probe, int(mid))
                    if config_of(self._read(probe)) == wanted:
                        hi = mid
                    else:
                        lo = mid
                self._seek(probe, int(lo))
            for _ in range(INIT_SCAN_LIMIT):
                if not probe.has_message_available():
                    return None
                item = self._read(probe)
                if item.is_init and config_of(item) == wanted:
                    return item
                if item.published_ms > key.published_ms:
                    return None
            return None
        finally:
            probe.close()

    def _from_start(self, reader: Reader, why: str) -> JoinSearch:
        import pulsar

        self.result.fallback = why
        self._seek(reader, pulsar.MessageId.earliest)
        join, dedup = self.join_point(self.kind), self.dedup()
        while reader.has_message_available():
            item = self._read(reader)
            if dedup.accept(item.kind, item.properties, item.payload):
                join.remember(item)
        self.result.items = join.snapshot()
        return self.result
