"""The broker token of the ingress and `wtpulsar consume`: `--broker-token TOKEN|file:///path`
or `$PULSAR_TOKEN` (SECURITY.md). Pulsar's JWT format: HS256, `sub` = role."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

ENV = "PULSAR_TOKEN"


def resolve(flag: str | None) -> str | None:
    """The token from the flag (a token, or file:///path), else $PULSAR_TOKEN, else None."""
    value = flag or os.environ.get(ENV) or None
    if value is None:
        return None
    if value.startswith("file://"):
        path = Path(value[len("file://"):])
        try:
            value = path.read_text().strip()
        except OSError as exc:
            raise ValueError(f"broker token file {path}: {exc.strerror}") from None
        if not value:
            raise ValueError(f"broker token file {path} is empty")
    return value


def client_kwargs(token: str | None) -> dict[str, Any]:
    if not token:
        return {}
    import pulsar

    return {"authentication": pulsar.AuthenticationToken(token)}
