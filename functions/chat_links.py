"""Find links in chat text and decide which the link policy forbids.

Policies: "allow" (links are fine), "block" (every link is a hit), "allowlist" (links are hits
unless their host is one of `allowed_domains` or a subdomain of one: "youtube.com" allows
"m.youtube.com" but not "evilyoutube.com" nor "youtube.com.evil.net").

Links are found as `scheme://…`, `www.…`, or a bare `name.tld` with a common TLD, after NFKC per
character so fullwidth dots and letters ("ｅｖｉｌ．ｃｏｍ") are read as ASCII. E-mail addresses are
not links.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

POLICIES = ("allow", "block", "allowlist")

# Common TLDs for bare "name.tld" links; scheme:// and www. links are found with any TLD.
BARE_TLDS = (
    "com net org info biz io co me tv gg xyz app dev link live site online top club shop store "
    "stream ru cn de uk us fr nl eu ly to cc ws be tk ml ga cf gq pw click download zip mov"
).split()

_LINK = re.compile(
    r"(?:[a-z][a-z0-9+.-]{1,15}://|www\.)[^\s<>\"']+"
    r"|(?<![\w@.-])(?:[a-z0-9](?:[a-z0-9-]{0,62})\.)+(?:" + "|".join(BARE_TLDS) + r")(?![\w-])"
    r"(?:[/:?#][^\s<>\"']*)?",
    re.IGNORECASE,
)
_TRAILING_PUNCT = ".,;:!?)]}'\""


@dataclass(frozen=True)
class Link:
    host: str  # lowercased, "" if none could be parsed
    first: int  # span of the link in the original text, inclusive
    last: int


def _nfkc_with_index(text: str) -> tuple[str, list[int]]:
    if text.isascii():
        return text, list(range(len(text)))
    out: list[str] = []
    index: list[int] = []
    for pos, ch in enumerate(text):
        norm = unicodedata.normalize("NFKC", ch)
        out.append(norm)
        index.extend([pos] * len(norm))
    return "".join(out), index


def find_links(text: str) -> list[Link]:
    if text.isascii() and "." not in text and "://" not in text:
        return []  # every link has a dot or a scheme; most chat has neither
    normalized, index = _nfkc_with_index(text)
    links: list[Link] = []
    for m in _LINK.finditer(normalized):
        raw = m.group(0).rstrip(_TRAILING_PUNCT)
        if not raw:
            continue
        start, end = m.start(), m.start() + len(raw)
        target = raw if "://" in raw else "http://" + raw
        try:
            host = (urlsplit(target).hostname or "").rstrip(".")
        except ValueError:  # e.g. an unbalanced "[" in the netloc
            host = ""
        links.append(Link(host.lower(), index[start], index[end - 1]))
    return links


def host_allowed(host: str, allowed_domains: Iterable[str]) -> bool:
    return any(host == d or host.endswith("." + d) for d in allowed_domains)


@dataclass(frozen=True)
class LinkPolicy:
    policy: str = "allow"
    allowed_domains: tuple[str, ...] = ()

    def violations(self, text: str) -> list[Link]:
        """The links in `text` this policy forbids."""
        if self.policy == "allow":
            return []
        links = find_links(text)
        if self.policy == "block":
            return links
        return [link for link in links if not host_allowed(link.host, self.allowed_domains)]
