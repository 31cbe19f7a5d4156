"""Viewer-side duplicate filter by (stream, seq): what at-least-once delivery needs before a viewer.

At-least-once (pulsar-functions.md §2.2) means a function that dies after publishing but before its
ack publishes again when the input is redelivered, and a publisher that missed an Ack resends; so a
room topic can hold the same frames twice. A viewer must see each frame once. Chat and unchunked
messages carry `seq`; fMP4 fragments carry the frames they hold as `first_seq`..`last_seq`
(ENVELOPE.md "Segments"), and after a chunk restart the fragment boundaries and `segment_seq` start
afresh, so fragments are compared by frame seq, not by `segment_seq`.

Sans-I/O: `SeqDedup.accept(properties)` says whether to deliver. Per track (stream, rendition) it
keeps the highest frame seq delivered: a fragment is delivered when it holds a frame above it. Init
segments always pass (a restarted chunker sends a new one, and a viewer needs it before the next
fragment). Chat is keyed per message, so it keeps a bounded window of recent seqs instead (a
resend can arrive after later messages).

This module is a reference for the ingress egress and `wtpulsar consume`, which at the time of
writing deliver duplicates (see tests/test_faults_dedup.py).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

CHAT_WINDOW = 4096  # recent chat seqs remembered per stream


@dataclass
class SeqDedup:
    highest: dict[tuple[str, str], int] = field(default_factory=dict)
    chat_seen: dict[str, OrderedDict[int, None]] = field(default_factory=dict)
    dropped: int = 0

    def accept(self, properties: Mapping[str, str], key: str = "") -> bool:
        if properties.get("segment_type") == "init":
            return True
        stream = properties.get("stream") or key
        kind = properties.get("kind", "")
        try:
            if "first_seq" in properties:
                first, last = int(properties["first_seq"]), int(properties["last_seq"])
            else:
                first = last = int(properties["seq"])
        except (KeyError, ValueError):
            return True  # nothing to compare by: deliver rather than lose
        if kind == "chat" and "first_seq" not in properties:
            seen = self.chat_seen.setdefault(stream, OrderedDict())
            if first in seen:
                self.dropped += 1
                return False
            seen[first] = None
            if len(seen) > CHAT_WINDOW:
                seen.popitem(last=False)
            return True
        track = (stream, properties.get("rendition") or kind)
        if last <= self.highest.get(track, -1):
            self.dropped += 1
            return False
        self.highest[track] = last
        return True
