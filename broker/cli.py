"""`wtpulsar broker`: run the embedded single-node Pulsar-protocol broker in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path


def _host_port(text: str, default_port: int) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host:
        return text, default_port
    try:
        return host.strip("[]"), int(port)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}") from exc


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "broker",
        help="run the embedded Pulsar-protocol broker",
        description=(
            "Run wtpulsar's single-node broker. It speaks Pulsar's binary protocol, so the official "
            "pulsar-client (and pulsar-admin for the REST paths it supports) talk to it unchanged. "
            "Entries and subscription cursors are stored under --data and survive kill -9. "
            "Logs one 'broker ready' line when it accepts connections; SIGTERM/SIGINT stop it cleanly."
        ),
    )
    p.add_argument("--listen", default="127.0.0.1:6650", metavar="HOST:PORT", help="binary protocol address (default %(default)s; port 0 picks a free one)")
    p.add_argument("--data", default="data/broker", metavar="DIR", help="data directory (default %(default)s)")
    p.add_argument("--http", default=None, metavar="HOST:PORT", help="admin REST (/admin/v2/...) and Prometheus /metrics address; off unless given")
    p.add_argument("--advertised-host", default=None, help="host name returned in lookups (default: the --listen host)")
    p.add_argument("--max-message-size", type=int, default=5 * 1024 * 1024, metavar="BYTES", help="largest message accepted, advertised to clients (default %(default)s)")
    p.add_argument("--no-deduplication", action="store_true", help="turn broker-side producer de-duplication off by default (namespaces can still enable it)")
    p.add_argument("--ttl-seconds", type=int, default=0, help="expire (acknowledge) unconsumed messages after this age; 0 = never (default)")
    p.add_argument("--retention-minutes", type=int, default=0, help="keep acknowledged messages this long (default 0: delete once every subscription acked)")
    p.add_argument("--retention-mb", type=int, default=0, help="keep acknowledged messages up to this size per topic (default 0)")
    p.add_argument("--cache-mb", type=int, default=16, help="memory for recently written entries, all topics together (default %(default)s)")
    p.add_argument("--ledger-max-mb", type=int, default=64, help="start a new ledger file after this size; whole acked ledgers are deleted (default %(default)s)")
    p.add_argument(
        "--sync",
        choices=("fsync", "write"),
        default="write",
        help="write (default): a receipt goes out once the entry is written to the OS, so everything acknowledged "
        "survives kill -9 of the broker (not a power cut); fsync: entries are fdatasync'ed (group commit) before "
        "their receipt, surviving power loss too, at the cost of the disk's sync latency",
    )
    p.add_argument("--auth-token-secret", default=None, metavar="SPEC", help="require HS256 JWT tokens signed with this secret: a file path, file:PATH, data:;base64,B64 or env:VAR")
    p.add_argument("--superuser-roles", default="", metavar="ROLE[,ROLE]", help="roles that may use the admin REST and every topic (Pulsar's superUserRoles); needs --auth-token-secret")
    p.add_argument("--max-connections", type=int, default=1024, help="open client connections at most; more are closed at accept (default %(default)s)")
    p.add_argument("--max-pre-connect-bytes", type=int, default=64 * 1024, metavar="BYTES", help="bytes a connection may send before CONNECT (default %(default)s)")
    p.add_argument("--handshake-timeout", type=float, default=10.0, metavar="SECONDS", help="close connections that have not sent CONNECT after this long (default %(default)s)")
    p.add_argument("--log-level", default="INFO", help="logging level (default %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from broker.auth import load_secret
    from broker.config import BrokerConfig
    from broker.server import serve_forever

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    host, port = _host_port(args.listen, 6650)
    http_host, http_port = _host_port(args.http, 8080) if args.http else (None, None)
    secret = None
    if args.auth_token_secret:
        try:
            secret = load_secret(args.auth_token_secret)
        except ValueError as exc:
            print(f"wtpulsar broker: --auth-token-secret: {exc}", file=sys.stderr)
            return 2
    superusers = tuple(r.strip() for r in args.superuser_roles.split(",") if r.strip())
    if superusers and secret is None:
        print("wtpulsar broker: --superuser-roles needs --auth-token-secret (without it nobody is authenticated)", file=sys.stderr)
        return 2
    for flag, value in (("--max-connections", args.max_connections), ("--max-pre-connect-bytes", args.max_pre_connect_bytes), ("--handshake-timeout", args.handshake_timeout)):
        if value <= 0:
            print(f"wtpulsar broker: {flag} must be positive, got {value}", file=sys.stderr)
            return 2
    config = BrokerConfig(
        data_dir=Path(args.data),
        host=host,
        port=port,
        http_host=http_host,
        http_port=http_port,
        advertised_host=args.advertised_host,
        max_message_size=args.max_message_size,
        deduplication=not args.no_deduplication,
        ttl_seconds=args.ttl_seconds,
        retention_minutes=args.retention_minutes,
        retention_mb=args.retention_mb,
        ledger_max_bytes=args.ledger_max_mb * 1024 * 1024,
        cache_bytes=args.cache_mb * 1024 * 1024,
        auth_token_secret=secret,
        superuser_roles=superusers,
        max_connections=args.max_connections,
        max_pre_connect_bytes=args.max_pre_connect_bytes,
        handshake_timeout=args.handshake_timeout,
        sync_mode=args.sync,
    )
    try:
        asyncio.run(serve_forever(config))
    except OSError as exc:
        print(f"wtpulsar broker: cannot listen on {args.listen}: {exc}", file=sys.stderr)
        return 1
    return 0
