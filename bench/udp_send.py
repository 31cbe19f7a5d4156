"""What sending a viewer's QUIC packets costs the ingress: one ``sendto`` per packet (the baseline, as
aioquic's transport does) against one ``sendmsg`` per run with UDP GSO (ingress/udp_batch.py), in one run.

    .venv/bin/python -m bench.udp_send [--quick] [--packets 3000]

A frame is n packets to one address: 1 (an audio packet), 4 (a ~3.7 KB video delta at 1200 bytes per
packet, as bench/fanout.py sends) and 28 (a keyframe fragment 8 times that). Both senders go through the
same asyncio datagram transport and socket to a receiver socket on 127.0.0.1, which is drained between
frames. The figure is the sending thread's CPU time (``time.thread_time``, so other processes on a
shared machine do not count), best of 5 rounds; on loopback it includes the kernel's delivery to the
receiving socket, which runs in the sender's system call.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import time
from typing import Any

from ingress.udp_batch import BatchSender, gso_available

SHAPES = ((1, 160), (4, 131), (28, 1000))  # packets per frame, bytes of the last one


def _drain(rx: socket.socket) -> None:
    try:
        while True:
            rx.recv(65536)
    except BlockingIOError:
        pass


def measure(sender: BatchSender, rx: socket.socket, frame: list[tuple[bytes, Any]], packets: int) -> float:
    """Best-of-5 CPU seconds per frame."""
    reps = max(1, packets // len(frame))
    best = float("inf")
    for _ in range(5):
        spent = 0.0
        for _ in range(reps):
            t0 = time.thread_time()
            sender.send(frame)
            spent += time.thread_time() - t0
            _drain(rx)
        best = min(best, spent / reps)
    return best


async def run(packets: int) -> list[tuple[int, float, float]]:
    loop = asyncio.get_running_loop()
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    rx.setblocking(False)
    to = rx.getsockname()
    transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    sock = transport.get_extra_info("socket")
    raw = getattr(transport, "_sock", sock)  # the ingress hands BatchSender asyncio's own socket the same way
    rows = []
    try:
        for n, last in SHAPES:
            frame = [(bytes([i % 256]) * 1200, to) for i in range(n - 1)] + [(b"z" * last, to)]
            base = measure(BatchSender(raw, transport, gso=False), rx, frame, packets)
            gso = measure(BatchSender(raw, transport, gso=True), rx, frame, packets)
            rows.append((n, base, gso))
    finally:
        transport.close()
        rx.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.udp_send", description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--packets", type=int, default=3000, help="packets per round and frame shape")
    ap.add_argument("--quick", action="store_true", help="600 packets per round")
    args = ap.parse_args(argv)
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        if not gso_available(probe):
            print("udp send: this kernel has no UDP_SEGMENT (Linux >= 4.18): nothing to compare")
            return 0
    finally:
        probe.close()
    load_start = os.getloadavg()[0]
    rows = asyncio.run(run(600 if args.quick else args.packets))
    print("\nsending one frame's packets to one viewer, CPU of the sending thread (best of 5)")
    print(f"{'packets/frame':>13} {'sendto us/frame':>16} {'GSO us/frame':>13} {'sendto us/pkt':>14} {'GSO us/pkt':>11} {'GSO/sendto':>10}")
    for n, base, gso in rows:
        print(f"{n:>13} {base * 1e6:>16.1f} {gso * 1e6:>13.1f} {base / n * 1e6:>14.2f} {gso / n * 1e6:>11.2f} "
              f"{gso / base:>10.2f}")
    print(f"load average at the start: {load_start:.2f}, at the end: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    n, base, gso = rows[1]
    print(f"udp send: {gso * 1e6:.1f} us per {n}-packet frame with GSO vs {base * 1e6:.1f} us with sendto per packet "
          f"({gso / base:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
