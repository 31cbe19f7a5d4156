"""Was this chat message written by the ingress? The check the moderate function makes.

A Pulsar Python function cannot see which role produced a message, so the ingress signs every
chat message it writes to chat-in: an HMAC-SHA256, with a key only it and moderate hold, over the
properties moderate trusts (room and user as authenticated, stream, seq and t_ingress) and the
payload. The signature travels in the message property ``chat_sig`` as ``v1=<hex>``; the exact
bytes signed and a test vector are in schemas/CHAT.md "Signed by the ingress". moderate gets the
key as the function secret ``chatSigningKey`` (``context.get_secret``; docs/function-secrets.md).

Each field is written as ``<length>:<value>`` so no two different field lists sign the same bytes.
Stdlib only: this file is deployed with the function.
"""

from __future__ import annotations

import hashlib
import hmac

SECRET_NAME = "chatSigningKey"  # the function secret holding the key (FunctionConfig `secrets`)
PROPERTY = "chat_sig"  # the message property carrying the signature
VERSION = "v1"
SIGNED_PROPERTIES = ("room", "user", "stream", "seq", "t_ingress")
MIN_KEY_BYTES = 32


class SigningKeyError(ValueError):
    """The configured key cannot be used; the message says why."""


def key_from_secret(value: object) -> bytes | None:
    """The HMAC key from what ``context.get_secret`` returned; None when no secret is configured."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise SigningKeyError(f"secret {SECRET_NAME} must be a string (the key itself, or with the "
                              f"environment secrets provider an environment variable), got {type(value).__name__}")
    key = value.strip().encode("utf-8")
    if len(key) < MIN_KEY_BYTES:
        raise SigningKeyError(f"secret {SECRET_NAME} is {len(key)} bytes; at least {MIN_KEY_BYTES} are needed")
    return key


def signed_bytes(properties: dict[str, str], payload: bytes) -> bytes:
    fields = [VERSION, *(properties.get(name, "") for name in SIGNED_PROPERTIES)]
    head = "".join(f"{len(value.encode('utf-8'))}:{value}" for value in fields).encode("utf-8")
    return head + f"{len(payload)}:".encode() + payload


def signature(key: bytes, properties: dict[str, str], payload: bytes) -> str:
    return f"{VERSION}=" + hmac.new(key, signed_bytes(properties, payload), hashlib.sha256).hexdigest()


def problem(key: bytes, properties: dict[str, str], payload: bytes) -> tuple[str, str] | None:
    """(reason, detail) when the message was not signed with ``key`` as the ingress signs; else None."""
    given = properties.get(PROPERTY)
    if not given:
        return "unsigned", f"no {PROPERTY} property: chat-in accepts only what the ingress wrote and signed"
    if not hmac.compare_digest(given.encode("utf-8"), signature(key, properties, payload).encode("utf-8")):
        fields = ", ".join(SIGNED_PROPERTIES)
        return "bad_signature", (f"{PROPERTY} does not match the payload and properties {fields}: written by "
                                 "someone other than the ingress, altered since, or signed with another key")
    return None
