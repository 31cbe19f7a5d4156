"""ingress/verdicts.py's VerdictFollower without I/O: a fake verdict source, a real session core, and
the actions handed back to the shell compared as whole lists."""

from __future__ import annotations

import time
from collections.abc import Callable

from ingress.session import Action, Limits, PublisherSession, Send
from ingress.verdicts import VerdictFollower, VerdictWatch
from schemas import framing_codec as f
from schemas.framing_codec import Verdict, VerdictAction
from tests.test_ingress_verdicts import ALICE, BIDI, as_verdict, sent_chat, verdict_json


class FakeSource:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.watches: list[VerdictWatch] = []

    def watch_verdicts(self, room: str, user: str,
                       deliver: Callable[[dict[str, str], bytes], None]) -> VerdictWatch:  # fmt: skip
        self.calls.append(("watch", room, user))
        watch = VerdictWatch(room, user, deliver)
        self.watches.append(watch)
        return watch

    def unwatch_verdicts(self, watch: VerdictWatch) -> None:
        self.calls.append(("unwatch", watch.room, watch.user))


def follower() -> tuple[VerdictFollower, PublisherSession, FakeSource, list[list[Action]]]:
    core = PublisherSession(ALICE, Limits(), time.time())
    source, handled = FakeSource(), list[list[Action]]()
    return VerdictFollower(source, core, handled.append), core, source, handled


def test_follows_from_the_first_chat_on_and_hands_its_verdicts_to_the_shell() -> None:
    follow, core, source, handled = follower()
    follow.after([])  # nothing ran yet
    assert source.calls == []
    props = sent_chat(core, 3)
    follow.after([Send(BIDI, b"ack")])
    follow.after([Send(BIDI, b"ack")])  # already following: once
    assert source.calls == [("watch", "room1", "alice")]
    payload = verdict_json("alice")
    source.watches[0].deliver(as_verdict(props), payload)
    assert handled == [[Send(BIDI, f.serialize(Verdict("chat", 3, VerdictAction.DROP, payload)))]]
    source.watches[0].deliver(as_verdict(props), payload)  # redelivered: the core yields nothing to run
    assert len(handled) == 1


def test_stop_unwatches_and_ignores_what_was_already_on_its_way() -> None:
    follow, core, source, handled = follower()
    props = sent_chat(core, 0)
    follow.after([Send(BIDI, b"ack")])
    deliver = source.watches[0].deliver
    follow.stop()
    follow.stop()  # a second stop has nothing left to unwatch
    assert source.calls == [("watch", "room1", "alice"), ("unwatch", "room1", "alice")]
    deliver(as_verdict(props), verdict_json("alice"))
    follow.after([Send(BIDI, b"ack")])  # a stopped follower never watches again
    assert handled == [] and len(source.calls) == 2


def test_a_session_without_chat_never_follows() -> None:
    follow, core, source, _ = follower()
    follow.after([Send(BIDI, b"ack")])
    assert not core.chatted and source.calls == []
