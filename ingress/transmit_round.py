"""One loop callback per event-loop pass for every connection that has something to send.

A message offered to n viewers writes to n connections; each would otherwise schedule its own
``call_soon`` to transmit once at the end of the pass (docs/media-and-webtransport.md §1.1). A
``TransmitRound`` collects those connections and transmits them all from a single callback: the same
one transmit per connection per pass, with one loop handle instead of n.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


class TransmitRound:
    """Connections due a transmit this loop pass; ``add`` them, the loop runs them once, in order of arrival."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.due: dict[Any, Callable[[], None]] = {}  # connection -> its transmit, insertion-ordered
        self.scheduled = False
        self.rounds = 0  # passes that transmitted (tests, benches)

    def add(self, connection: Any, transmit: Callable[[], None]) -> None:
        self.due[connection] = transmit
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.run)

    def run(self) -> None:
        self.scheduled = False
        due, self.due = self.due, {}
        self.rounds += 1
        for transmit in due.values():
            transmit()  # IngressProtocol catches what one connection's transmit raises
