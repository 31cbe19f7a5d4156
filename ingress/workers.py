"""`wtpulsar ingress --workers N`: N ingress processes sharing the WebTransport UDP port and the HTTP port.

One Python process uses one core at most (the event loop and the GIL). Each worker here is a whole
ingress (``wtpulsar ingress`` with ``--reuse-port``) with its own Pulsar client, its own egress feeds
and its own limits; they bind the same ports with SO_REUSEPORT, and Linux spreads new connections
over them by a hash of the 4-tuple (socket(7)). A QUIC connection's packets keep their 4-tuple, so
they all reach the worker that holds the connection; a room's viewers land on any worker, and each
worker reads the room topics its viewers need from Pulsar (the topic is the shared state).

Caveats that follow from the kernel's hash, not from us: a client whose address changes mid-connection
(NAT rebinding, QUIC connection migration) may be hashed to another worker, which does not know the
connection and drops its packets; and when a worker exits, the group shrinks and connections are
rehashed. The supervisor therefore stops all workers when one dies (exit 1), as `wtpulsar up` does
with its parts. Per-worker limits (``--max-sessions``, ``--sessions-per-address``) and /metrics are
each worker's own; /health names the worker (``worker``, ``pid``) that answered.

The supervisor resolves the token secret and the certificate first, so every worker signs and serves
with the same ones, starts worker 0 (which picks the ports when they are 0), then the others on the
ports it got.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

STOP_GRACE_S = 10.0
READY_TIMEOUT_S = 60.0


def worker_argv(args: argparse.Namespace, listen: str, http: str, cert: Path, key: Path, worker: int) -> list[str]:
    """The `wtpulsar ingress` command line of one worker (the secret goes by file or environment)."""
    argv = ["ingress", "--listen", listen, "--http", http, "--cert", str(cert), "--key", str(key),
            "--broker-service-url", args.broker_service_url, "--tenant", args.tenant, "--namespace", args.namespace,
            "--state-dir", str(args.state_dir), "--sessions-per-address", str(args.sessions_per_address),
            "--max-sessions", str(args.max_sessions), "--reuse-port", "--worker-id", str(worker)]
    if args.broker_token:
        argv += ["--broker-token", args.broker_token]
    if getattr(args, "quic_stack", None):
        argv += ["--quic-stack", args.quic_stack]
    if getattr(args, "max_datagram_size", None):
        argv += ["--max-datagram-size", str(args.max_datagram_size)]
    if args.secret_file:
        argv += ["--secret-file", str(args.secret_file)]
    for flag, value in (("--max-frame-bytes", args.max_frame_bytes), ("--max-bitrate", args.max_bitrate),
                        ("--max-streams", args.max_streams), ("--max-inflight", args.max_inflight),
                        ("--idle-timeout", args.idle_timeout)):
        if value is not None:
            argv += [flag, str(value)]
    return argv


def _ports_from(line: str) -> tuple[int, int]:
    """UDP and TCP ports from the ingress's start line ("ingress: WebTransport https://h:p/wt  HTTP http://h:p ...")."""
    words = line.split()
    try:
        wt = urlsplit(words[words.index("WebTransport") + 1]).port
        http = urlsplit(words[words.index("HTTP") + 1]).port
    except (ValueError, IndexError):
        wt = http = None
    if not wt or not http:
        raise RuntimeError(f"worker 0 did not say where it listens: {line.strip()!r}")
    return wt, http


def _die_with_parent() -> None:
    """In a worker before it runs: SIGTERM when the supervisor dies, even by SIGKILL (Linux prctl(2),
    PR_SET_PDEATHSIG), so no worker is left holding the ports. Elsewhere: nothing."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _copy(stream: IO[str]) -> None:
    for line in stream:
        sys.stdout.write(line)
        sys.stdout.flush()


def run(args: argparse.Namespace, secret: bytes, cert: Path, key: Path) -> int:
    """Start ``args.workers`` workers and supervise them until a signal or until one of them exits."""
    from ingress.config import split_hostport

    env = dict(os.environ)
    if not args.secret_file:
        env["WTPULSAR_INGRESS_SECRET"] = secret.decode("utf-8")  # not on command lines (`ps`)
    command = [sys.executable, "-m", "wtpulsar.cli"]
    listen_host, _ = split_hostport(args.listen)
    http_host, _ = split_hostport(args.http)
    procs: list[subprocess.Popen[str]] = []
    stopping = threading.Event()

    def stop(*_: object) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        def start(listen: str, http: str, worker: int) -> None:
            procs.append(subprocess.Popen(command + worker_argv(args, listen, http, cert, key, worker), env=env,
                                          stdout=subprocess.PIPE, text=True, preexec_fn=_die_with_parent))

        def ready(worker: int) -> str:
            """The worker's start line, once it listens (what it printed before is passed on)."""
            stream = procs[worker].stdout
            assert stream is not None
            deadline = time.monotonic() + READY_TIMEOUT_S
            while True:
                line = stream.readline()
                if not line or time.monotonic() > deadline or stopping.is_set():
                    raise RuntimeError(f"worker {worker} did not start (status {procs[worker].poll()})")
                if line.startswith("ingress: WebTransport"):
                    threading.Thread(target=_copy, args=(stream,), daemon=True).start()
                    return line
                sys.stdout.write(line)

        start(args.listen, args.http, 0)
        line = ready(0)
        wt_port, http_port = _ports_from(line)
        listen, http = f"{listen_host}:{wt_port}", f"{http_host}:{http_port}"
        for worker in range(1, args.workers):
            start(listen, http, worker)
        for worker in range(1, args.workers):
            ready(worker)  # every worker listens before the supervisor says the ingress is up
        sys.stdout.write(line.rstrip("\n") + f"  ({args.workers} workers)\n")
        sys.stdout.flush()
        while not stopping.is_set():
            dead = [(n, p.returncode) for n, p in enumerate(procs) if p.poll() is not None]
            if dead:
                print(f"wtpulsar ingress: worker {dead[0][0]} exited with status {dead[0][1]}; stopping the others",
                      file=sys.stderr)
                return 1
            stopping.wait(0.2)
        return 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print("ingress: stopped", flush=True)
