"""The moderate function's settings, read from `userConfig` and checked once.

A setting that is wrong raises `ModerationConfigError` naming the key: the function then fails
every message (Pulsar nacks and redelivers, docs/pulsar-functions.md §1.2/§2.3) instead of moderating with rules nobody
asked for, and the operator sees the reason in the log.

userConfig keys (all optional; see deploy/functions/moderate.yaml for a full example):
  deadLetterTopic, approvedTopic, verdictTopic   fully-qualified topic names
  blocklist     {rule: [entry, ...]}   entries as in chat_blocklist ("bad", "fuck*", "*spam*")
  suffixes      [str]                  inflections a whole-word entry may carry
  actions       {rule: drop|mask|flag|allow}  for blocklist rules and the built-in rules below
  limits        {max_message_bytes, max_text_chars, rate_messages, rate_window_ms,
                 duplicate_max, duplicate_window_ms, max_users_in_memory}
  links         {policy: allow|block|allowlist, allowed_domains: [str]}
  state         "auto" (probe the state API) or "memory" (never use it)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from chat_blocklist import DEFAULT_SUFFIXES, Blocklist, BlocklistError
from chat_links import POLICIES, LinkPolicy
from chat_message import DEFAULT_MAX_MESSAGE_BYTES

# Built-in rules besides the blocklist's own rule names.
LENGTH, RATE_LIMIT, DUPLICATE, LINK, SCHEMA = "length", "rate_limit", "duplicate", "link", "schema"
Action = Literal["allow", "flag", "mask", "drop"]
ACTIONS: tuple[Action, ...] = ("allow", "flag", "mask", "drop")  # in rising severity
SEVERITY = {a: n for n, a in enumerate(ACTIONS)}
DEFAULT_ACTIONS: dict[str, Action] = {LENGTH: "drop", RATE_LIMIT: "drop", DUPLICATE: "drop", LINK: "mask"}
DEFAULT_BLOCKLIST_ACTION: Action = "mask"
# "mask" needs something to mask: text spans, or (for length) the tail past the limit.
MASKABLE = {LENGTH, LINK}
TOPIC = re.compile(r"^(persistent|non-persistent)://[A-Za-z0-9_.=-]+/[A-Za-z0-9_.=-]+/[A-Za-z0-9_.=:-]+$")

DEFAULT_LIMITS: dict[str, int] = {
    "max_message_bytes": DEFAULT_MAX_MESSAGE_BYTES,
    "max_text_chars": 500,
    "rate_messages": 5,
    "rate_window_ms": 10_000,
    "duplicate_max": 2,
    "duplicate_window_ms": 30_000,
    "max_users_in_memory": 100_000,
}


class ModerationConfigError(ValueError):
    """userConfig cannot be used; the message names the key."""


@dataclass(frozen=True)
class ModerationConfig:
    dead_letter_topic: str
    approved_topic: str
    verdict_topic: str
    blocklist: Blocklist
    actions: dict[str, Action]
    limits: dict[str, int]
    links: LinkPolicy
    state: str = "auto"
    blocklist_rules: frozenset[str] = field(default_factory=frozenset)

    def action_for(self, rule: str) -> Action:
        return self.actions.get(rule, DEFAULT_BLOCKLIST_ACTION if rule in self.blocklist_rules else "drop")


def _topic(cfg: Mapping[str, Any], key: str, default: str) -> str:
    value = cfg.get(key, default)
    if not isinstance(value, str) or not TOPIC.fullmatch(value):
        raise ModerationConfigError(f"userConfig.{key} must be a fully-qualified topic name, got {value!r}")
    return value


def load_config(user_config: Any, tenant: str, namespace: str) -> ModerationConfig:
    """Build the settings from `context.get_user_config_map()` (which is `[]` when unset, docs/pulsar-functions.md §1.3)."""
    cfg: Mapping[str, Any] = user_config if isinstance(user_config, Mapping) else {}
    base = f"persistent://{tenant}/{namespace}"
    dead_letter = _topic(cfg, "deadLetterTopic", f"{base}/dead-letter")
    approved = _topic(cfg, "approvedTopic", f"{base}/chat-approved")
    verdicts = _topic(cfg, "verdictTopic", f"{base}/moderation")

    raw_blocklist = cfg.get("blocklist", {})
    if isinstance(raw_blocklist, list):  # a bare list is one rule called "blocklist"
        raw_blocklist = {"blocklist": raw_blocklist}
    if not isinstance(raw_blocklist, Mapping):
        raise ModerationConfigError("userConfig.blocklist must map rule names to lists of words")
    builtin = {LENGTH, RATE_LIMIT, DUPLICATE, LINK, SCHEMA}
    clash = builtin & set(raw_blocklist)
    if clash:
        raise ModerationConfigError(f"userConfig.blocklist rule names {sorted(clash)} are reserved")
    suffixes = cfg.get("suffixes", list(DEFAULT_SUFFIXES))
    if not isinstance(suffixes, list) or not all(isinstance(s, str) and s for s in suffixes):
        raise ModerationConfigError("userConfig.suffixes must be a list of non-empty strings")
    try:
        blocklist = Blocklist(raw_blocklist, suffixes)
    except BlocklistError as exc:
        raise ModerationConfigError(f"userConfig.blocklist: {exc}") from None

    raw_actions = cfg.get("actions", {})
    if not isinstance(raw_actions, Mapping):
        raise ModerationConfigError("userConfig.actions must map rule names to actions")
    known_rules = set(raw_blocklist) | {LENGTH, RATE_LIMIT, DUPLICATE, LINK}
    actions = dict(DEFAULT_ACTIONS)
    for rule, action in raw_actions.items():
        if rule not in known_rules:
            raise ModerationConfigError(f"userConfig.actions names unknown rule {rule!r}")
        if action not in ACTIONS:
            raise ModerationConfigError(f"userConfig.actions.{rule} must be one of {ACTIONS}, got {action!r}")
        if action == "mask" and rule not in MASKABLE and rule not in raw_blocklist:
            raise ModerationConfigError(f"userConfig.actions.{rule}: 'mask' means nothing for {rule}")
        actions[rule] = action

    raw_limits = cfg.get("limits", {})
    if not isinstance(raw_limits, Mapping):
        raise ModerationConfigError("userConfig.limits must be an object")
    limits = dict(DEFAULT_LIMITS)
    for key, value in raw_limits.items():
        if key not in DEFAULT_LIMITS:
            raise ModerationConfigError(f"userConfig.limits has unknown key {key!r}")
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ModerationConfigError(f"userConfig.limits.{key} must be a positive integer, got {value!r}")
        limits[key] = value

    raw_links = cfg.get("links", {})
    if not isinstance(raw_links, Mapping):
        raise ModerationConfigError("userConfig.links must be an object")
    policy = raw_links.get("policy", "allow")
    if policy not in POLICIES:
        raise ModerationConfigError(f"userConfig.links.policy must be one of {POLICIES}, got {policy!r}")
    domains = raw_links.get("allowed_domains", [])
    if not isinstance(domains, list) or not all(isinstance(d, str) and d for d in domains):
        raise ModerationConfigError("userConfig.links.allowed_domains must be a list of domain names")

    state = cfg.get("state", "auto")
    if state not in ("auto", "memory"):
        raise ModerationConfigError(f"userConfig.state must be 'auto' or 'memory', got {state!r}")
    return ModerationConfig(
        dead_letter_topic=dead_letter,
        approved_topic=approved,
        verdict_topic=verdicts,
        blocklist=blocklist,
        actions=actions,
        limits=limits,
        links=LinkPolicy(policy, tuple(d.lower().strip(".") for d in domains)),
        state=state,
        blocklist_rules=frozenset(raw_blocklist),
    )
