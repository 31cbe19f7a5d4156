"""Who may use the admin REST (SECURITY.md, "Broker admin REST").

With token authentication on, every `/admin/` request needs `Authorization: Bearer <token>` whose
role is a superuser (Pulsar's `superUserRoles`); `/metrics` stays open, as Pulsar's
`authenticateMetricsEndpoint=false` default leaves it, and so does `/admin/v2/brokers/health` (which
Pulsar reserves to superusers; here it answers only "ok"). With authentication off (the local
default) nobody is asked who they are, so the server at least makes sure the request comes from
a client that meant to talk to it: the Host header must name the address it listens on (a
DNS-rebinding page sends its own host name) and a browser request from another origin (Origin or
Sec-Fetch-Site say so) is refused, since a web page can send a simple POST anywhere.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from broker import auth

HEALTH = "/admin/v2/brokers/health"  # says only "ok": open, so supervisors and probes need no token
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
WILDCARDS = ("", "0.0.0.0", "::")


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    reason: str


def _split_host(value: str) -> tuple[str, int | None] | None:
    try:
        parsed = urllib.parse.urlsplit(f"//{value}")
        return (parsed.hostname or "").lower(), parsed.port
    except ValueError:
        return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def host_allowed(value: str | None, listen_host: str, port: int) -> bool:
    """Whether a Host header (or an Origin's host:port) names this server."""
    if not value:
        return False
    split = _split_host(value)
    if split is None:
        return False
    host, given_port = split
    if (given_port or 80) != port:
        return False
    listen = listen_host.lower().strip("[]")
    if listen in WILDCARDS:  # any of our addresses: an IP literal or localhost, never a DNS name
        return _is_ip(host) or host == "localhost"
    if listen in LOOPBACK_NAMES:
        return host in LOOPBACK_NAMES
    return host == listen


def check_request(
    headers: Mapping[str, str],
    path: str,
    listen_host: str,
    port: int,
    secret: bytes | None,
    superusers: frozenset[str],
) -> tuple[Refusal | None, str | None]:
    """(refusal or None, authenticated role or None) for one admin request."""
    if secret is not None:
        if not path.startswith("/admin/") or path == HEALTH:
            return None, None
        header = headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return Refusal(401, "Authentication required: send Authorization: Bearer <token>"), None
        try:
            role = auth.authenticate(secret, "token", token.strip().encode())
        except auth.AuthenticationFailed as exc:
            return Refusal(401, f"Authentication failed: {exc}"), None
        if role not in superusers:
            return Refusal(403, f"role {role!r} is not authorized for the admin API (superuser roles only)"), role
        return None, role
    host = headers.get("Host")
    if not host_allowed(host, listen_host, port):
        return Refusal(403, f"Host header {host!r} does not name this admin server ({listen_host}:{port}); refused (DNS rebinding guard)"), None
    origin = headers.get("Origin")
    if origin is not None:
        parsed = urllib.parse.urlsplit(origin) if origin != "null" else None
        if parsed is None or parsed.scheme != "http" or not host_allowed(parsed.netloc, listen_host, port):
            return Refusal(403, f"cross-origin request from {origin!r} refused"), None
    if headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return Refusal(403, f"cross-site browser request refused (Sec-Fetch-Site: {headers.get('Sec-Fetch-Site')})"), None
    return None, None
