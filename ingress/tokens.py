"""Session tokens: HS256-signed JWTs carrying room, user, role and expiry.

Time is passed in (sans-I/O); pyjwt only checks the signature and shape, we check expiry ourselves
so tests and the session core share one clock.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import jwt

from ingress.names import BadName, check_name
from schemas.framing_codec import CloseCode

ALGORITHM = "HS256"
DEFAULT_TTL = 12 * 3600  # s
MIN_SECRET_BYTES = 32


class Role(StrEnum):
    PUBLISHER = "publisher"
    VIEWER = "viewer"


@dataclass(frozen=True, slots=True)
class Claims:
    room: str
    user: str
    role: Role
    expires_at: float  # s since epoch


class TokenError(Exception):
    """A token was refused; ``code`` is the session close code (schemas/framing_codec.py CloseCode)."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def issue(secret: bytes, room: str, user: str, role: Role | str, now: float, ttl: float = DEFAULT_TTL) -> str:
    check_name("room", room)
    check_name("user", user)
    if ttl <= 0:
        raise ValueError(f"ttl must be positive, got {ttl}")
    claims = {"room": room, "sub": user, "role": Role(role).value, "exp": int(now + ttl), "iat": int(now)}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify(secret: bytes, token: str | None, now: float) -> Claims:
    """Check signature, shape and expiry; raise TokenError with the close code to use."""
    if not token:
        raise TokenError(CloseCode.TOKEN_MISSING, "token missing: pass ?token=... (wtpulsar token)")
    try:
        raw = jwt.decode(token, secret, algorithms=[ALGORITHM],
                         options={"verify_exp": False, "verify_iat": False, "verify_nbf": False, "require": ["exp", "room", "sub", "role"]})
    except jwt.InvalidSignatureError:
        raise TokenError(CloseCode.TOKEN_INVALID,
                         "token signature does not verify: it was signed with another secret than this "
                         "ingress's; `wtpulsar token --url`, run where the pipeline runs, prints a page "
                         "link signed with the right one") from None
    except jwt.PyJWTError as exc:
        raise TokenError(CloseCode.TOKEN_INVALID, f"token malformed: {exc}") from None
    try:
        role = Role(raw["role"])
        room = check_name("room", raw["room"])
        user = check_name("user", raw["sub"])
        exp = float(raw["exp"])
    except (ValueError, BadName, TypeError) as exc:
        raise TokenError(CloseCode.TOKEN_INVALID, f"token claims invalid: {exc}") from None
    if exp <= now:
        raise TokenError(CloseCode.TOKEN_EXPIRED, f"token expired {now - exp:.0f} s ago")
    return Claims(room=room, user=user, role=role, expires_at=exp)


def check_secret(secret: bytes, source: str) -> bytes:
    """Refuse an HMAC key shorter than MIN_SECRET_BYTES (a short HS256 key can be brute-forced)."""
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"{source}: secret is {len(secret)} bytes, need at least {MIN_SECRET_BYTES}")
    return secret


SECRET_FILE = "ingress-secret"
# Where `wtpulsar up` keeps the ingress's state, relative to the folder it runs in (its --state
# default, plus the ingress's own subfolder); `wtpulsar ingress --state-dir` defaults to the same.
PIPELINE_SECRET = Path(".wtpulsar") / "ingress" / SECRET_FILE


def read_secret(path: Path) -> bytes:
    """Read an existing HMAC key; ValueError names the file when it is too short."""
    secret = path.read_bytes().strip()
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"{path}: secret is {len(secret)} bytes, need at least {MIN_SECRET_BYTES}")
    return secret


def find_pipeline_secret(start: Path, fallback_roots: tuple[Path, ...] = ()) -> tuple[Path | None, list[Path]]:
    """The secret file of the pipeline a user means: ``.wtpulsar/ingress/ingress-secret`` in ``start``
    or the nearest parent folder that has one (as git finds ``.git``), else in one of
    ``fallback_roots`` (the checkout, where ``make run`` runs). Returns (found or None, places looked)."""
    looked: list[Path] = []
    start = start.resolve()
    for folder in (start, *start.parents, *(r.resolve() for r in fallback_roots)):
        candidate = folder / PIPELINE_SECRET
        if candidate in looked:
            continue
        looked.append(candidate)
        if candidate.is_file():
            return candidate, looked
    return None, looked


def load_or_create_secret(path: Path) -> bytes:
    """Read the HMAC key from ``path``; create it (0600, random 32 bytes hex) on first use.

    Only the ingress creates its secret; ``wtpulsar token`` reads it (read_secret) and never makes a
    second one."""
    if path.exists():
        return read_secret(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32).encode("ascii")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secret + b"\n")
    return secret
