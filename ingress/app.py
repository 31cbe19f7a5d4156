"""State shared by the servers of one ingress (``IngressApp``): configuration, token secret, the broker
publisher, metrics, per-address admission and the egress hub; and how a session request is checked.

The WebTransport and HTTP/WebSocket adapters import this module; it imports none of them (server.py
starts them), so the shared state can be read and tested on its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs

from ingress import certificates, tokens
from ingress.config import IngressConfig
from ingress.egress import EgressHub
from ingress.metrics import IngressMetrics
from ingress.names import BadName, check_namespace, check_rendition
from ingress.session import AddressBook, Publish
from ingress.tokens import Claims, Role, TokenError
from schemas.framing_codec import CloseCode, Kind

VIEW_KINDS_DEFAULT = (Kind.VIDEO, Kind.AUDIO, Kind.CHAT)


class Publisher(Protocol):
    """What sessions need from the broker side (BrokerPublisher; tests inject fakes)."""

    inflight: int

    def send(self, publish: Publish, received_at: float, done: Callable[[bool, str], None]) -> None:
        """Publish; ``done(ok, error)`` on the event loop once the broker answered."""

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


class IngressApp:
    """State shared by the WebTransport and HTTP servers of one ingress."""

    def __init__(self, config: IngressConfig, secret: bytes, publisher: Publisher, metrics: IngressMetrics,
                 client_factory: Callable[[], Any] | None = None) -> None:
        check_namespace(config.tenant, config.namespace)
        self.config = config
        self.secret = secret
        self.publisher = publisher
        self.metrics = metrics
        self.addresses = AddressBook(per_address=config.sessions_per_address, total=config.max_sessions)
        self.egress = EgressHub(config, metrics, client_factory)
        # (room, stream id) -> the publishing shell that last published it, compared by identity
        # (publishing.PublishingShell.end_streams)
        self.stream_owners: dict[tuple[str, str], object] = {}
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
