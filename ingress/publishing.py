"""Transport-neutral shell around ``session.PublisherSession``: runs its actions against the broker.

WebTransport and WebSocket subclasses only say how to write a record, close a stream or the session,
and how to stop/resume reading. Everything else (publishing, ack coalescing, metrics, backpressure
state) is here, once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial
from typing import TYPE_CHECKING, Any

from ingress.chat_signing import PROPERTY as CHAT_SIGNATURE
from ingress.chat_signing import sign as sign_chat
from ingress.session import (
    MEDIA_KINDS,
    Action,
    CloseSession,
    CloseStream,
    Publish,
    PublisherSession,
    Rejected,
    Send,
)
from ingress.verdicts import VerdictFollower
from schemas.framing_codec import CloseCode

if TYPE_CHECKING:
    from ingress.app import IngressApp

log = logging.getLogger(__name__)
_MEDIA = frozenset(kind.name.lower() for kind in MEDIA_KINDS)


def _ended(stream: str, ok: bool, err: str) -> None:
    if not ok:
        log.warning("end of stream %s not published: %s", stream, err)


class PublishingShell:
    transport = "?"

    def __init__(self, app: IngressApp, core: PublisherSession, address: str) -> None:
        self.app = app
        self.core = core
        self.address = address
        self._ack_flush_scheduled = False
        self._was_paused = False
        self.ended = False
        # once the session has sent chat, verdicts about its frames come back through handle()
        self.verdicts = VerdictFollower(app.egress, core, self.handle)
        # kind -> (frames counter, bytes counter) children: labels() per frame is a lock + dict lookup
        self._kind_metrics: dict[str, tuple[Any, Any]] = {}

    # ---- transport hooks (subclasses) -------------------------------------------------------
    def send_record(self, channel: int, data: bytes) -> None:
        raise NotImplementedError

    def close_stream(self, channel: int, code: CloseCode, reason: str) -> None:
        raise NotImplementedError

    def close_session(self, code: CloseCode, reason: str) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Push queued writes out (WebTransport: transmit())."""

    def pause_changed(self, paused: bool) -> None:
        """Backpressure state flipped; resume reading / grant credit when ``paused`` is False."""

    # ---- shared logic -----------------------------------------------------------------------
    @property
    def paused(self) -> bool:
        return self.core.backlogged

    def handle(self, actions: list[Action]) -> None:
        if not actions:
            # Most QUIC packets carry part of a frame and yield nothing: nothing was written, so no flush;
            # a broker receipt may still have freed an in-flight slot, so the pause state is checked.
            self._check_pause()
            return
        now = time.time()
        metrics = self.app.metrics
        for action in actions:
            if isinstance(action, Publish):
                kind = action.properties["kind"]
                counters = self._kind_metrics.get(kind)
                if counters is None:
                    counters = self._kind_metrics[kind] = (metrics.frames.labels(kind, self.transport),
                                                           metrics.frame_bytes.labels(kind))
                counters[0].inc()
                counters[1].inc(len(action.payload))
                if kind in _MEDIA:
                    # this session now publishes the stream: its end of stream is this session's to send
                    self.app.stream_owners[(self.core.claims.room, action.key)] = self
                elif kind == "chat" and self.app.config.chat_signing_key is not None:
                    # moderate accepts only chat the ingress signed (chat_signing, SECURITY.md)
                    action.properties[CHAT_SIGNATURE] = sign_chat(self.app.config.chat_signing_key,
                                                                  action.properties, action.payload)
                self.app.publisher.send(action, now, partial(self._published, action.ticket))
            elif isinstance(action, Send):
                self.send_record(action.channel, action.data)
            elif isinstance(action, CloseStream):
                self.close_stream(action.channel, action.code, action.reason)
            elif isinstance(action, CloseSession):
                self.close_session(action.code, action.reason)
            elif isinstance(action, Rejected):
                metrics.rejected.labels(action.what).inc()
        self._check_pause()
        self.flush()
        if not self.ended:
            self.verdicts.after(actions)

    def stop_following_verdicts(self) -> None:
        self.verdicts.stop()

    def end_streams(self, reason: str) -> int:
        """The session ended (``reason``: left, timeout, closed): publish an end of stream for each media
        stream it published and still owns (ENVELOPE.md "End of stream"); a stream another live session
        of this ingress has taken over since (a reconnect) goes on. Returns how many were sent."""
        owners = self.app.stream_owners
        room = self.core.claims.room
        now = time.time()
        sent = 0
        for publish in self.core.end_of_streams(reason, now):
            key = (room, publish.key)
            if owners.get(key) is not self:
                continue
            del owners[key]
            self.app.publisher.send(publish, now, partial(_ended, publish.key))
            self.app.metrics.streams_ended.labels(reason).inc()
            sent += 1
        return sent

    def _published(self, ticket: int, ok: bool, err: str) -> None:
        if self.ended:
            return
        self.handle(self.core.published(ticket, ok, err))
        if not self._ack_flush_scheduled:
            # Coalesce cumulative media acks of everything the broker confirmed in this loop pass.
            self._ack_flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_acks)

    def _flush_acks(self) -> None:
        self._ack_flush_scheduled = False
        if not self.ended:
            self.handle(self.core.take_cumulative_acks())

    def _check_pause(self) -> None:
        paused = self.paused
        if paused != self._was_paused:
            self._was_paused = paused
            if paused:
                self.app.metrics.paused.inc()
            self.pause_changed(paused)
