"""``wtpulsar ingress``, ``wtpulsar token`` and ``wtpulsar consume``. Heavy imports stay inside handlers."""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

DEFAULT_BROKER = "pulsar://127.0.0.1:6650"
TTL_RE = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
TTL_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> float:
    match = TTL_RE.match(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"ttl {text!r}: use a positive number with optional s/m/h/d, e.g. 12h")
    return float(match.group(1)) * TTL_UNITS[match.group(2)]


def _add_namespace(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tenant", default="public", help="Pulsar tenant (default public)")
    p.add_argument("--namespace", default="wtpulsar", help="Pulsar namespace (default wtpulsar)")


SECRET_ENV = "WTPULSAR_INGRESS_SECRET"


def _add_secret(p: argparse.ArgumentParser) -> None:
    p.add_argument("--secret", help=f"token HMAC key, at least 32 bytes; visible to every local user in `ps`, so "
                                    f"prefer --secret-file or ${SECRET_ENV} (default: read/create <state-dir>/ingress-secret)")
    p.add_argument("--secret-file", type=Path, help="file holding the token HMAC key (at least 32 bytes)")
    p.add_argument("--state-dir", type=Path, default=Path(".wtpulsar"),
                   help="where the generated secret and certificate live (default .wtpulsar)")


def _secret(args: argparse.Namespace) -> bytes:
    import os

    from ingress import tokens

    if args.secret:
        print(f"wtpulsar: --secret is visible in the process list; use --secret-file or ${SECRET_ENV}", file=sys.stderr)
        return tokens.check_secret(args.secret.encode("utf-8"), "--secret")
    if args.secret_file:
        try:
            return tokens.check_secret(args.secret_file.read_bytes().strip(), str(args.secret_file))
        except OSError as exc:
            raise ValueError(f"--secret-file {args.secret_file}: {exc.strerror}") from None
    if os.environ.get(SECRET_ENV):
        return tokens.check_secret(os.environ[SECRET_ENV].encode("utf-8"), f"${SECRET_ENV}")
    return tokens.load_or_create_secret(args.state_dir / "ingress-secret")


def _add_broker_token(p: argparse.ArgumentParser) -> None:
    p.add_argument("--broker-token", default=None, metavar="TOKEN|file:///PATH",
                   help="token for a broker that requires authentication (default: $PULSAR_TOKEN); "
                        "a file:// path keeps it out of the process list")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ingress", help="WebTransport/WebSocket ingress and viewer egress",
                       description="Serve HTTP/3 WebTransport at https://LISTEN/wt and HTTP (page, /health, "
                                   "/metrics, /cert-hash, /ws) at HTTP; publish frames to the input topics.")
    p.add_argument("--listen", default="0.0.0.0:4433", help="UDP HOST:PORT for WebTransport (default 0.0.0.0:4433)")
    p.add_argument("--http", default="127.0.0.1:8000", help="TCP HOST:PORT for HTTP (default 127.0.0.1:8000)")
    p.add_argument("--cert", type=Path, help="certificate PEM (default: generated ECDSA P-256, <= 14 days)")
    p.add_argument("--key", type=Path, help="private key PEM for --cert")
    p.add_argument("--broker-service-url", default=DEFAULT_BROKER, help=f"default {DEFAULT_BROKER}")
    _add_broker_token(p)
    _add_namespace(p)
    _add_secret(p)
    p.add_argument("--max-frame-bytes", type=int, help="largest media frame payload")
    p.add_argument("--max-bitrate", type=int, help="per-session media bitrate limit, bit/s")
    p.add_argument("--max-streams", type=int, help="open streams per session")
    p.add_argument("--max-inflight", type=int, help="frames per session awaiting a broker ack")
    p.add_argument("--idle-timeout", type=float, help="close a publishing session that sent nothing for this many "
                                                       "seconds (default 60; 0: never)")
    p.add_argument("--sessions-per-address", type=int, default=16, help="live sessions per peer IP")
    p.add_argument("--max-sessions", type=int, default=1000, help="live sessions in total")
    p.set_defaults(func=run_ingress_cli)

    t = sub.add_parser("token", help="print a session token (HMAC-signed: room, user, role, expiry)")
    t.add_argument("--room", required=True)
    t.add_argument("--user", required=True)
    t.add_argument("--role", required=True, choices=["publisher", "viewer"])
    t.add_argument("--ttl", type=parse_ttl, default=12 * 3600.0, help="lifetime: seconds or 30m/12h/7d (default 12h)")
    _add_secret(t)
    t.set_defaults(func=run_token_cli)

    c = sub.add_parser("consume", help="read a room's output: video to .mp4, chat to stdout, latency at exit")
    c.add_argument("room")
    c.add_argument("--kind", default="video", choices=["video", "audio", "chat", "screen", "file"])
    c.add_argument("--rendition", default="360p", help="for video/screen (default 360p)")
    c.add_argument("--out", help="file for video/screen/audio/file payloads (fMP4 for media)")
    c.add_argument("--broker-service-url", default=DEFAULT_BROKER, help=f"default {DEFAULT_BROKER}")
    _add_broker_token(c)
    c.add_argument("--duration", type=float, help="stop after this many seconds")
    c.add_argument("--count", type=int, help="stop after this many live messages")
    c.add_argument("--from-start", action="store_true", help="replay the whole topic, not just the join point")
    _add_namespace(c)
    c.set_defaults(func=run_consume_cli)


def run_token_cli(args: argparse.Namespace) -> int:
    from ingress import tokens
    from ingress.names import BadName

    try:
        print(tokens.issue(_secret(args), args.room, args.user, args.role, time.time(), args.ttl))
    except (BadName, ValueError) as exc:
        print(f"wtpulsar token: {exc}", file=sys.stderr)
        return 2
    return 0


def run_consume_cli(args: argparse.Namespace) -> int:
    from ingress import consume
    from ingress.names import BadName

    try:
        return consume.run(args)
    except (BadName, ValueError) as exc:
        print(f"wtpulsar consume: {exc}", file=sys.stderr)
        return 2


def config_from_args(args: argparse.Namespace):  # -> IngressConfig
    from dataclasses import replace

    from ingress import broker_auth
    from ingress.server import IngressConfig
    from ingress.session import Limits

    overrides = {k: v for k, v in {
        "max_frame_bytes": args.max_frame_bytes, "max_bitrate": args.max_bitrate,
        "max_open_streams": args.max_streams, "max_inflight": args.max_inflight,
        "idle_timeout": args.idle_timeout,
    }.items() if v is not None}
    return IngressConfig(
        listen=args.listen, http=args.http, cert=args.cert, key=args.key,
        broker_service_url=args.broker_service_url, tenant=args.tenant, namespace=args.namespace,
        broker_token=broker_auth.resolve(args.broker_token),
        secret=_secret(args), state_dir=args.state_dir, limits=replace(Limits(), **overrides),
        sessions_per_address=args.sessions_per_address, max_sessions=args.max_sessions,
    )


def run_ingress_cli(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from ingress.server import run_ingress

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"wtpulsar ingress: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(run_ingress(config))
    except KeyboardInterrupt:
        return 0
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"wtpulsar ingress: {exc}", file=sys.stderr)
        return 1
    return 0
