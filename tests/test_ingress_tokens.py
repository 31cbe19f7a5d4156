from __future__ import annotations

import os
import stat

import jwt
import pytest

from ingress import tokens
from ingress.names import BadName
from ingress.tokens import Role, TokenError
from schemas.framing_codec import CloseCode

SECRET = b"k" * 64
NOW = 1_800_000_000.0


def test_issue_and_verify_round_trip() -> None:
    tok = tokens.issue(SECRET, "room-1", "alice", "publisher", NOW, ttl=60)
    claims = tokens.verify(SECRET, tok, NOW + 59)
    assert (claims.room, claims.user, claims.role, claims.expires_at) == ("room-1", "alice", Role.PUBLISHER, NOW + 60)


@pytest.mark.parametrize("token, now, code, words", [
    (None, NOW, CloseCode.TOKEN_MISSING, "missing"),
    ("", NOW, CloseCode.TOKEN_MISSING, "missing"),
    ("garbage", NOW, CloseCode.TOKEN_INVALID, "malformed"),
    (tokens.issue(b"other" * 8, "r", "u", "viewer", NOW), NOW, CloseCode.TOKEN_INVALID, "signature"),
    (tokens.issue(SECRET, "r", "u", "viewer", NOW, ttl=10), NOW + 10, CloseCode.TOKEN_EXPIRED, "expired"),
    (jwt.encode({"room": "../x", "sub": "u", "role": "viewer", "exp": NOW + 9}, SECRET, "HS256"), NOW,
     CloseCode.TOKEN_INVALID, "room"),
    (jwt.encode({"room": "r", "sub": "u", "role": "admin", "exp": NOW + 9}, SECRET, "HS256"), NOW,
     CloseCode.TOKEN_INVALID, "claims"),
    (jwt.encode({"room": "r", "sub": "u", "exp": NOW + 9}, SECRET, "HS256"), NOW, CloseCode.TOKEN_INVALID, "role"),
    (jwt.encode({"room": "r", "sub": "u", "role": "viewer", "exp": NOW + 9}, SECRET, "HS512"), NOW,
     CloseCode.TOKEN_INVALID, "malformed"),
])
def test_refusals_carry_close_code_and_reason(token, now, code, words) -> None:
    with pytest.raises(TokenError, match=words) as info:
        tokens.verify(SECRET, token, now)
    assert info.value.code == code


def test_issue_validates_names_and_ttl() -> None:
    with pytest.raises(BadName, match="room"):
        tokens.issue(SECRET, "a/b", "u", "viewer", NOW)
    with pytest.raises(BadName, match="user"):
        tokens.issue(SECRET, "r", "x" * 65, "viewer", NOW)
    with pytest.raises(ValueError, match="ttl"):
        tokens.issue(SECRET, "r", "u", "viewer", NOW, ttl=0)
    with pytest.raises(ValueError):
        tokens.issue(SECRET, "r", "u", "root", NOW)


def test_secret_created_once_private_and_reused(tmp_path) -> None:
    path = tmp_path / "state" / "ingress-secret"
    first = tokens.load_or_create_secret(path)
    assert len(first) == 64
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert tokens.load_or_create_secret(path) == first
    path.write_bytes(b"short")
    with pytest.raises(ValueError, match="at least 32"):
        tokens.load_or_create_secret(path)
