"""Decide what happens to one valid chat message: the sans-I/O core of the moderate function.

Each enabled rule is checked and each hit gets its configured action; the message's action is
the most severe one (drop > mask > flag > allow). With "mask", the spans of the mask-action hits
are replaced by '*' (whitespace kept, so the shape of the sentence stays), a masked link by
"[link removed]", and a too-long text is cut at the limit. A "flag" hit also marks the message `flagged` when the result is "mask", so
reviewers still see it. Rate and duplicate counters advance for every valid message, including
ones dropped for other reasons: a flooder stays limited. Once length, rate or duplicate has
dropped a message, the blocklist and links are not checked (its verdict lists only those rules).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from chat_config import DUPLICATE, LENGTH, LINK, RATE_LIMIT, SEVERITY, Action, ModerationConfig
from chat_limits import Limits, fingerprint
from chat_message import ChatMessage

MASK_CHAR = "*"
LINK_PLACEHOLDER = "[link removed]"  # what a masked link becomes (schemas/CHAT.md)


@dataclass(frozen=True)
class Finding:
    rule: str
    action: Action
    reason: str
    spans: tuple[tuple[int, int], ...] = ()  # inclusive index ranges of the text to mask


@dataclass(frozen=True)
class Decision:
    action: Action
    rules: tuple[str, ...]  # rules hit, sorted, each once
    reason: str  # "" when allowed
    text: str | None  # what to publish as approved chat; None when dropped
    flagged: bool
    findings: tuple[Finding, ...] = ()


def _invisible(ch: str) -> bool:
    return unicodedata.combining(ch) > 0 or unicodedata.category(ch) in ("Cf", "Mn", "Me")


def mask(text: str, spans: list[tuple[int, int]], link_spans: list[tuple[int, int]] | None = None) -> str:
    """Replace each visible character in the spans by '*'; drop the invisible ones in and right
    after a span (zero-width spaces, combining overlays), which would otherwise decorate the stars.
    Each of ``link_spans`` becomes LINK_PLACEHOLDER instead: a masked link reads as a removed link,
    not as a row of stars a reader takes for a swear word."""
    chars: list[str | None] = list(text)
    replaced: set[int] = set()  # positions inside a link that became the placeholder
    for first, last in link_spans or ():
        start, end = max(first, 0), min(last, len(chars) - 1)
        while end + 1 < len(chars) and _invisible(text[end + 1]):
            end += 1
        if start > end:
            continue
        for i in range(start, end + 1):
            chars[i] = None
        chars[start] = LINK_PLACEHOLDER
        replaced.update(range(start, end + 1))
    for first, last in spans:
        end = min(last, len(chars) - 1)
        while end + 1 < len(chars) and _invisible(text[end + 1]):
            end += 1
        for i in range(max(first, 0), end + 1):
            if i in replaced:
                continue
            if _invisible(text[i]):
                chars[i] = None
            elif not text[i].isspace():
                chars[i] = MASK_CHAR
    return "".join(c for c in chars if c is not None)


def findings_for(msg: ChatMessage, config: ModerationConfig, limits: Limits, now_ms: int) -> list[Finding]:
    found: list[Finding] = []
    text = msg.text
    lim = config.limits

    # Cheap rules first. Rate and duplicate counters advance for every valid message.
    action = config.action_for(LENGTH)
    if action != "allow" and len(text) > lim["max_text_chars"]:
        found.append(Finding(LENGTH, action, f"length: {len(text)} characters (max {lim['max_text_chars']})"))

    action = config.action_for(RATE_LIMIT)
    if action != "allow":
        count = limits.rate_count(msg.user, now_ms, lim["rate_window_ms"])
        if count > lim["rate_messages"]:
            found.append(Finding(RATE_LIMIT, action, f"rate_limit: {count} messages in "
                                 f"{lim['rate_window_ms']} ms (max {lim['rate_messages']})"))  # fmt: skip

    action = config.action_for(DUPLICATE)
    if action != "allow":
        repeats = limits.repeat_count(msg.user, fingerprint(text), now_ms, lim["duplicate_window_ms"])
        if repeats > lim["duplicate_max"]:
            found.append(Finding(DUPLICATE, action, f"duplicate: same text {repeats} times in "
                                 f"{lim['duplicate_window_ms']} ms (max {lim['duplicate_max']})"))  # fmt: skip

    # A message already dropped is not scanned: that bounds what a flood of huge or repeated
    # messages costs (a 16 KB text full of near-misses takes ~0.1 s to scan).
    if any(f.action == "drop" for f in found):
        return found

    hits_by_rule: dict[str, list[tuple[str, int, int]]] = {}
    for hit in config.blocklist.scan(text):
        hits_by_rule.setdefault(hit.rule, []).append((hit.entry, hit.first, hit.last))
    for rule, hits in hits_by_rule.items():
        action = config.action_for(rule)
        if action == "allow":
            continue
        entries = sorted({entry for entry, _, _ in hits})
        found.append(Finding(rule, action, f"{rule}: blocked word ({', '.join(entries)})",
                             tuple((first, last) for _, first, last in hits)))  # fmt: skip

    action = config.action_for(LINK)
    if action != "allow":
        links = config.links.violations(text)
        if links:
            hosts = sorted({link.host or "?" for link in links})
            found.append(Finding(LINK, action, f"link: {', '.join(hosts)} not allowed ({config.links.policy})",
                                 tuple((link.first, link.last) for link in links)))  # fmt: skip
    return found


def decide(msg: ChatMessage, config: ModerationConfig, limits: Limits, now_ms: int) -> Decision:
    found = findings_for(msg, config, limits, now_ms)
    if not found:
        return Decision("allow", (), "", msg.text, False)
    action = max((f.action for f in found), key=SEVERITY.__getitem__)
    rules = tuple(sorted({f.rule for f in found}))
    reason = "; ".join(f.reason for f in found)
    flagged = any(f.action == "flag" for f in found)
    if action == "drop":
        return Decision("drop", rules, reason, None, flagged, tuple(found))
    text = msg.text
    if action == "mask":
        text = mask(text, [span for f in found if f.action == "mask" and f.rule != LINK for span in f.spans],
                    [span for f in found if f.action == "mask" and f.rule == LINK for span in f.spans])
        if any(f.rule == LENGTH and f.action == "mask" for f in found):
            text = text[: config.limits["max_text_chars"]]
    return Decision(action, rules, reason, text, flagged, tuple(found))
