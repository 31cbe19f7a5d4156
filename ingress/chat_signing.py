"""The ingress signs each chat message it writes to chat-in, so moderate can tell it from a message
another producer wrote (schemas/CHAT.md "Signed by the ingress", SECURITY.md).

The key: `wtpulsar ingress --chat-signing-key KEY|file:///PATH` or `$WTPULSAR_CHAT_SIGNING_KEY`
(`wtpulsar up` creates one and passes it as a file). moderate holds the same key as its function
secret `chatSigningKey`. The bytes signed are defined in CHAT.md, whose test vector both this file
and functions/chat_signature.py (the checking side, deployed with the function, which cannot import
ours) are tested against.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

ENV = "WTPULSAR_CHAT_SIGNING_KEY"
PROPERTY = "chat_sig"
VERSION = "v1"
SIGNED_PROPERTIES = ("room", "user", "stream", "seq", "t_ingress")
MIN_KEY_BYTES = 32


def resolve_key(flag: str | None) -> bytes | None:
    """The key from the flag (the key, or file:///path), else $WTPULSAR_CHAT_SIGNING_KEY, else None."""
    value = flag or os.environ.get(ENV) or None
    if value is None:
        return None
    where = "--chat-signing-key" if flag else f"${ENV}"
    if value.startswith("file://"):
        path = Path(value[len("file://"):])
        where = f"chat signing key file {path}"
        try:
            value = path.read_text().strip()
        except OSError as exc:
            raise ValueError(f"{where}: {exc.strerror}") from None
    key = value.strip().encode("utf-8")
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"{where}: the chat signing key is {len(key)} bytes; at least {MIN_KEY_BYTES} are needed")
    return key


def sign(key: bytes, properties: dict[str, str], payload: bytes) -> str:
    """The value of the `chat_sig` property for a chat-in message with these properties and payload."""
    fields = [VERSION, *(properties.get(name, "") for name in SIGNED_PROPERTIES)]
    head = "".join(f"{len(value.encode('utf-8'))}:{value}" for value in fields).encode("utf-8")
    digest = hmac.new(key, head + f"{len(payload)}:".encode() + payload, hashlib.sha256).hexdigest()
    return f"{VERSION}={digest}"
