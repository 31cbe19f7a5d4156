"""`wtpulsar publish` measures its clock's offset to the ingress as the page does (docs/clock-sync.md).

Capture times go out on the ingress's clock (FRAMING.md "Clock"): before publishing, a short
WebTransport session sends CLOCK requests as datagrams, and the sample with the smallest round trip
gives the offset ((received - origin) + (transmitted - arrival)) / 2. ``best_offset`` is the sans-I/O
part; ``measure_offset`` the exchange. With no reply (an ingress too old, or datagrams lost) the
offset is 0 and a machine sharing the ingress's clock is still right.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from schemas.framing_codec import Clock, serialize_clock

REQUESTS = 6
SPACING_S = 0.05


@dataclass(frozen=True, slots=True)
class Sample:
    offset_ms: float  # the ingress's clock minus ours
    round_trip_ms: float


def sample(reply: Clock, arrival_ms: float) -> Sample:
    offset = ((reply.received - reply.origin) + (reply.transmitted - arrival_ms)) / 2
    round_trip = (arrival_ms - reply.origin) - (reply.transmitted - reply.received)
    return Sample(offset, round_trip)


def best_offset(samples: list[Sample]) -> float:
    """The offset of the sample with the smallest round trip (its error is at most half of it); 0 when none."""
    usable = [s for s in samples if s.round_trip_ms >= 0]
    return min(usable, key=lambda s: s.round_trip_ms).offset_ms if usable else 0.0


async def measure_offset(url: str, timeout: float = 3.0) -> tuple[float, int]:
    """(offset ms, replies) from a short session at ``url`` (a publisher session URL)."""
    from clients.webtransport import open_webtransport

    samples: list[Sample] = []
    try:
        async with open_webtransport(url, timeout=timeout) as client:
            seen = 0
            for _ in range(REQUESTS):
                client.send_datagram(serialize_clock(Clock(time.time() * 1000.0)))
                await asyncio.sleep(SPACING_S)
                for _, record in client.state.records[seen:]:
                    if isinstance(record, Clock) and not record.is_request:
                        samples.append(sample(record, time.time() * 1000.0))
                seen = len(client.state.records)
    except (OSError, TimeoutError, ConnectionError):
        return 0.0, 0
    return best_offset(samples), len(samples)
