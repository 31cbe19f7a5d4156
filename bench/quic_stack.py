"""What the QUIC stack costs per delivered frame: aioquic (the baseline) against qh3, in one run.

    .venv/bin/python -m bench.quic_stack [--quick] [--frames 3000] [--frame-bytes 4000] [--stack aioquic|qh3]

No sockets and no event loop: a server and a client QuicConnection of the chosen stack exchange
their datagrams in memory, as the ingress's connection to one viewer does (one uni stream, a frame
written, ``datagrams_to_send``, the viewer's ACKs fed back). The server's CPU (time.process_time
around its calls only) per frame is the QUIC part of the WebTransport delivery path: framing into
packets, encryption, loss recovery and congestion control. The client's CPU is printed apart. The
same is done for the publish direction (client sends, server receives).

qh3 is an aioquic-compatible QUIC stack with compiled parts, a pinned dependency: the ingress runs
on it with `wtpulsar ingress --quic-stack qh3` (ingress/quic_stack.py); bench/fanout.py --quic-stack
measures the whole delivery path on each. This measures the stack alone.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ADDR = ("127.0.0.1", 4433)
CLIENT_ADDR = ("127.0.0.1", 50000)


def stack_modules(name: str) -> tuple[Any, Any]:
    connection = importlib.import_module(f"{name}.quic.connection")
    configuration = importlib.import_module(f"{name}.quic.configuration")
    return connection.QuicConnection, configuration.QuicConfiguration


def pair(name: str, cert: Path, key: Path, datagram_size: int | None = None) -> tuple[Any, Any]:
    QuicConnection, QuicConfiguration = stack_modules(name)
    server_cfg = QuicConfiguration(is_client=False, alpn_protocols=["h3"], max_datagram_frame_size=65536)
    if datagram_size is not None:  # the server's packet size (wtpulsar ingress --max-datagram-size)
        server_cfg.max_datagram_size = datagram_size
    server_cfg.load_cert_chain(str(cert), str(key))
    server_cfg.max_data = server_cfg.max_stream_data = 1 << 30
    client_cfg = QuicConfiguration(is_client=True, alpn_protocols=["h3"], max_datagram_frame_size=65536)
    client_cfg.verify_mode = 0  # ssl.CERT_NONE: a generated certificate
    client_cfg.max_data = client_cfg.max_stream_data = 1 << 30
    if hasattr(client_cfg, "verify_hostname"):
        client_cfg.verify_hostname = False
    client_cfg.server_name = "localhost"
    client = QuicConnection(configuration=client_cfg)
    client.connect(ADDR, now=time.monotonic())
    server = QuicConnection(configuration=server_cfg, original_destination_connection_id=client.original_destination_connection_id) \
        if hasattr(client, "original_destination_connection_id") else QuicConnection(configuration=server_cfg)
    for _ in range(20):  # handshake
        exchange(client, server, CLIENT_ADDR)
        exchange(server, client, ADDR)
    return client, server


RECEIVED: dict[int, int] = {}  # id(connection) -> stream bytes it was handed (checked after each run)


def exchange(sender: Any, receiver: Any, sender_addr: Any, clock: list[float] | None = None) -> int:
    """Move the sender's pending datagrams to the receiver; ``clock`` accumulates [sender, receiver] CPU."""
    t0 = time.process_time()
    datagrams = sender.datagrams_to_send(now=time.monotonic())
    t1 = time.process_time()
    for data, _ in datagrams:
        receiver.receive_datagram(data, sender_addr, now=time.monotonic())
    t2 = time.process_time()
    for conn in (receiver, sender):
        while (event := conn.next_event()) is not None:
            data = getattr(event, "data", None)
            if type(event).__name__ == "StreamDataReceived" and data:
                RECEIVED[id(conn)] = RECEIVED.get(id(conn), 0) + len(data)
    if clock is not None:
        clock[0] += t1 - t0
        clock[1] += t2 - t1
    return len(datagrams)


