"""What the broker knows about each stored entry without reading it: `EntryMeta`, and the
`EntryIndex` that keeps it for many entries in flat columns.

Its own module so that the topic (which fills the index) and the subscriptions and
non-persistent routing (which read it) share it without importing each other.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass


@dataclass(slots=True)
class EntryMeta:
    publish_time: int
    num_messages: int
    slot: int
    deliver_at: int
    size: int


class EntryIndex:
    """Per-entry facts in flat int64 columns: no Python object per stored entry, so the garbage
    collector's full passes stay short however long the backlog grows."""

    def __init__(self, base: int) -> None:
        self.base = base
        self._cols = [array("q") for _ in range(5)]  # publish_time, num_messages, slot, deliver_at, size

    def __len__(self) -> int:
        return len(self._cols[0])

    def append(self, meta: EntryMeta) -> None:
        for col, value in zip(self._cols, (meta.publish_time, meta.num_messages, meta.slot, meta.deliver_at, meta.size), strict=True):
            col.append(value)

    def __getitem__(self, offset: int) -> EntryMeta:
        i = offset - self.base
        if i < 0:
            raise IndexError(offset)
        c = self._cols
        return EntryMeta(c[0][i], c[1][i], c[2][i], c[3][i], c[4][i])

    def covers(self, offset: int) -> bool:
        return self.base <= offset < self.base + len(self)

    def drop_before(self, offset: int) -> None:
        count = offset - self.base
        if count > 0:
            for col in self._cols:
                del col[:count]
            self.base = offset
