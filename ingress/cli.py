"""``wtpulsar ingress`` and ``wtpulsar token``. Heavy imports stay inside handlers."""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ingress.config import IngressConfig
    from ingress.hls_feed import HlsSettings

DEFAULT_BROKER = "pulsar://127.0.0.1:6650"
DEFAULT_INGRESS_STATE = Path(".wtpulsar") / "ingress"  # as `wtpulsar up` lays out its --state
DEFAULT_HTTP = "127.0.0.1:8000"
REPO = Path(__file__).resolve().parent.parent
TTL_RE = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
TTL_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def datagram_size(text: str) -> int:
    """--max-datagram-size: a QUIC UDP payload size, 1200 to 65527 bytes (RFC 9000 §14, §18.2; docs/fanout.md §6.2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number of bytes from 1200 to 65527") from None
    if not 1200 <= value <= 65527:
        raise argparse.ArgumentTypeError(f"{value}: QUIC needs at least 1200 bytes per datagram and a UDP payload "
                                         "holds at most 65527")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number of at least 1")
    return value


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
    p.add_argument("--state-dir", type=Path, default=DEFAULT_INGRESS_STATE,
                   help=f"where the generated secret and certificate live (default {DEFAULT_INGRESS_STATE}, "
                        "where `wtpulsar up` keeps them)")


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
    return tokens.load_or_create_secret(args.state_dir / tokens.SECRET_FILE)


class NoSecret(Exception):
    """`wtpulsar token` found no secret to sign with; the message says where it looked."""


def token_secret(args: argparse.Namespace, cwd: Path, repo: Path = REPO) -> tuple[bytes, str]:
    """The key `wtpulsar token` signs with and where it came from. Never creates one: a token signed
    with a key the running ingress does not have is refused by it (4002), so a missing secret is an
    error that says where the pipeline keeps its secret."""
    import os

    from ingress import tokens

    if args.secret:
        return args.secret.encode("utf-8"), "--secret"
    if args.secret_file:
        try:
            return tokens.read_secret(args.secret_file), str(args.secret_file)
        except OSError as exc:
            raise NoSecret(f"cannot read --secret-file {args.secret_file}: {exc.strerror or exc}") from None
    if os.environ.get(SECRET_ENV):
        return tokens.check_secret(os.environ[SECRET_ENV].encode("utf-8"), f"${SECRET_ENV}"), f"${SECRET_ENV}"
    if args.state_dir is not None:
        path = args.state_dir / tokens.SECRET_FILE
        if not path.is_file():
            raise NoSecret(f"no secret at {path}: --state-dir must be the ingress's state folder (for `wtpulsar "
                           f"up --state S` that is S/ingress), and the ingress must have started once to create it")
        return tokens.read_secret(path), str(path)
    found, looked = tokens.find_pipeline_secret(cwd, (repo,))
    if found is None:
        raise NoSecret(
            f"no token secret found: the pipeline keeps it in {tokens.PIPELINE_SECRET} under the folder "
            f"`wtpulsar up` (make run) runs in, and the ingress creates it when it first starts. Looked in "
            f"{', '.join(str(p) for p in looked[:3])}{', …' if len(looked) > 3 else ''}. Start the pipeline "
            "first, run this where it runs, or pass --state-dir (the ingress's state folder) or --secret-file")
    return tokens.read_secret(found), str(found)


def page_url(http: str, room: str, token: str, role: str) -> str:
    """The page link for a token, as `wtpulsar up` prints it: viewers get ``&mode=view``."""
    from urllib.parse import quote

    host = http.replace("0.0.0.0", "127.0.0.1", 1) if http.startswith("0.0.0.0:") else http
    url = f"http://{host}/?room={quote(room)}&token={token}"
    return url + "&mode=view" if role == "viewer" else url


def _add_broker_token(p: argparse.ArgumentParser) -> None:
    p.add_argument("--broker-token", default=None, metavar="TOKEN|file:///PATH",
                   help="token for a broker that requires authentication (default: $PULSAR_TOKEN); "
                        "a file:// path keeps it out of the process list")


def _add_chat_signing_key(p: argparse.ArgumentParser) -> None:
    p.add_argument("--chat-signing-key", default=None, metavar="KEY|file:///PATH",
                   help="key (at least 32 bytes) to sign each chat message with, the one the moderate function "
                        "has as its secret chatSigningKey (default: $WTPULSAR_CHAT_SIGNING_KEY; none: chat goes "
                        "unsigned); a file:// path keeps it out of the process list")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("ingress", help="WebTransport/WebSocket ingress and viewer egress",
                       description="Serve HTTP/3 WebTransport at https://LISTEN/wt and HTTP (page, /health, "
                                   "/metrics, /cert-hash, /ws) at HTTP; publish frames to the input topics.")
    p.add_argument("--listen", default="127.0.0.1:4433",
                   help="UDP HOST:PORT for WebTransport (default 127.0.0.1:4433; 0.0.0.0:4433 opens it to the network)")
    p.add_argument("--http", default="127.0.0.1:8000", help="TCP HOST:PORT for HTTP (default 127.0.0.1:8000)")
    p.add_argument("--cert", type=Path, help="certificate PEM (default: generated ECDSA P-256, <= 14 days)")
    p.add_argument("--key", type=Path, help="private key PEM for --cert")
    p.add_argument("--broker-service-url", default=DEFAULT_BROKER, help=f"default {DEFAULT_BROKER}")
    _add_broker_token(p)
    _add_namespace(p)
    _add_secret(p)
    _add_chat_signing_key(p)
    p.add_argument("--max-frame-bytes", type=int, help="largest media frame payload")
    p.add_argument("--max-bitrate", type=int, help="per-session media bitrate limit, bit/s")
    p.add_argument("--max-streams", type=int, help="open streams per session")
    p.add_argument("--max-inflight", type=int, help="frames per session awaiting a broker ack")
    p.add_argument("--idle-timeout", type=float, help="close a publishing session that sent nothing for this many "
                                                       "seconds (default 60; 0: never)")
    p.add_argument("--sessions-per-address", type=int, default=16, help="live sessions per peer IP")
    p.add_argument("--max-sessions", type=int, default=1000, help="live sessions in total")
    p.add_argument("--workers", type=positive_int, default=1,
                   help="ingress processes sharing the UDP and HTTP ports (SO_REUSEPORT), e.g. one per core; "
                        "limits and /metrics are per worker (default 1)")
    p.add_argument("--quic-stack", choices=["aioquic", "qh3"], default=None,
                   help="QUIC stack of the WebTransport side (default qh3, or $WTPULSAR_QUIC_STACK)")
    p.add_argument("--max-datagram-size", type=datagram_size, default=None, metavar="BYTES",
                   help="UDP payload per QUIC packet sent, 1200-65527 (default: the stack's, 1200 on aioquic); "
                        "raise it only where every path to the viewers carries it (docs/fanout.md §6.2)")
    p.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # set by --workers for each worker
    p.add_argument("--worker-id", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--hls-window", default="600", metavar="SECONDS|event",
                   help="DVR window of the HLS media playlists: the last SECONDS (default 600), or `event`: an "
                        "EVENT playlist from the oldest segment the topic retains (?start= reaches that far "
                        "either way)")
    p.add_argument("--hls-renditions", default="720p,360p", help="video renditions served as HLS (default 720p,360p)")
    p.add_argument("--hls-part-target", type=float, default=None, help="LL-HLS part target, seconds (default 0.334)")
    p.set_defaults(func=run_ingress_cli)

    t = sub.add_parser(
        "token", help="print a session token (HMAC-signed: room, user, role, expiry), or with --url the page link",
        description="Sign a session token with the secret of the running pipeline: the ingress's "
                    ".wtpulsar/ingress/ingress-secret, looked for in this folder and its parents, then in the "
                    "checkout where `make run` runs. It never creates a secret (the ingress does, on its first start).")
    t.add_argument("--room", required=True)
    t.add_argument("--user", required=True)
    t.add_argument("--role", required=True, choices=["publisher", "viewer"])
    t.add_argument("--ttl", type=parse_ttl, default=12 * 3600.0, help="lifetime: seconds or 30m/12h/7d (default 12h)")
    t.add_argument("--url", action="store_true",
                   help="print the whole page URL (publisher page, or the viewer page for --role viewer)")
    t.add_argument("--http", default=DEFAULT_HTTP, metavar="HOST:PORT",
                   help=f"the ingress's --http address, for --url (default {DEFAULT_HTTP})")
    t.add_argument("--secret", help="token HMAC key (overrides the pipeline's secret)")
    t.add_argument("--secret-file", type=Path, help="file holding the token HMAC key")
    t.add_argument("--state-dir", type=Path, default=None,
                   help="the ingress's state folder holding ingress-secret (for `wtpulsar up --state S`: S/ingress)")
    t.set_defaults(func=run_token_cli)


def run_token_cli(args: argparse.Namespace) -> int:
    from ingress import tokens
    from ingress.names import BadName, check_name

    try:
        check_name("room", args.room)
        check_name("user", args.user)
        secret, source = token_secret(args, Path.cwd())
        token = tokens.issue(secret, args.room, args.user, args.role, time.time(), args.ttl)
    except NoSecret as exc:
        print(f"wtpulsar token: {exc}", file=sys.stderr)
        return 2
    except (BadName, ValueError) as exc:
        print(f"wtpulsar token: {exc}", file=sys.stderr)
        return 2
    print(page_url(args.http, args.room, token, args.role) if args.url else token)
    print(f"wtpulsar token: signed with the secret in {source}", file=sys.stderr)
    return 0


def hls_settings(args: argparse.Namespace) -> HlsSettings:
    from dataclasses import replace

    from ingress.hls_feed import HlsSettings
    from ingress.names import check_rendition

    config = HlsSettings().config
    if args.hls_window != "event":
        try:
            window = float(args.hls_window)
        except ValueError:
            raise ValueError(f"--hls-window {args.hls_window!r}: use `event` or a number of seconds") from None
        config = replace(config, window=window)
    if args.hls_part_target is not None:
        config = replace(config, part_target=args.hls_part_target)
    renditions = tuple(check_rendition(r.strip()) for r in args.hls_renditions.split(",") if r.strip())
    return HlsSettings(config=config, renditions=renditions)


def config_from_args(args: argparse.Namespace) -> IngressConfig:
    from dataclasses import replace

    from ingress import broker_auth, chat_signing
    from ingress.config import IngressConfig
    from ingress.session import Limits

    overrides = {k: v for k, v in {
        "max_frame_bytes": args.max_frame_bytes, "max_bitrate": args.max_bitrate,
        "max_open_streams": args.max_streams, "max_inflight": args.max_inflight,
        "idle_timeout": args.idle_timeout,
    }.items() if v is not None}
    stack = {"quic_stack": args.quic_stack} if getattr(args, "quic_stack", None) else {}
    return IngressConfig(
        **stack,
        hls=hls_settings(args),
        listen=args.listen, http=args.http, cert=args.cert, key=args.key,
        broker_service_url=args.broker_service_url, tenant=args.tenant, namespace=args.namespace,
        broker_token=broker_auth.resolve(args.broker_token),
        chat_signing_key=chat_signing.resolve_key(args.chat_signing_key),
        secret=_secret(args), state_dir=args.state_dir, limits=replace(Limits(), **overrides),
        sessions_per_address=args.sessions_per_address, max_sessions=args.max_sessions,
        reuse_port=args.reuse_port, worker=args.worker_id,
        max_datagram_size=getattr(args, "max_datagram_size", None),
    )


def run_ingress_cli(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from ingress.server import run_ingress

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # aioquic logs every connection's handshake steps at INFO ("quic" logger), and a retransmitted
    # handshake packet as "Duplicate CRYPTO data" each time: per-connection noise that buried our own
    # lines. Its warnings and errors still show.
    logging.getLogger("quic").setLevel(logging.WARNING)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"wtpulsar ingress: {exc}", file=sys.stderr)
        return 2
    if args.workers > 1:
        from ingress import workers
        from ingress.server import resolve_certificate, resolve_secret

        try:
            cert = resolve_certificate(config)  # created once here, so every worker serves the same one
            return workers.run(args, resolve_secret(config), cert.cert_path, cert.key_path)
        except (ValueError, RuntimeError, OSError) as exc:
            print(f"wtpulsar ingress: {exc}", file=sys.stderr)
            return 1
    try:
        asyncio.run(run_ingress(config))
    except KeyboardInterrupt:
        return 0
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"wtpulsar ingress: {exc}", file=sys.stderr)
        return 1
    return 0