def run(name: str, frames: int, size: int, cert: Path, key: Path, direction: str,
        datagram_size: int | None = None) -> dict[str, float]:
    client, server = pair(name, cert, key, datagram_size)
    sender, receiver, sender_addr, receiver_addr = ((server, client, ADDR, CLIENT_ADDR) if direction == "delivery"
                                                     else (client, server, CLIENT_ADDR, ADDR))
    stream = sender.get_next_available_stream_id(is_unidirectional=True)
    payload = os.urandom(size)
    send_cpu = [0.0, 0.0]  # sender: write + datagrams_to_send; receiver: receive_datagram
    ack_cpu = [0.0, 0.0]  # receiver's ACKs: built by the receiver, handled by the sender
    packets = 0
    for _ in range(frames):
        t0 = time.process_time()
        sender.send_stream_data(stream, payload)
        send_cpu[0] += time.process_time() - t0
        packets += exchange(sender, receiver, sender_addr, send_cpu)
        exchange(receiver, sender, receiver_addr, ack_cpu)
    deadline = time.monotonic() + 30
    while RECEIVED.get(id(receiver), 0) < frames * size and time.monotonic() < deadline:
        # what pacing or the congestion window held back: its sending is part of the cost (counted)
        moved = exchange(sender, receiver, sender_addr, send_cpu)
        packets += moved
        if not moved:
            time.sleep(0.001)
        exchange(receiver, sender, receiver_addr, ack_cpu)
    got = RECEIVED.pop(id(receiver), 0)
    if got != frames * size:
        raise RuntimeError(f"{name} {direction}: the receiver got {got} bytes of {frames * size}")
    return {"sender_us": (send_cpu[0] + ack_cpu[1]) / frames * 1e6, "receiver_us": (send_cpu[1] + ack_cpu[0]) / frames * 1e6,
            "packets_per_frame": packets / frames}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.quic_stack", description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--frames", type=int, default=3000)
    ap.add_argument("--frame-bytes", type=int, default=4000)
    ap.add_argument("--stack", action="append", choices=["aioquic", "qh3"], help="default: both (qh3 if installed)")
    ap.add_argument("--quick", action="store_true", help="500 frames")
    ap.add_argument("--json", metavar="FILE", type=Path, help="write the figures as JSON")
    ap.add_argument("--datagram-sizes", metavar="N,N", default="",
                    help="also run aioquic delivery with the server's packet size set to each (e.g. 1200,1452), "
                         "the first being the baseline (docs/fanout.md §6.2)")
    args = ap.parse_args(argv)
    frames = 500 if args.quick else args.frames
    stacks = args.stack or ["aioquic", "qh3"]
    from ingress import certificates

    load_start = os.getloadavg()[0]
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="wtpulsar-quic-") as tmp:
        cert = certificates.ensure(Path(tmp))
        for name in stacks:
            try:
                version = importlib.import_module(name).__version__
            except ImportError:
                print(f"{name}: not installed (pip install -e .); skipped", flush=True)
                continue
            results[f"{name} {version}"] = {d: run(name, frames, args.frame_bytes, cert.cert_path, cert.key_path, d)
                                            for d in ("delivery", "publish")}
    print(f"\nQUIC stack cost per {args.frame_bytes}-byte frame on one stream, {frames} frames, in memory "
          "(no sockets, no event loop); CPU of each side's own calls")
    print(f"{'stack':<16} {'direction':<9} {'sender us/frame':>16} {'receiver us/frame':>18} {'packets/frame':>14}")
    for stack, rows in results.items():
        for direction, r in rows.items():
            print(f"{stack:<16} {direction:<9} {r['sender_us']:>16.1f} {r['receiver_us']:>18.1f} {r['packets_per_frame']:>14.2f}")
    base = next((rows for stack, rows in results.items() if stack.startswith("aioquic")), None)
    other = next((rows for stack, rows in results.items() if stack.startswith("qh3")), None)
    if base and other:
        print(f"quic stack: qh3 server-side delivery {other['delivery']['sender_us']:.1f} us/frame vs aioquic "
              f"{base['delivery']['sender_us']:.1f} ({other['delivery']['sender_us'] / base['delivery']['sender_us']:.2f}x); "
              f"publish receive {other['publish']['receiver_us']:.1f} vs {base['publish']['receiver_us']:.1f} us/frame")
    sizes = [int(n) for n in args.datagram_sizes.split(",") if n.strip()]
    if sizes:
        with tempfile.TemporaryDirectory(prefix="wtpulsar-quic-") as tmp:
            cert = certificates.ensure(Path(tmp))
            by_size = {n: run("aioquic", frames, args.frame_bytes, cert.cert_path, cert.key_path, "delivery", n)
                       for n in sizes}
        baseline = by_size[sizes[0]]
        print(f"\naioquic delivery by the server's packet size ({args.frame_bytes}-byte frames; baseline {sizes[0]})")
        print(f"{'packet bytes':>12} {'sender us/frame':>16} {'receiver us/frame':>18} {'packets/frame':>14} {'vs baseline':>12}")
        for n, r in by_size.items():
            print(f"{n:>12} {r['sender_us']:>16.1f} {r['receiver_us']:>18.1f} {r['packets_per_frame']:>14.2f} "
                  f"{r['sender_us'] / baseline['sender_us']:>11.2f}x")
        results["aioquic by packet size"] = {str(n): r for n, r in by_size.items()}
    print(f"load average at the start: {load_start:.2f}, at the end: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
