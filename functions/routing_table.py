"""The route function's routing table: which output topics a message goes to, or why none.

A table is a list of rules, tried in order (userConfig `routes`):

    {"match": {"kind": ["video", "screen"], "room": "lobby-*"},   # all optional, glob or list
     "to": ["room-{room}-{kind}-{rendition}", "archive-{kind}"],  # one or more: fan-out
     "continue": false}                                            # true: keep trying rules

`match` may test room, kind, rendition, user, stream and source (the input topic's short name,
e.g. "segments"); a field the message lacks matches nothing. The first matching rule decides,
unless it says `continue: true`, in which case its topics are added and later rules are tried
too. A rule whose template needs a field the message lacks (audio has no rendition) is skipped.
The default table (`DEFAULT_ROUTES`) gives the per-room topics of ENVELOPE.md.

Safety: every topic is `persistent://<tenant>/<namespace>/<name>` with the configured tenant and
namespace; templates may only use the fields above (our own substitution, never str.format,
which would evaluate "{room.__class__}"), and every value put into a name must match
`^[A-Za-z0-9_-]{1,64}$`. A message with a value that does not ("../x", "a/b",
"persistent://evil/ns/t", 65+ characters) is unroutable with reason `invalid_<field>`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

MATCH_FIELDS = ("room", "kind", "rendition", "user", "stream", "source")
TEMPLATE_FIELDS = ("room", "kind", "rendition", "user", "stream")
VALUE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # ENVELOPE.md "Names"
NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,254}$")  # a topic's short name after substitution
NAMESPACE_PART = re.compile(r"^[A-Za-z0-9_.=-]{1,128}$")
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
TEMPLATE_LITERAL = re.compile(r"^[A-Za-z0-9_.-]*$")
PARTITION_SUFFIX = re.compile(r"-partition-\d+$")

DEFAULT_ROUTES: list[dict[str, Any]] = [
    # Verdicts first: they carry no `kind` and go to the room's private verdict topic, which the
    # ingress reads to tell each sender about their own messages (CHAT.md "Routing verdicts").
    {"match": {"source": "moderation"}, "to": ["room-{room}-moderation"]},
    {"match": {"kind": ["video", "screen"]}, "to": ["room-{room}-{kind}-{rendition}"]},
    {"match": {"kind": "audio"}, "to": ["room-{room}-audio"]},
    {"match": {"kind": "chat"}, "to": ["room-{room}-chat"]},
    {"match": {"kind": "file"}, "to": ["room-{room}-file"]},
]


class RoutingConfigError(ValueError):
    """The routing table in userConfig cannot be used; the message names the rule."""


@dataclass(frozen=True)
class Template:
    text: str
    fields: tuple[str, ...]

    def render(self, values: Mapping[str, str]) -> str | None:
        """The short topic name, or None when a field is missing."""
        if any(f not in values for f in self.fields):
            return None
        return PLACEHOLDER.sub(lambda m: values[m.group(1)], self.text)


@dataclass(frozen=True)
class Rule:
    match: tuple[tuple[str, tuple[str, ...]], ...]
    to: tuple[Template, ...]
    keep_going: bool

    def matches(self, values: Mapping[str, str]) -> bool:
        for name, patterns in self.match:
            value = values.get(name)
            if value is None or not any(fnmatchcase(value, p) for p in patterns):
                return False
        return True


@dataclass(frozen=True)
class Routed:
    topics: tuple[str, ...]  # fully-qualified, deduplicated, in rule order
    reason: str = ""  # why there are none ("" when routed)


def parse_template(text: Any, where: str) -> Template:
    if not isinstance(text, str) or not text:
        raise RoutingConfigError(f"{where}: a topic template must be a non-empty string")
    fields = tuple(PLACEHOLDER.findall(text))
    for name in fields:
        if name not in TEMPLATE_FIELDS:
            raise RoutingConfigError(f"{where}: unknown placeholder {{{name}}} in {text!r}; use {TEMPLATE_FIELDS}")
    literal = PLACEHOLDER.sub("", text)
    if not TEMPLATE_LITERAL.fullmatch(literal):
        raise RoutingConfigError(f"{where}: {text!r} may only hold letters, digits, '_', '-', '.' besides "
                                 "placeholders (a short topic name, no tenant/namespace)")  # fmt: skip
    return Template(text, fields)


def parse_rule(raw: Any, n: int) -> Rule:
    where = f"routes[{n}]"
    if not isinstance(raw, Mapping):
        raise RoutingConfigError(f"{where} must be an object with 'match' and 'to'")
    unknown = set(raw) - {"match", "to", "continue"}
    if unknown:
        raise RoutingConfigError(f"{where} has unknown keys {sorted(unknown)}")
    match = raw.get("match", {})
    if not isinstance(match, Mapping):
        raise RoutingConfigError(f"{where}.match must be an object")
    conditions: list[tuple[str, tuple[str, ...]]] = []
    for name, patterns in match.items():
        if name not in MATCH_FIELDS:
            raise RoutingConfigError(f"{where}.match: unknown field {name!r}; use {MATCH_FIELDS}")
        if isinstance(patterns, str):
            patterns = [patterns]
        if not isinstance(patterns, list) or not patterns or not all(isinstance(p, str) for p in patterns):
            raise RoutingConfigError(f"{where}.match.{name} must be a string or a non-empty list of strings")
        conditions.append((name, tuple(patterns)))
    to = raw.get("to")
    if isinstance(to, str):
        to = [to]
    if not isinstance(to, list) or not to:
        raise RoutingConfigError(f"{where}.to must be a topic template or a non-empty list of them")
    keep_going = raw.get("continue", False)
    if not isinstance(keep_going, bool):
        raise RoutingConfigError(f"{where}.continue must be true or false")
    return Rule(tuple(conditions), tuple(parse_template(t, f"{where}.to") for t in to), keep_going)


def short_topic_name(topic: str) -> str:
    """'persistent://t/ns/segments-partition-3' → 'segments'."""
    return PARTITION_SUFFIX.sub("", topic.rsplit("/", 1)[-1])


class RoutingTable:
    def __init__(self, rules: Sequence[Any] | None, tenant: str, namespace: str) -> None:
        for label, part in (("tenant", tenant), ("namespace", namespace)):
            if not isinstance(part, str) or not NAMESPACE_PART.fullmatch(part):
                raise RoutingConfigError(f"{label} {part!r} is not a valid Pulsar {label} name")
        raw = DEFAULT_ROUTES if rules is None else rules
        if not isinstance(raw, list):
            raise RoutingConfigError("routes must be a list of rules")
        self.rules = [parse_rule(r, n) for n, r in enumerate(raw)]
        self.prefix = f"persistent://{tenant}/{namespace}/"

    def route(self, properties: Mapping[str, str], source_topic: str) -> Routed:
        values: dict[str, str] = {}
        for name in TEMPLATE_FIELDS:
            value = properties.get(name)
            if value is None or value == "":
                continue
            if not VALUE.fullmatch(value):
                return Routed((), f"invalid_{name}")
            values[name] = value
        if "room" not in values:
            return Routed((), "missing_room")
        values["source"] = short_topic_name(source_topic)
        topics: list[str] = []
        missing: list[str] = []
        for rule in self.rules:
            if not rule.matches(values):
                continue
            names = [t.render(values) for t in rule.to]
            if any(name is None for name in names):
                missing.extend(f for t in rule.to for f in t.fields if f not in values)
                continue
            for rendered in names:
                assert rendered is not None
                if not NAME.fullmatch(rendered):
                    return Routed((), "invalid_topic_name")
                topic = self.prefix + rendered
                if topic not in topics:
                    topics.append(topic)
            if not rule.keep_going:
                break
        if topics:
            return Routed(tuple(topics))
        return Routed((), f"missing_{missing[0]}" if missing else "no_rule")
