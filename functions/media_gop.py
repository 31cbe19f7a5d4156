"""Hold the acks of an inter-coded stream's inputs until their whole GOP is safely published.

Why: a P-frame can only be decoded after its GOP's keyframe. If transcode acked each input as
soon as its own outputs were persisted, a kill -9 mid-GOP would leave the rest of the GOP
unacked but the keyframe acked; Pulsar redelivers from the first unacked input, the restarted
instance's fresh decoder has no reference and would have to drop those frames: frames the
ingress had acknowledged would be lost (at-least-once broken, tests/test_faults_pipeline.py).

The rule, per stream (Key_Shared pins a stream to one instance, docs/pulsar-functions.md §2.1):
  * Inputs are grouped into GOPs in arrival order; a keyframe opens a new GOP. Inputs before the
    stream's first keyframe (dropped while waiting for one) form a GOP of their own.
  * A GOP's inputs are acked together, and only when (a) every input of the GOP has finished
    (its publish callbacks all came back, or it legitimately had no output) and (b) the GOP is
    closed: the keyframe that opens the next GOP has finished its publishes too.
  * If any publish of a GOP failed, none of its inputs are acked (so redelivery after a restart
    starts at or before its keyframe and everything is decoded again).
So every input acked belongs to a GOP whose frames are all on the output and whose successor
keyframe is too; after a crash the first unacked input of a stream is a keyframe (or a frame
whose output already went out), and the restarted decoder re-produces every frame that was not
published. Outputs produced again are duplicates with unchanged `seq`; downstream drops them
by (stream, seq).

Bounded: a stream that never sends another keyframe must not pin acks for ever. A GOP is also
closed, without waiting for a successor keyframe, once it holds `max_frames` inputs or has been
open `max_age_s` (checked on every add and by `expire()`), and `release_all()` closes everything
when the stream is evicted. Such a forced close gives up the guarantee above for the frames up
to the next keyframe (a crash there redelivers from a P-frame, which the new decoder must drop);
the defaults are set well above a browser's keyframe interval so this only hits broken senders.

Thread-safety: `done` callbacks arrive on client threads (publish callbacks), `add` on the
instance thread, hence the lock; acks are sent outside it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Ack = Callable[[Any, str], None]


@dataclass(eq=False)
class _Gop:
    opened_at: float
    inputs: list[tuple[Any, str]] = field(default_factory=list)
    outstanding: int = 0  # inputs whose publishes have not all come back yet
    failed: bool = False
    closed: bool = False  # no more inputs join (a keyframe opened the next GOP, or a bound hit)
    ready: bool = False  # the successor keyframe finished, or a bound/eviction released it
    successors_of: list[_Gop] = field(default_factory=list)  # GOPs that this GOP's keyframe releases


class GopAckHolder:
    """The held acks of one stream; see the module docstring for the rule."""

    def __init__(self, ack: Ack, *, max_frames: int, max_age_s: float, clock: Callable[[], float]) -> None:
        if max_frames < 1 or max_age_s <= 0:
            raise ValueError(f"max_frames must be >= 1 and max_age_s > 0, got {max_frames}, {max_age_s}")
        self._ack = ack
        self._max_frames = max_frames
        self._max_age_s = max_age_s
        self._clock = clock
        self._lock = threading.Lock()
        self._gops: list[_Gop] = []  # unreleased, oldest first; the last one may be open
        self.acked = 0
        self.forced = 0  # GOPs closed by a bound instead of a keyframe
        self.abandoned = 0  # inputs left unacked because a publish of their GOP failed

    @property
    def held(self) -> int:
        """Inputs registered and not yet acked or abandoned."""
        with self._lock:
            return sum(len(g.inputs) for g in self._gops)

    def add(self, msg_id: Any, topic: str, *, keyframe: bool, standalone: bool = False) -> Callable[[bool], None]:
        """Register one input; returns `done(ok)`, to be called once when its publishes completed
        (ok = all succeeded), or at once with True when it has no output. `standalone` is for
        intra-only codecs: the frame opens a GOP and closes it (nothing later depends on it)."""
        with self._lock:
            now = self._clock()
            current = self._open_gop()
            if keyframe or standalone or current is None:
                predecessors = [g for g in self._gops if not g.ready]
                for gop in predecessors:
                    gop.closed = True
                current = _Gop(opened_at=now)
                if keyframe or standalone:
                    current.successors_of = predecessors
                self._gops.append(current)
            current.inputs.append((msg_id, topic))
            current.outstanding += 1
            if standalone:
                current.closed = current.ready = True
            elif len(current.inputs) >= self._max_frames or now - current.opened_at >= self._max_age_s:
                current.closed = current.ready = True
                self.forced += 1
        gop, first = current, len(current.inputs) == 1

        def done(ok: bool) -> None:
            with self._lock:
                gop.outstanding -= 1
                if not ok:
                    gop.failed = True
                if first:  # a GOP's first input (its keyframe) finishing releases the GOPs before it
                    for older in gop.successors_of:
                        older.ready = True
                    gop.successors_of = []
                ready = self._take_ready()
            self._send(ready)

        return done

    def expire(self) -> None:
        """Close the open GOP if it is older than `max_age_s` (call it now and then, even when the
        stream sends nothing: a stopped stream's last GOP is released this way)."""
        with self._lock:
            current = self._open_gop()
            if current is not None and self._clock() - current.opened_at >= self._max_age_s:
                current.closed = current.ready = True
                self.forced += 1
            ready = self._take_ready()
        self._send(ready)

    def release_all(self) -> None:
        """The stream is gone: ack every held input once its publishes are back."""
        with self._lock:
            for gop in self._gops:
                gop.closed = gop.ready = True
            ready = self._take_ready()
        self._send(ready)

    def _open_gop(self) -> _Gop | None:
        if self._gops and not self._gops[-1].closed:
            return self._gops[-1]
        return None

    def _take_ready(self) -> list[tuple[Any, str]]:
        ready: list[tuple[Any, str]] = []
        keep: list[_Gop] = []
        for gop in self._gops:
            if gop.closed and gop.ready and gop.outstanding == 0:
                if gop.failed:
                    self.abandoned += len(gop.inputs)
                else:
                    ready.extend(gop.inputs)
            else:
                keep.append(gop)
        self._gops = keep
        self.acked += len(ready)
        return ready

    def _send(self, ready: list[tuple[Any, str]]) -> None:
        for msg_id, topic in ready:
            self._ack(msg_id, topic)
