"""The ingress process: configuration, shared state, admission, and start/stop of both servers.

Python API for ``wtpulsar up`` and tests::

    handle = await start_ingress(IngressConfig(broker_service_url=url, listen="127.0.0.1:0", http="127.0.0.1:0"))
    handle.wt_url, handle.http_url, handle.cert.sha256_hex, handle.issue_token(room, user, role)
    await handle.stop()

or ``await run_ingress(config)`` to serve until cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs

from ingress import certificates, tokens
from ingress.metrics import IngressMetrics
from ingress.names import BadName, check_namespace, check_rendition
from ingress.session import AddressBook, Limits, Publish
from ingress.tokens import Claims, Role, TokenError
from schemas.framing import CloseCode, Kind

log = logging.getLogger(__name__)

DEFAULT_STATE_DIR = Path(".wtpulsar") / "ingress"  # as `wtpulsar up` lays out its --state
VIEW_KINDS_DEFAULT = (Kind.VIDEO, Kind.AUDIO, Kind.CHAT)


@dataclass
class IngressConfig:
    listen: str = "127.0.0.1:4433"  # UDP, HTTP/3 WebTransport at /wt
    http: str = "127.0.0.1:8000"  # TCP: page, /health, /metrics, /cert-hash, /ws
    cert: Path | None = None
    key: Path | None = None
    broker_service_url: str = "pulsar://127.0.0.1:6650"
    broker_token: str | None = None  # for a broker that requires authentication (--broker-token, $PULSAR_TOKEN)
    tenant: str = "public"
    namespace: str = "wtpulsar"
    secret: bytes | None = None  # token HMAC key; None = <state_dir>/ingress-secret (created once)
    chat_signing_key: bytes | None = None  # signs chat-in messages for moderate (chat_signing); None: unsigned
    state_dir: Path = DEFAULT_STATE_DIR
    limits: Limits = field(default_factory=Limits)
    sessions_per_address: int = 16
    max_sessions: int = 1000
    stream_window: int = 512 * 1024  # bytes of read credit per stream beyond what was received (flow_gate)
    connection_window: int = 16 * 1024 * 1024  # initial QUIC max_data
    ack_delay: float = 0.005  # s; QUIC ACK coalescing on the ingress side (webtransport_server)
    viewer_queue_bytes: int = 2 * 1024 * 1024  # unsent media per viewer stream before skipping to a keyframe
    page: Path | None = None  # a file served at / instead of the packaged page (ingress/page.py)
    broker_connect_timeout: float = 30.0
    # s without a packet from a WebTransport peer (QUIC idle timeout; keep-alive PINGs at a third of it)
    # or a WebSocket pong before its session ends and its streams get an end of stream ("timeout")
    session_timeout: float = 20.0
    # s: a room topic whose newest media message is older than this has no stream to join (its publisher
    # or ingress died without an end of stream); joiners wait for the next stream instead (egress.JoinPoint)
    join_stale_after: float = 10.0
    # find a late joiner's start from a room topic's end (ingress/join_from_end.py) rather than reading the
    # topic from its start; join_window: messages first read back from the newest one
    join_from_end: bool = True
    join_window: int = 256
    # one of several worker processes on the same ports (`wtpulsar ingress --workers N`, ingress/workers.py)
    reuse_port: bool = False
    worker: int | None = None  # its number, shown by /health


class Publisher(Protocol):
    """What sessions need from the broker side (BrokerPublisher; tests inject fakes)."""

    inflight: int

    def send(self, publish: Publish, received_at: float, done: Any) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class SessionRequest:
    claims: Claims
    mode: Role  # publish or view
    rendition: str
    kinds: tuple[Kind, ...]


class SessionRefused(Exception):
    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def split_hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class IngressApp:
    """State shared by the WebTransport and HTTP servers of one ingress."""

    def __init__(self, config: IngressConfig, secret: bytes, publisher: Publisher, metrics: IngressMetrics,
                 client_factory: Any = None) -> None:
        from ingress.egress import EgressHub

        check_namespace(config.tenant, config.namespace)
        self.config = config
        self.secret = secret
        self.publisher = publisher
        self.metrics = metrics
        self.addresses = AddressBook(per_address=config.sessions_per_address, total=config.max_sessions)
        self.egress = EgressHub(self, client_factory)
        # (room, stream id) -> the publishing shell that last published it (PublishingShell.end_streams)
        self.stream_owners: dict[tuple[str, str], Any] = {}
        self.cert: certificates.CertificateInfo | None = None

    def authenticate(self, query_string: str, address: str) -> SessionRequest:
        """Check token and parameters; raise SessionRefused with the close code to send."""
        query = {k: v[-1] for k, v in parse_qs(query_string, keep_blank_values=True).items()}
        try:
            claims = tokens.verify(self.secret, query.get("token"), time.time())
        except TokenError as exc:
            raise SessionRefused(exc.code, exc.reason) from None
        # /wt is the publishing endpoint; viewers say mode=view. A viewer token without it
        # is a wrong-role refusal, not silently a viewer session.
        mode_text = query.get("mode") or "publish"
        mode_text = {"publish": "publisher", "view": "viewer"}.get(mode_text, mode_text)
        try:
            mode = Role(mode_text)
        except ValueError:
            raise SessionRefused(CloseCode.BAD_REQUEST, f"mode {mode_text!r} is not publish or view") from None
        if mode == Role.PUBLISHER and claims.role != Role.PUBLISHER:
            raise SessionRefused(CloseCode.WRONG_ROLE,
                                 f"token role {claims.role.value} may not publish (needs publisher)")
        try:
            rendition = check_rendition(query.get("rendition") or "360p")
        except BadName as exc:
            raise SessionRefused(CloseCode.BAD_NAME, str(exc)) from None
        kinds: tuple[Kind, ...] = VIEW_KINDS_DEFAULT
        if query.get("kinds"):
            try:
                kinds = tuple(Kind[k.strip().upper()] for k in query["kinds"].split(",") if k.strip())
            except KeyError as exc:
                raise SessionRefused(CloseCode.BAD_REQUEST, f"unknown kind {exc.args[0].lower()!r}") from None
        return SessionRequest(claims, mode, rendition, kinds)

    def admit(self, address: str) -> None:
        refusal = self.addresses.admit(address)
        if refusal is not None:
            raise SessionRefused(*refusal)

    def refused(self, code: CloseCode) -> None:
        self.metrics.sessions_refused.labels(code.name.lower()).inc()


@dataclass
class IngressHandle:
    app: IngressApp
    wt_host: str
    wt_port: int
    http_host: str
    http_port: int
    cert: certificates.CertificateInfo
    _closers: list[Any]

    @property
    def wt_url(self) -> str:
        host = "127.0.0.1" if self.wt_host in ("0.0.0.0", "", "::") else self.wt_host
        return f"https://{host}:{self.wt_port}/wt"

    @property
    def http_url(self) -> str:
        host = "127.0.0.1" if self.http_host in ("0.0.0.0", "", "::") else self.http_host
        return f"http://{host}:{self.http_port}"

    def issue_token(self, room: str, user: str, role: Role | str, ttl: float = tokens.DEFAULT_TTL) -> str:
        return tokens.issue(self.app.secret, room, user, role, time.time(), ttl)

    async def stop(self) -> None:
        closers, self._closers = self._closers, []
        for close in reversed(closers):
            try:
                result = close()
                if asyncio.iscoroutine(result):
                    await result
            except Exception as exc:  # keep stopping the rest
                log.warning("ingress stop: %s", exc)


def resolve_secret(config: IngressConfig) -> bytes:
    if config.secret is not None:
        return config.secret
    return tokens.load_or_create_secret(config.state_dir / "ingress-secret")


def resolve_certificate(config: IngressConfig) -> certificates.CertificateInfo:
    if config.cert or config.key:
        if not (config.cert and config.key):
            raise ValueError("--cert and --key go together")
        return certificates.describe(config.cert, config.key)
    return certificates.ensure(config.state_dir / "certs")


async def start_ingress(config: IngressConfig, publisher: Publisher | None = None,
                        client_factory: Any = None) -> IngressHandle:
    """Start the WebTransport and HTTP servers; return once both listen and the producers exist."""
    from ingress.http_server import start_http
    from ingress.publisher import BrokerPublisher
    from ingress.webtransport_server import start_webtransport

    metrics = IngressMetrics()
    if publisher is None:
        publisher = BrokerPublisher(config.broker_service_url, config.tenant, config.namespace, metrics,
                                    connect_timeout=config.broker_connect_timeout, token=config.broker_token)
    app = IngressApp(config, resolve_secret(config), publisher, metrics, client_factory)
    app.cert = resolve_certificate(config)
    closers: list[Any] = []
    try:
        await publisher.start()
        closers.append(publisher.close)
        closers.append(app.egress.close)
        wt_host, wt_port, wt_close = await start_webtransport(app, *split_hostport(config.listen))
        closers.append(wt_close)
        http_host, http_port, http_close = await start_http(app, *split_hostport(config.http), wt_port=wt_port)
        closers.append(http_close)
    except BaseException:
        await IngressHandle(app, "", 0, "", 0, app.cert, closers).stop()
        raise
    return IngressHandle(app, wt_host, wt_port, http_host, http_port, app.cert, closers)


async def run_ingress(config: IngressConfig) -> None:
    """Serve until cancelled (Ctrl-C in the CLI)."""
    handle = await start_ingress(config)
    print(f"ingress: WebTransport {handle.wt_url}  HTTP {handle.http_url}  "
          f"cert sha-256 {handle.cert.sha256_hex}", flush=True)
    if config.chat_signing_key is None:
        log.warning("no chat signing key (--chat-signing-key or $WTPULSAR_CHAT_SIGNING_KEY): chat is written "
                    "unsigned, and a moderate function that has the key dead-letters it")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)  # close sessions with 4000 instead of dying mid-write
        except (NotImplementedError, RuntimeError):
            pass
    try:
        await stop.wait()
    finally:
        await handle.stop()
        print("ingress: stopped", flush=True)
