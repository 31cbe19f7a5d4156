"""Broker authentication for `wtpulsar up` (SECURITY.md "make run"): one HS256 secret, a role and a
token per part of the pipeline, and the grants each role needs, applied through the admin REST
with Pulsar's paths (`/admin/v2/namespaces/{t}/{ns}/permissions/{role}` and the topic-level
`/admin/v2/persistent/{t}/{ns}/{topic}/permissions/{role}`).

Tokens are Pulsar's format (HS256, `sub` = role), so the same files work against Apache Pulsar
configured with `tokenSecretKey` and `superUserRoles`.
"""

from __future__ import annotations

import json
import os
import secrets
import urllib.request
from pathlib import Path

from broker.auth import create_token
from schemas.names import rooms_namespace

NAMESPACE = "public/wtpulsar"  # input and intermediate topics
ROOMS_NAMESPACE = "public/" + rooms_namespace("wtpulsar")  # route's per-room outputs, named at run time
SUPERUSER = "admin"
INGRESS = "ingress"
CLI = "cli"
# Topics each function writes in NAMESPACE, granted topic by topic. No function gets produce on the
# whole of NAMESPACE: Pulsar's grants are a union of namespace and topic grants, so that would let it
# write chat-in and the raw topics, which only the ingress may write.
FUNCTION_OUTPUTS = {
    "transcode": ["encoded", "dead-letter"],
    "chunk": ["segments", "dead-letter"],
    "moderate": ["chat-approved", "moderation", "dead-letter"],
    "route": ["unroutable", "dead-letter"],
}
ROOM_WRITERS = ("route",)  # functions granted produce on ROOMS_NAMESPACE


def function_role(name: str) -> str:
    return f"fn-{name}"


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def ensure(directory: Path, functions: list[str]) -> dict[str, Path]:
    """Create (once) the secret and one token file per role; returns role -> token file."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    secret_path = directory / "secret"
    if not secret_path.exists():
        _write_private(secret_path, secrets.token_hex(32).encode())
    secret = secret_path.read_bytes().strip()
    files: dict[str, Path] = {"secret": secret_path}
    for role in [SUPERUSER, INGRESS, CLI, *(function_role(f) for f in functions)]:
        path = directory / f"{role}.token"
        _write_private(path, create_token(secret, role).encode())
        files[role] = path
    return files


def grants(functions: list[str]) -> list[tuple[str, str, list[str]]]:
    """(admin path under /admin/v2, role, actions) for every grant the pipeline needs."""
    ns, rooms = f"namespaces/{NAMESPACE}/permissions", f"namespaces/{ROOMS_NAMESPACE}/permissions"
    out = [
        (f"{ns}/{INGRESS}", INGRESS, ["consume", "produce"]),  # the only role that writes the inputs
        (f"{rooms}/{INGRESS}", INGRESS, ["consume"]),  # egress to viewers, verdicts to senders
        (f"{ns}/{CLI}", CLI, ["consume"]),  # `wtpulsar audit` reads the inputs too
        (f"{rooms}/{CLI}", CLI, ["consume"]),
    ]
    for name in functions:
        role = function_role(name)
        out.append((f"{ns}/{role}", role, ["consume"]))
        out += [(f"persistent/{NAMESPACE}/{topic}/permissions/{role}", role, ["produce"])
                for topic in FUNCTION_OUTPUTS.get(name, ["dead-letter"])]  # fmt: skip
        if name in ROOM_WRITERS:
            out.append((f"{rooms}/{role}", role, ["produce"]))
    return out


def apply(admin_url: str, admin_token: str, functions: list[str]) -> None:
    for path, _role, actions in grants(functions):
        request = urllib.request.Request(
            f"{admin_url}/admin/v2/{path}", data=json.dumps(actions).encode(), method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {admin_token}"},
        )
        with urllib.request.urlopen(request, timeout=10):
            pass
