"""Name validation and topic naming: nothing a client sends can reach a topic outside tenant/namespace.

ENVELOPE.md "Names": room, user and stream ids match ``^[A-Za-z0-9_-]{1,64}$``, the id rule of
schemas/names.py (docs/names.md), a subset of Pulsar's topic name rule.
"""

from __future__ import annotations

import re

from schemas.framing_codec import NAME_RE, Kind
from schemas.names import InvalidName, check_part, rooms_namespace

# The input topic per frame kind (one list, schemas/topics.py), re-exported for the ingress modules.
from schemas.topics import INPUT_TOPIC as INPUT_TOPIC

RENDITION_RE = re.compile(r"^[0-9]{2,4}p$")


class BadName(ValueError):
    pass


def check_name(what: str, value: str) -> str:
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise BadName(f"{what} {value!r} must match {NAME_RE.pattern}")
    return value


def check_rendition(value: str) -> str:
    if not RENDITION_RE.fullmatch(value):
        raise BadName(f"rendition {value!r} must look like 360p (pattern {RENDITION_RE.pattern})")
    return value


def check_namespace(tenant: str, namespace: str) -> None:
    """The one name rule (docs/names.md): Pulsar's characters, never `.` or `..`."""
    for what, value in (("tenant", tenant), ("namespace", namespace)):
        try:
            check_part(what, value)
        except InvalidName as exc:
            raise BadName(str(exc)) from None


def topic_url(tenant: str, namespace: str, short_name: str) -> str:
    return f"persistent://{tenant}/{namespace}/{short_name}"


def room_topic_url(tenant: str, namespace: str, short_name: str) -> str:
    """A room output topic of the pipeline in ``namespace``: it lives in that pipeline's rooms namespace."""
    return topic_url(tenant, rooms_namespace(namespace), short_name)


def room_topic(room: str, kind: Kind, rendition: str | None = None) -> str:
    """Short name of a room output topic: ``room-<room>-<kind>[-<rendition>]`` (ENVELOPE.md)."""
    check_name("room", room)
    name = f"room-{room}-{kind.name.lower()}"
    if rendition is not None:
        name += f"-{check_rendition(rendition)}"
    return name
