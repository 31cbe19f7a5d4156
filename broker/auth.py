"""Token authentication: HS256 JWTs signed with a shared secret, as `pulsar tokens create` makes.

The role is the `sub` claim. Expired, malformed or wrongly signed tokens are refused (docs/pulsar-wire-protocol.md §3).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import jwt


class AuthenticationFailed(Exception):
    pass


MIN_SECRET_BYTES = 32  # HS256 keys shorter than the hash output are guessable (RFC 7518 §3.2)


def load_secret(spec: str) -> bytes:
    """`--auth-token-secret`: a file path, `file:PATH` (Pulsar's `file:///path` too), `data:;base64,B64`,
    or `env:VAR`; refused when shorter than MIN_SECRET_BYTES."""
    secret = _read_secret(spec)
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"token secret is {len(secret)} bytes; at least {MIN_SECRET_BYTES} are required")
    return secret


def _read_secret(spec: str) -> bytes:
    if spec.startswith("data:"):
        _, _, data = spec.partition(",")
        return base64.b64decode(data)
    if spec.startswith("env:"):
        value = os.environ.get(spec[4:])
        if not value:
            raise ValueError(f"environment variable {spec[4:]} named by --auth-token-secret is empty or unset")
        return value.encode()
    path = Path(spec[5:] if spec.startswith("file:") else spec)
    try:
        return path.read_bytes().strip() or _empty(path)
    except FileNotFoundError as exc:
        raise ValueError(f"token secret file {path} does not exist") from exc


def _empty(path: Path) -> bytes:
    raise ValueError(f"token secret file {path} is empty")


def create_token(secret: bytes, subject: str, expires_at: int | None = None) -> str:
    claims: dict[str, object] = {"sub": subject}
    if expires_at is not None:
        claims["exp"] = expires_at
    return jwt.encode(claims, secret, algorithm="HS256")


def authenticate(secret: bytes, method: str, data: bytes) -> str:
    """The role of a valid token; raises AuthenticationFailed saying why not."""
    if method != "token":
        raise AuthenticationFailed(f"authentication method {method or 'none'!r} is not accepted; use a token")
    token = data.decode("utf-8", errors="replace").strip()
    if token.startswith("Bearer "):
        token = token[7:]
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["sub"]})
    except jwt.ExpiredSignatureError as exc:
        raise AuthenticationFailed("token has expired") from exc
    except jwt.InvalidTokenError as exc:
        raise AuthenticationFailed(f"invalid token: {exc}") from exc
    return str(claims["sub"])
