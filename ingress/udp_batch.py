"""Send one connection's pending QUIC datagrams with as few system calls as Linux allows (UDP GSO).

A video frame a viewer is sent is several QUIC packets of the same size (the last one shorter), all
to one address. With UDP generic segmentation offload the whole run goes to the kernel in one
``sendmsg`` carrying the segment size as ``UDP_SEGMENT`` ancillary data; the kernel cuts it into
datagrams of that size (docs/fanout.md §6.1). Without it every packet is one ``sendto`` through
asyncio's transport.

``plan`` (no I/O) cuts a list of datagrams into such runs; ``BatchSender`` sends them on the
server's socket and falls back to the transport, in order, whenever the socket cannot take a run
at once (asyncio then buffers it) or the kernel refuses GSO (it is switched off for good then).
"""

from __future__ import annotations

import errno
import logging
import socket
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

SOL_UDP = getattr(socket, "SOL_UDP", 17)
UDP_SEGMENT = 103  # linux/udp.h (docs/fanout.md §6.1); Python 3.11's socket module does not name it
MAX_SEGMENTS = 64  # UDP_MAX_SEGMENTS of the kernel (docs/fanout.md §6.1)
MAX_RUN_BYTES = 65507  # one UDP datagram's payload over IPv4 (65535 - 20 - 8): the bound of a GSO send
# the kernel refuses segmentation for this socket or route: send packet by packet from then on
_NO_GSO_ERRNOS = frozenset({errno.EIO, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOPROTOOPT})


@dataclass(frozen=True, slots=True)
class Run:
    """Datagrams for one ``sendmsg``: all ``segment`` bytes long but the last (shorter or equal), one address."""

    addr: Any
    segment: int
    datagrams: tuple[bytes, ...]


def plan(datagrams: Sequence[tuple[bytes, Any]], max_segments: int = MAX_SEGMENTS,
         max_bytes: int = MAX_RUN_BYTES) -> list[Run]:
    """Cut ``datagrams`` (data, address), in their order, into runs the kernel can segment."""
    runs: list[Run] = []
    current: list[bytes] = []
    addr: Any = None
    segment = total = 0
    for data, to in datagrams:
        size = len(data)
        fits = (current and to == addr and size <= segment and len(current) < max_segments
                and total + size <= max_bytes and len(current[-1]) == segment)
        if not fits:
            if current:
                runs.append(Run(addr, segment, tuple(current)))
            current, addr, segment, total = [], to, size, 0
        current.append(data)
        total += size
    if current:
        runs.append(Run(addr, segment, tuple(current)))
    return runs


def gso_available(sock: socket.socket) -> bool:
    """Whether this kernel takes UDP_SEGMENT on ``sock`` (Linux 4.18 and later; docs/fanout.md §6.1)."""
    if sys.platform != "linux":
        return False
    try:
        sock.getsockopt(SOL_UDP, UDP_SEGMENT)
    except OSError:
        return False
    return True


class BatchSender:
    """Sends datagrams on a UDP server socket, a run per ``sendmsg`` where GSO allows.

    ``transport`` is the asyncio datagram transport that owns ``sock``; it takes every datagram this
    sender does not (single ones, and all of them while it has a backlog, so order is kept)."""

    def __init__(self, sock: socket.socket, transport: Any, gso: bool | None = None) -> None:
        self.sock = sock
        self.transport = transport
        self.gso = gso_available(sock) if gso is None else gso
        self.calls = 0  # system calls (sendmsg) that sent a run of several datagrams
        self.segmented = 0  # datagrams those calls carried

    def send(self, datagrams: Sequence[tuple[bytes, Any]]) -> None:
        if not datagrams:
            return
        transport = self.transport
        if not self.gso or len(datagrams) == 1 or transport.get_write_buffer_size():
            for data, addr in datagrams:
                transport.sendto(data, addr)
            return
        for run in plan(datagrams):
            if len(run.datagrams) == 1 or not self.gso or transport.get_write_buffer_size():
                for data in run.datagrams:
                    transport.sendto(data, run.addr)
                continue
            self._send_run(run)

    def _send_run(self, run: Run) -> None:
        try:
            self.sock.sendmsg([b"".join(run.datagrams)], [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", run.segment))],
                              0, run.addr)
        except (BlockingIOError, InterruptedError):
            pass  # the socket's buffer is full: the transport queues the run below
        except OSError as exc:
            if exc.errno in _NO_GSO_ERRNOS:
                log.info("UDP GSO refused (%s): sending datagram by datagram", exc)
                self.gso = False
            else:  # e.g. the peer's address is unreachable: what sendto would have met, per datagram
                log.debug("udp sendmsg to %s: %s", run.addr, exc)
                return
        else:
            self.calls += 1
            self.segmented += len(run.datagrams)
            return
        for data in run.datagrams:
            self.transport.sendto(data, run.addr)
