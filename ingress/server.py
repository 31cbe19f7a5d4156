"""The ingress process: starts and stops its two servers around the shared state (app.IngressApp).

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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ingress import certificates, tokens
from ingress.app import IngressApp, Publisher
from ingress.config import IngressConfig, split_hostport
from ingress.http_server import start_http
from ingress.metrics import IngressMetrics
from ingress.publisher import BrokerPublisher
from ingress.tokens import Role
from ingress.webtransport_server import start_webtransport

log = logging.getLogger(__name__)


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
                        client_factory: Callable[[], Any] | None = None) -> IngressHandle:
    """Start the WebTransport and HTTP servers; return once both listen and the producers exist."""
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
