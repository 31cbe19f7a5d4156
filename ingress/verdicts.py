"""A publisher session following its room's moderation verdicts, by composition.

Verdicts are not for viewers: route copies each verdict to ``room-<room>-moderation`` (ENVELOPE.md
"Verdict"), the egress hub tails that topic (egress.VerdictFeed) and hands a verdict only to the
sessions of the user it names. A ``VerdictFollower`` belongs to one publishing shell: once the session
has sent chat it starts following, and passes each verdict to the session core, whose actions (a
VERDICT record for a chat frame the session published, FRAMING.md "Verdict") go back to the shell.

This module imports neither the egress nor the publishing shell: each side sees the other through the
small ``VerdictSource`` protocol and a ``handle`` callable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ingress.names import check_name
from ingress.session import Action, PublisherSession


def verdict_topic(room: str) -> str:
    """Short name of a room's verdict topic (ENVELOPE.md ``room-<room>-moderation``)."""
    return f"room-{check_name('room', room)}-moderation"


@dataclass(eq=False)
class VerdictWatch:
    """One publisher session following its room's verdicts; ``deliver`` gets (properties, payload)."""

    room: str
    user: str
    deliver: Callable[[dict[str, str], bytes], None]


class VerdictSource(Protocol):
    """Where verdicts come from (egress.EgressHub; tests pass fakes)."""

    def watch_verdicts(self, room: str, user: str,
                       deliver: Callable[[dict[str, str], bytes], None]) -> VerdictWatch: ...  # fmt: skip

    def unwatch_verdicts(self, watch: VerdictWatch) -> None: ...


class VerdictFollower:
    """Follows the verdicts about one publisher session's user once the session has sent chat."""

    def __init__(self, source: VerdictSource, core: PublisherSession,
                 handle: Callable[[list[Action]], None]) -> None:  # fmt: skip
        self.source = source
        self.core = core
        self.handle = handle  # the shell's: runs the actions a verdict yields
        self.watch: VerdictWatch | None = None
        self.stopped = False

    def after(self, actions: list[Action]) -> None:
        """The shell ran ``actions``: start following if they were the session's first chat."""
        if actions and self.watch is None and self.core.chatted and not self.stopped:
            claims = self.core.claims
            self.watch = self.source.watch_verdicts(claims.room, claims.user, self.on_verdict)

    def on_verdict(self, properties: dict[str, str], payload: bytes) -> None:
        if not self.stopped:
            actions = self.core.verdict(properties, payload)
            if actions:
                self.handle(actions)

    def stop(self) -> None:
        """The session ended: stop following, and ignore what was already on its way."""
        self.stopped = True
        watch, self.watch = self.watch, None
        if watch is not None:
            self.source.unwatch_verdicts(watch)
