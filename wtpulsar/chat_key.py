"""The chat signing key of `wtpulsar up` (SECURITY.md "make run"): created once under the state folder,
given to the ingress as a file (`--chat-signing-key file:///…`) and to the functions that check chat
as their secret `chatSigningKey` through the environment secrets provider, as Pulsar's Kubernetes
runtime hands secrets to instances (docs/function-secrets.md). Neither the key nor its file name is
ever on a command line besides the file:// path.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

SECRET_NAME = "chatSigningKey"  # functions/chat_signature.py SECRET_NAME
CHECKED_BY = ("moderate",)  # the functions (FunctionConfig file stems) that are given the key
FILE_NAME = "chat-signing-key"
ENVIRONMENT_PROVIDER = "secretsprovider.EnvironmentBasedSecretsProvider"


def ensure(state: Path) -> Path:
    """The key file under ``state``, created (0600, 32 random bytes as hex) when missing."""
    path = state / FILE_NAME
    if not path.exists():
        state.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path


def localrun_args() -> list[str]:
    """`wtpulsar functions localrun` flags that make the secret resolve to the environment variable."""
    return ["--secrets", json.dumps({SECRET_NAME: SECRET_NAME}), "--secrets-provider-classname", ENVIRONMENT_PROVIDER]


def localrun_env(key_file: Path) -> dict[str, str]:
    """The environment variable EnvironmentBasedSecretsProvider reads: named like the secret."""
    return {SECRET_NAME: key_file.read_text().strip()}
