"""When the WebTransport server transmits and wakes (ingress/transmit_round.py, IngressProtocol's timer):
one callback per loop pass for every connection with writes, and a connection timer re-armed only when
its deadline comes earlier, while a deadline that moved later is waited for, never handled early."""

from __future__ import annotations

from typing import Any

import pytest

from ingress import quic_stack
from ingress.transmit_round import TransmitRound
from ingress.webtransport_server import IngressProtocol, protocol_class


class SoonLoop:
    """The loop as a TransmitRound uses it: callbacks asked for with call_soon, run by ``run_pass``."""

    def __init__(self) -> None:
        self.soon: list[Any] = []

    def call_soon(self, callback: Any) -> None:
        self.soon.append(callback)

    def run_pass(self) -> int:
        ready, self.soon = self.soon, []
        for callback in ready:
            callback()
        return len(ready)


def test_a_round_transmits_each_connection_once_per_pass_from_one_callback() -> None:
    loop = SoonLoop()
    round_ = TransmitRound(loop)  # type: ignore[arg-type]  # the one method it uses
    sent: list[str] = []
    for name in ("a", "b", "a", "c", "b"):
        round_.add(name, lambda name=name: sent.append(name))  # type: ignore[misc]  # bound per name
    assert len(loop.soon) == 1 and sent == []
    assert loop.run_pass() == 1
    assert sent == ["a", "b", "c"] and loop.soon == []
    round_.add("c", lambda: sent.append("c again"))  # a later pass gets a callback of its own
    assert loop.run_pass() == 1
    assert sent == ["a", "b", "c", "c again"] and round_.rounds == 2


class FakeQuic:
    """The stack connection as the protocol's timer code sees it: a deadline, and what it was asked."""

    def __init__(self) -> None:
        self.deadline: float | None = None
        self.handled: list[float] = []

    def get_timer(self) -> float | None:
        return self.deadline

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
        return []

    def handle_timer(self, now: float) -> None:
        self.handled.append(now)
        self.deadline = None

    def next_event(self) -> None:
        return None


class FakeHandle:
    def __init__(self, loop: FakeLoop, when: float, callback: Any) -> None:
        self.loop, self.when, self.callback, self.cancelled = loop, when, callback, False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    def __init__(self) -> None:
        self.now = 0.0
        self.handles: list[FakeHandle] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Any) -> FakeHandle:
        handle = FakeHandle(self, when, callback)
        self.handles.append(handle)
        return handle

    def armed(self) -> list[float]:
        return [h.when for h in self.handles if not h.cancelled]

    def advance(self, to: float) -> None:
        """Run the timers due by ``to``, in order, as the event loop would."""
        self.now = to
        while due := sorted((h for h in self.handles if not h.cancelled and h.when <= to), key=lambda h: h.when):
            handle = due[0]
            self.handles.remove(handle)
            handle.callback()


class FakeBatch:
    def send(self, datagrams: Any) -> None:
        pass


@pytest.mark.parametrize("name", quic_stack.STACKS)
def test_the_timer_is_rearmed_only_for_an_earlier_deadline_and_never_handled_early(name: str) -> None:
    proto: IngressProtocol = object.__new__(protocol_class(quic_stack.load(name)))
    quic, loop = FakeQuic(), FakeLoop()
    proto._quic, proto._loop = quic, loop  # type: ignore[assignment]  # fakes of the stack's types
    proto._timer, proto._timer_at, proto._transmit_task = None, None, None
    proto.batch = FakeBatch()  # type: ignore[assignment]  # a fake of udp_batch.BatchSender
    quic.deadline = 1.0
    proto.transmit()
    assert loop.armed() == [1.0]
    for later in (1.2, 1.5):  # ACKs push the deadline on: no new timer
        quic.deadline = later
        proto.transmit()
        assert loop.armed() == [1.0]
    loop.advance(1.0)  # the armed timer fires early for the deadline: it waits for 1.5 instead
    assert quic.handled == [] and loop.armed() == [1.5]
    quic.deadline = 1.3  # earlier than the armed one: re-armed at once
    proto.transmit()
    assert loop.armed() == [1.3]
    loop.advance(1.3)
    assert quic.handled == [1.3] and loop.armed() == []
    quic.deadline = 2.0
    proto.transmit()
    quic.deadline = None  # nothing due any more: the timer finds nothing to do
    proto.transmit()
    loop.advance(2.0)
    assert quic.handled == [1.3] and loop.armed() == []
