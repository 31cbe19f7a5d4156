"""Backpressure on a publisher where the QUIC stack gives no hook into its read credit (qh3).

qh3 keeps flow control in its compiled core and raises MAX_STREAM_DATA as data arrives, whatever the
application does with it (docs/fanout.md "QUIC stack"), like aioquic does (docs/media-and-webtransport.md
§1.8) but without a method we can replace (ingress/flow_gate.py). The equivalent lever is the packets
themselves: while a publishing session on the connection is backlogged, the connection's received UDP
datagrams are not handed to the stack. Up to ``limit`` bytes of them are kept and handed over in order
when the session resumes; beyond that they are dropped, and the peer, seeing no acknowledgement,
retransmits them later and slows down (RFC 9002 loss recovery and congestion control). Nothing the
publisher sent is lost: unacknowledged data stays in the publisher's QUIC send buffer, as with the
credit gate, and so does the browser's writer block.

To keep the connection from reaching its idle timeout during a long pause, ``trickle`` lets one kept
datagram through at most every ``trickle_every`` seconds: a bounded trickle (one packet a second by
default) that keeps the stack hearing from its peer.

Sans-I/O: ``offer`` and ``release`` take ``now`` and return the datagrams to hand to the stack.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

Datagram = tuple[bytes, Any]  # (payload, peer address)


@dataclass
class DatagramHold:
    limit: int  # bytes of datagrams kept while paused
    trickle_every: float = 1.0  # s between datagrams let through while paused
    paused: bool = False
    held: deque[Datagram] = field(default_factory=deque)
    held_bytes: int = 0
    dropped: int = 0  # datagrams dropped while paused (the peer retransmits their contents)
    _last_trickle: float = 0.0

    def offer(self, data: bytes, addr: Any, now: float) -> list[Datagram]:
        """A received datagram: returned at once when not paused, else kept (or dropped when full)."""
        if not self.paused:
            return [(data, addr)]
        if self.held_bytes + len(data) > self.limit:
            self.dropped += 1
        else:
            self.held.append((data, addr))
            self.held_bytes += len(data)
        return self.trickle(now)

    def trickle(self, now: float) -> list[Datagram]:
        """While paused, the oldest kept datagram once every ``trickle_every`` seconds, else nothing."""
        if not self.paused or not self.held or now - self._last_trickle < self.trickle_every:
            return []
        self._last_trickle = now
        data, addr = self.held.popleft()
        self.held_bytes -= len(data)
        return [(data, addr)]

    def set_paused(self, paused: bool, now: float) -> list[Datagram]:
        """Pause (returns nothing; the trickle clock starts now) or resume (returns everything kept, in order)."""
        if paused:
            if not self.paused:
                self._last_trickle = now
            self.paused = True
            return []
        self.paused = False
        released = list(self.held)
        self.held.clear()
        self.held_bytes = 0
        return released
