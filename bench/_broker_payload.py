"""The benchmark's message body and the receiver-side tally of which ids arrived how often.

Every payload starts with a fixed header, then zero padding up to the requested size:

    offset 0  u64 little-endian  id       (0, 1, 2, ... per run)
    offset 8  u64 little-endian  sent_ns  (time.monotonic_ns() just before send_async)

The receiver reads the id to count lost and duplicated messages and, in the paced run, the send time
for the latency (sender and receiver are the same process, so one monotonic clock serves both).
"""

from __future__ import annotations

import struct
from array import array
from dataclasses import dataclass

HEADER = struct.Struct("<QQ")
MIN_SIZE = HEADER.size  # bytes


class PayloadFactory:
    """Builds payloads of one fixed size; the padding is made once and reused."""

    def __init__(self, size: int) -> None:
        if size < MIN_SIZE:
            raise ValueError(f"payload size {size} is below the {MIN_SIZE}-byte header")
        self.size = size
        self._pad = bytes(size - MIN_SIZE)

    def make(self, ident: int, sent_ns: int) -> bytes:
        return HEADER.pack(ident, sent_ns) + self._pad


def parse(data: bytes) -> tuple[int, int]:
    """(id, sent_ns) of a payload; ValueError if it is too short to carry the header."""
    if len(data) < MIN_SIZE:
        raise ValueError(f"payload of {len(data)} bytes is shorter than the {MIN_SIZE}-byte header")
    ident, sent_ns = HEADER.unpack_from(data)
    return int(ident), int(sent_ns)


@dataclass(frozen=True)
class Tally:
    received: int
    """Distinct ids that arrived at least once."""
    lost: int
    """Ids that were sent and never arrived."""
    duplicated: int
    """Deliveries beyond the first of an id."""
    unexpected: int
    """Deliveries whose id was never sent, or whose body had the wrong size or was unreadable."""


class ArrivalCounter:
    """Counts deliveries per id in a growable array of unsigned ints: cheap per message, exact."""

    _GROW = 1 << 16

    def __init__(self) -> None:
        self._counts = array("I")
        self.deliveries = 0
        self.distinct = 0
        self.malformed = 0

    def add(self, ident: int) -> None:
        self.deliveries += 1
        counts = self._counts
        if ident >= len(counts):
            counts.extend(array("I", bytes(4 * (ident - len(counts) + self._GROW))))
        if counts[ident] == 0:
            self.distinct += 1
        counts[ident] += 1

    def add_malformed(self) -> None:
        self.deliveries += 1
        self.malformed += 1

    def tally(self, sent: int) -> Tally:
        """Compare with ids 0..sent-1, the ones the producer handed to the client."""
        in_range = self._counts[:sent]
        arrived = len(in_range) - in_range.count(0)
        duplicated = sum(in_range) - arrived
        unexpected = sum(self._counts[sent:]) + self.malformed
        return Tally(received=arrived, lost=sent - arrived, duplicated=duplicated, unexpected=unexpected)
