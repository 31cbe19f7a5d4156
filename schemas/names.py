"""The one name rule of wtpulsar (docs/names.md).

Pulsar allows tenant, namespace and topic names made of ASCII letters, digits and ``-=:._``
(its NamedEntity pattern); topic local names may also carry ``%`` from URL encoding. We apply
exactly that, and refuse what Pulsar's metadata store refuses too: the empty name and the path
components ``.`` and ``..``. Room, stream and user ids are a stricter subset (``[A-Za-z0-9_-]``,
1..64) because they are embedded in topic names such as ``room-<room>-chat``: any accepted id
gives a valid topic name. Subscription names follow Pulsar, which allows nearly anything
(functions subscribe as ``tenant/namespace/name``); we refuse only the empty name, control
characters and names too long to become one file name once percent-encoded.
"""

from __future__ import annotations

import re
import urllib.parse

PART_RE = re.compile(r"^[-=:.A-Za-z0-9_]+$")  # tenant, namespace (Pulsar's NamedEntity, non-empty)
LOCAL_RE = re.compile(r"^[-=:.A-Za-z0-9_%]+$")  # topic local name (adds % for URL encoding)
ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # room, stream and user ids
MAX_PART = 255  # one file name
MAX_LOCAL = 512
MAX_FILE_NAME = 240  # bytes of a percent-encoded name plus its suffix must fit in 255
_RESERVED = (".", "..")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# The per-room output topics (room-<room>-<kind>...) live in a namespace of their own, next to the
# pipeline's: route may produce there and nowhere near the input topics, since Pulsar's grants are
# the union of namespace and topic grants (SECURITY.md "make run").
ROOMS_NAMESPACE_SUFFIX = "-rooms"


def rooms_namespace(namespace: str) -> str:
    """The namespace of the per-room output topics of the pipeline in ``namespace`` (same tenant)."""
    return namespace + ROOMS_NAMESPACE_SUFFIX


class InvalidName(ValueError):
    """A name that breaks the rule; the message says which name and why."""


def _check_path_name(what: str, value: object, limit: int, pattern: re.Pattern[str], allowed: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidName(f"{what} name must be a non-empty string, got {value!r}")
    if len(value) > limit:
        raise InvalidName(f"{what} name is {len(value)} characters, limit {limit}")
    if value in _RESERVED:
        raise InvalidName(f"{what} name {value!r} is reserved (a path component)")
    if not pattern.fullmatch(value):
        raise InvalidName(f"{what} name {value!r} may hold only letters, digits and {allowed}")
    return value


def check_part(what: str, value: object) -> str:
    """A tenant or namespace name."""
    return _check_path_name(what, value, MAX_PART, PART_RE, "-=:._")


def check_local(value: object) -> str:
    """A topic's local name (the part after tenant/namespace/)."""
    return _check_path_name("topic", value, MAX_LOCAL, LOCAL_RE, "-=:._%")


def check_subscription(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidName(f"subscription name must be a non-empty string, got {value!r}")
    if _CONTROL.search(value):
        raise InvalidName(f"subscription name {value!r} contains a control character")
    if len(file_name(value)) > MAX_FILE_NAME:
        raise InvalidName(f"subscription name is too long ({len(value)} characters; {MAX_FILE_NAME} bytes once percent-encoded)")
    return value


def check_id(what: str, value: object) -> str:
    """A room, stream or user id."""
    if not isinstance(value, str) or not ID_RE.fullmatch(value):
        raise InvalidName(f"{what} {value!r} must match {ID_RE.pattern}")
    return value


def check_namespace(value: object) -> str:
    """`tenant/namespace`."""
    if not isinstance(value, str) or value.count("/") != 1:
        raise InvalidName(f"namespace {value!r} is not of the form tenant/namespace")
    tenant, namespace = value.split("/")
    check_part("tenant", tenant)
    check_part("namespace", namespace)
    return value


def file_name(value: str) -> str:
    """`value` as one file name: percent-encoded, so it holds no `/` and is never `.` or `..`."""
    encoded = urllib.parse.quote(value, safe="")
    return encoded.replace(".", "%2E") if encoded in _RESERVED else encoded


def check_role(value: object) -> str:
    """A role (a token's `sub`): free text like Pulsar's, but printable and of bounded length."""
    if not isinstance(value, str) or not value:
        raise InvalidName(f"role must be a non-empty string, got {value!r}")
    if _CONTROL.search(value) or len(value) > MAX_PART:
        raise InvalidName(f"role {value[:80]!r} must be at most {MAX_PART} printable characters")
    return value
