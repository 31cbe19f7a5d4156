"""Egress: a room's output topics streamed back to viewers.

One ``RoomFeed`` per output topic and process, shared by every viewer of that topic. It reads the
topic from the start once, keeping only what a late joiner needs: the latest init segment and the
fragments since the latest keyframe (plus the last few chat messages). A viewer that joins gets that
snapshot at once, then live messages; when the stream has ended (its end of stream came, ENVELOPE.md)
or went quiet past ``join_stale_after`` there is nothing to join, and the viewer gets the next stream
from its first message (init segment and keyframe) on. ``ViewerTracks`` decides per viewer what to send where: media go
one group (keyframe to keyframe) per stream; a viewer whose stream backs up past a byte budget has
that group cancelled and resumes at the next keyframe instead of queuing (docs/media-and-webtransport.md §1.8).

Verdicts are not for viewers: ``VerdictFeed`` tails ``room-<room>-moderation`` (route copies each
verdict there) and hands a verdict only to the publisher sessions of the user it names, which send it
on as a VERDICT record if it is about a chat frame they published (FRAMING.md "Verdict").
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ingress.names import check_name, room_topic, room_topic_url
from ingress.ws_frames import binary_frame
from schemas.framing import Delivery, Kind, serialize_delivery

if TYPE_CHECKING:
    from ingress.server import IngressApp
    from ingress.session import Action, PublisherSession

log = logging.getLogger(__name__)

READ_TIMEOUT_MS = 100
CHAT_BACKLOG = 20  # chat messages replayed to a joining viewer
GOP_CACHE_BYTES = 16 * 1024 * 1024  # a group bigger than this is not cached (joiners wait for the next)
GROUPED_KINDS = (Kind.VIDEO, Kind.SCREEN)  # one stream per group, skip to keyframes when slow
DEDUP_TRACKS = 1024  # tracks / chat senders a DeliveryDedup remembers (least recently used go first)
DEDUP_CHAT_WINDOW = 4096  # recent chat identities remembered per sender stream


@dataclass(slots=True)
class Item:
    """One message of an output topic, as the egress sees it.

    One Item is shared by every viewer of its topic in this process, so what every viewer needs is
    worked out once per message, not once per viewer: its segment type and keyframe flag on creation,
    its DELIVERY record (``record()``) and its WebSocket frame (``ws_frame()``) on first use."""

    kind: Kind
    properties: dict[str, str]
    payload: bytes
    published_ms: float = 0.0  # the broker's publish time (0 = unknown)
    is_init: bool = field(init=False)
    is_end: bool = field(init=False)  # the track's stream ended (ENVELOPE.md "End of stream")
    is_key: bool = field(init=False)
    _record: bytes | None = field(init=False, default=None, repr=False)
    _ws_frame: bytes | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        segment_type = self.properties.get("segment_type")
        self.is_init = segment_type == "init"
        self.is_end = segment_type == "end"
        # Fragments written with frag_keyframe start with a keyframe; chunk marks others keyframe=0.
        self.is_key = self.is_init or (not self.is_end and self.properties.get("keyframe", "1") != "0")

    def record(self) -> bytes:
        """The DELIVERY record (FRAMING.md), serialized on the first call and shared after."""
        if self._record is None:
            self._record = serialize_delivery(Delivery(self.kind, self.properties, self.payload))
        return self._record

    def ws_frame(self) -> bytes:
        """The record as one whole unmasked, uncompressed binary WebSocket frame (server to client),
        built once for all WebSocket viewers (ws_frames.binary_frame)."""
        if self._ws_frame is None:
            self._ws_frame = binary_frame(self.record())
        return self._ws_frame


class DeliveryDedup:
    """Drops what at-least-once delivery repeats, by (stream, seq), before a viewer or ``wtpulsar consume``
    sees it: a viewer sees each frame once. Sans-I/O.

    Media: per track (user, stream, rendition or kind) the highest frame seq delivered; a fragment is
    delivered only when it holds a frame above it (``first_seq``..``last_seq``, ENVELOPE.md "Segments":
    after a chunk restart fragment boundaries and ``segment_seq`` start afresh, frame seqs do not).
    Init segments always pass (a restarted chunker sends a new one and the next fragment needs it).
    Chat: per message, so a resend that arrives after later messages is still caught; the identity is
    the chat JSON's ``msg_id`` (unique per message, the same in every copy) else (user, stream, seq).
    Memory is bounded: DEDUP_CHAT_WINDOW identities per sender stream, DEDUP_TRACKS tracks in all.
    A message with nothing to compare by is delivered rather than lost."""

    def __init__(self) -> None:
        self.highest: OrderedDict[tuple[str, str, str], int] = OrderedDict()
        self.chat_seen: OrderedDict[tuple[str, str], OrderedDict[str, None]] = OrderedDict()
        self.dropped = 0

    def accept(self, kind: Kind, properties: Mapping[str, str], payload: bytes = b"") -> bool:
        if properties.get("segment_type") == "init":
            return True
        user, stream = properties.get("user", ""), properties.get("stream", "")
        if kind == Kind.CHAT and "first_seq" not in properties:
            ident = _chat_identity(properties, payload)
            if ident is None:
                return True
            seen = self.chat_seen.get((user, stream))
            if seen is None:
                seen = self.chat_seen[(user, stream)] = OrderedDict()
                if len(self.chat_seen) > DEDUP_TRACKS:
                    self.chat_seen.popitem(last=False)
            else:
                self.chat_seen.move_to_end((user, stream))
            if ident in seen:
                self.dropped += 1
                return False
            seen[ident] = None
            if len(seen) > DEDUP_CHAT_WINDOW:
                seen.popitem(last=False)
            return True
        try:
            if "first_seq" in properties:
                last = int(properties["last_seq"])
            else:
                last = int(properties["seq"])
        except (KeyError, ValueError):
            return True
        track = (user, stream, properties.get("rendition") or properties.get("kind") or kind.name.lower())
        if last <= self.highest.get(track, -1):
            self.dropped += 1
            return False
        self.highest[track] = last
        self.highest.move_to_end(track)
        if len(self.highest) > DEDUP_TRACKS:
            self.highest.popitem(last=False)
        return True


def _chat_identity(properties: Mapping[str, str], payload: bytes) -> str | None:
    try:
        body = json.loads(payload.decode("utf-8")) if payload else None
    except (UnicodeDecodeError, ValueError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("msg_id"), str) and body["msg_id"]:
        return "id:" + str(body["msg_id"])
    seq = properties.get("seq")
    return None if seq is None else "seq:" + seq


class JoinPoint:
    """What a late joiner needs from one topic: latest init + fragments since the latest keyframe,
    or the last few chat messages. Sans-I/O; RoomFeed and ``wtpulsar consume`` share it.

    A stream that ended (its end of stream came) leaves nothing to join; ``live()`` also says no for
    media whose newest message is older than ``stale_ms`` (a publisher or ingress that died without
    an end), so a joiner is never shown a frozen picture of a stream that is over."""

    def __init__(self, kind: Kind) -> None:
        self.kind = kind
        self.init: Item | None = None
        self.group: list[Item] = []
        self.group_bytes = 0
        self.chat: deque[Item] = deque(maxlen=CHAT_BACKLOG)
        self.newest_ms = 0.0  # publish time of the newest media message remembered

    @property
    def stream(self) -> str:
        """The stream id the media join point belongs to ('' when there is none)."""
        return self.init.properties.get("stream", "") if self.init is not None else ""

    def live(self, now_ms: float, stale_ms: float) -> bool:
        """Media: a stream to join, whose newest message is younger than ``stale_ms``. Chat: always."""
        if self.kind == Kind.CHAT:
            return True
        return self.init is not None and (not self.newest_ms or now_ms - self.newest_ms < stale_ms)

    def remember(self, item: Item) -> None:
        if self.kind == Kind.CHAT:
            self.chat.append(item)
            return
        if self.kind == Kind.FILE:
            return
        if item.is_end:
            if item.properties.get("stream", "") == self.stream:
                self.init, self.group, self.group_bytes = None, [], 0
            return
        if item.published_ms:
            self.newest_ms = max(self.newest_ms, item.published_ms)
        if item.is_init:
            self.init = item
            self.group, self.group_bytes = [], 0
        elif item.is_key:
            self.group, self.group_bytes = [item], len(item.payload)
        elif self.group:
            self.group_bytes += len(item.payload)
            if self.group_bytes > GOP_CACHE_BYTES:
                self.group, self.group_bytes = [], 0
            else:
                self.group.append(item)

    def snapshot(self) -> list[Item]:
        if self.kind == Kind.CHAT:
            return list(self.chat)
        return ([self.init] if self.init else []) + list(self.group)


class ViewerSink:
    """Transport side of one viewer (WebTransport streams or one WebSocket)."""

    def open_group(self, kind: Kind) -> Any:
        raise NotImplementedError

    def write(self, handle: Any, data: bytes) -> None:
        raise NotImplementedError

    def write_item(self, handle: Any, item: Item) -> None:
        """Send ``item``'s DELIVERY record; a sink with a cheaper way for shared items overrides it."""
        self.write(handle, item.record())

    def end_group(self, handle: Any) -> None:
        """Finish a group stream normally (FIN)."""

    def abort_group(self, handle: Any) -> None:
        """Cancel a group stream the viewer is too slow for (reset)."""

    def queued(self, handle: Any) -> int:
        """Bytes written to ``handle`` the peer has not yet acknowledged/read."""
        return 0

    def flush(self) -> None:
        pass


@dataclass(slots=True)
class _Track:
    handle: Any = None
    stream: str = ""  # the stream id this viewer was last sent on this track
    waiting_key: bool = True
    after_init: bool = False  # the open group holds only an init segment so far
    skipped: int = 0


@dataclass(eq=False)
class ViewerTracks:
    """Per-viewer delivery policy; transport-neutral (the sink does the I/O)."""

    sink: ViewerSink
    queue_budget: int  # bytes
    on_skip: Callable[[Kind], None] = lambda kind: None
    on_deliver: Callable[[Kind], None] = lambda kind: None
    tracks: dict[Kind, _Track] = field(default_factory=dict)
    # None when whoever offers items has dropped repeats already (RoomFeed does, once for all its viewers)
    dedup: DeliveryDedup | None = field(default_factory=DeliveryDedup)

    def offer(self, item: Item) -> None:
        if self.dedup is not None and not self.dedup.accept(item.kind, item.properties, item.payload):
            return  # a copy at-least-once delivery repeated: this viewer already has it
        if item.is_end:
            self._end(item)
            return
        track = self.tracks.get(item.kind)
        if track is None:
            track = self.tracks[item.kind] = _Track(waiting_key=item.kind in GROUPED_KINDS)
        stream = item.properties.get("stream")
        if stream:
            track.stream = stream
        if item.kind not in GROUPED_KINDS:
            # audio, chat, file: one long-lived stream each; audio is dropped (never queued) when
            # the viewer is behind, chat and files are always sent.
            if track.handle is None:
                track.handle = self.sink.open_group(item.kind)
            if item.kind == Kind.AUDIO and self.sink.queued(track.handle) > self.queue_budget:
                track.skipped += 1
                self.on_skip(item.kind)
                return
            self.sink.write_item(track.handle, item)
            self.on_deliver(item.kind)
            return
        if item.is_init:
            # A new init segment starts a new group; the keyframe after it stays on that stream.
            self._finish(track)
            track.handle = self.sink.open_group(item.kind)
            track.after_init, track.waiting_key = True, True
            self._write(track, item)
            return
        if item.is_key:
            if track.handle is None or not track.after_init:
                self._finish(track)
                track.handle = self.sink.open_group(item.kind)
            track.after_init, track.waiting_key = False, False
            self._write(track, item)
            return
        if track.waiting_key or track.handle is None:
            track.skipped += 1
            self.on_skip(item.kind)
            return
        if self.sink.queued(track.handle) > self.queue_budget:
            # Too slow for this group: cancel it and resume at the next keyframe (docs/media-and-webtransport.md §1.8).
            self.sink.abort_group(track.handle)
            track.handle, track.waiting_key = None, True
            track.skipped += 1
            self.on_skip(item.kind)
            return
        self._write(track, item)

    def _end(self, item: Item) -> None:
        """Tell the viewer a stream it was sent ended: on the stream's group, which then finishes (the
        next stream starts with its init on a new one); an end of a stream this viewer was not sent
        anything of is not for it."""
        track = self.tracks.get(item.kind)
        stream = item.properties.get("stream", "")
        if track is None or track.stream != stream:
            return
        if track.handle is None:
            track.handle = self.sink.open_group(item.kind)
        self.sink.write_item(track.handle, item)
        self.on_deliver(item.kind)
        if item.kind in GROUPED_KINDS:
            self.sink.end_group(track.handle)
            track.handle = None
            track.waiting_key, track.after_init = True, False
        track.stream = ""

    def _write(self, track: _Track, item: Item) -> None:
        self.sink.write_item(track.handle, item)
        self.on_deliver(item.kind)

    def _finish(self, track: _Track) -> None:
        if track.handle is None:
            return
        if self.sink.queued(track.handle) > self.queue_budget:
            self.sink.abort_group(track.handle)
        else:
            self.sink.end_group(track.handle)
        track.handle = None

    def close(self) -> None:
        for track in self.tracks.values():
            if track.handle is not None:
                self.sink.end_group(track.handle)
                track.handle = None


class RoomFeed:
    """Tails one output topic; keeps the late-joiner snapshot; fans out to subscribed viewers.

    The join point is found from the topic's end (join_from_end.JoinFinder), not by reading the topic
    from its start, unless the hub says otherwise (IngressConfig.join_from_end)."""

    from_end = True

    def __init__(self, hub: EgressHub, short_name: str, kind: Kind) -> None:
        self.hub = hub
        self.short_name = short_name
        self.kind = kind
        self.viewers: set[ViewerTracks] = set()
        # viewers that joined while there was no live stream to join: primed by the next one's first message
        self.unprimed: set[ViewerTracks] = set()
        self.caught_up = False
        self.join_point = JoinPoint(kind)
        self.dedup = DeliveryDedup()  # so the join point never caches a repeated copy either
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str = ""
        self.search: Any = None  # the JoinSearch of a feed that joined from the end (what it read, seeks)

    def start(self, loop: asyncio.AbstractEventLoop, client: Any) -> None:
        self._thread = threading.Thread(target=self._run, args=(loop, client), daemon=True,
                                        name=f"egress-{self.short_name}")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float = 2.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _item(self, msg: Any) -> Item:
        return Item(self.kind, dict(msg.properties()), msg.data(), float(msg.publish_timestamp()))

    def _run(self, loop: asyncio.AbstractEventLoop, client: Any) -> None:
        import pulsar

        url = room_topic_url(self.hub.tenant, self.hub.namespace, self.short_name)
        from_end = self.from_end and self.hub.join_from_end
        try:
            if from_end:  # the newest message first (join_from_end.JoinFinder)
                reader = client.create_reader(url, pulsar.MessageId.latest, start_message_id_inclusive=True)
            else:
                reader = client.create_reader(url, pulsar.MessageId.earliest)
        except Exception as exc:
            self.error = str(exc)
            log.warning("egress: cannot read %s: %s", url, exc)
            return
        caught_up = False
        try:
            if from_end:
                from ingress.join_from_end import JoinFinder, PulsarTopic

                finder = JoinFinder(self.kind, PulsarTopic(client, url, self._item), JoinPoint, DeliveryDedup,
                                    stale_ms=self.hub.stale_after * 1000.0, window_entries=self.hub.join_window)
                try:
                    self.search = finder.find(reader, time.time() * 1000.0)
                finally:
                    reader = finder.result.reader  # the one at the end of the topic: it tails it
                if self.search.fallback:
                    log.info("egress: %s read from its start: %s", url, self.search.fallback)
                for item in self.search.items:
                    loop.call_soon_threadsafe(self._on_item, item)
            while not self._stop.is_set():
                try:
                    msg = reader.read_next(READ_TIMEOUT_MS)
                except pulsar.Timeout:
                    if not caught_up:
                        caught_up = True
                        loop.call_soon_threadsafe(self._caught_up)
                    continue
                loop.call_soon_threadsafe(self._on_item, self._item(msg))
                if not caught_up and not reader.has_message_available():
                    caught_up = True
                    loop.call_soon_threadsafe(self._caught_up)
        except Exception as exc:  # reader closed under us at shutdown, or broker gone
            if not self._stop.is_set():
                log.warning("egress: reading %s failed: %s", url, exc)
        finally:
            try:
                reader.close()
            except Exception:
                pass

    # ---- on the event loop ---------------------------------------------------------------
    def _on_item(self, item: Item) -> None:
        if not self.dedup.accept(item.kind, item.properties, item.payload):
            return
        self.join_point.remember(item)
        if self.caught_up:
            # The same Item (and so the same record bytes, item.record()) goes to every viewer.
            unprimed = self.unprimed
            for viewer in list(self.viewers):
                if viewer not in unprimed:
                    viewer.offer(item)
                elif not item.is_end and self._joinable():  # a stream (re)started: from its init on
                    unprimed.discard(viewer)
                    self._replay(viewer)
            self._flush()

    def _flush(self) -> None:
        """Hand what this feed just wrote to its viewers' transports (not every viewer of the process)."""
        for viewer in self.viewers:
            viewer.sink.flush()

    def _caught_up(self) -> None:
        if self.caught_up:
            return
        self.caught_up = True
        for viewer in list(self.viewers):
            self._join(viewer)
        self._flush()

    def _joinable(self) -> bool:
        return self.join_point.live(time.time() * 1000.0, self.hub.stale_after * 1000.0)

    def _join(self, viewer: ViewerTracks) -> None:
        """A viewer arrives: the join point if a stream is live, else nothing until one starts."""
        if self._joinable():
            self._replay(viewer)
        else:
            self.unprimed.add(viewer)

    def _replay(self, viewer: ViewerTracks) -> None:
        for item in self.join_point.snapshot():
            viewer.offer(item)

    def add(self, viewer: ViewerTracks) -> None:
        self.viewers.add(viewer)
        if self.caught_up:
            self._join(viewer)

    def discard(self, viewer: ViewerTracks) -> None:
        self.viewers.discard(viewer)
        self.unprimed.discard(viewer)


def verdict_topic(room: str) -> str:
    """Short name of a room's verdict topic (ENVELOPE.md ``room-<room>-moderation``)."""
    return f"room-{check_name('room', room)}-moderation"


@dataclass(eq=False)
class VerdictWatch:
    """One publisher session following its room's verdicts; ``deliver`` gets (properties, payload)."""

    room: str
    user: str
    deliver: Callable[[dict[str, str], bytes], None]


class VerdictFeed(RoomFeed):
    """Tails ``room-<room>-moderation`` from the start. Nothing is replayed: a session waits only for
    verdicts about frames it sent after it began following, and reading from the earliest message
    means a verdict written before this reader was positioned is still seen (no start-up race)."""

    from_end = False  # every verdict counts, also those written before this reader was positioned

    def __init__(self, hub: EgressHub, room: str) -> None:
        super().__init__(hub, verdict_topic(room), Kind.CHAT)
        self.watchers: set[VerdictWatch] = set()

    def _on_item(self, item: Item) -> None:
        user = item.properties.get("user")
        for watch in list(self.watchers):
            if watch.user == user:  # private: never offered to another user's sessions
                watch.deliver(item.properties, item.payload)

    def _caught_up(self) -> None:
        self.caught_up = True


class VerdictFollower:
    """Mixin for publishing shells (before PublishingShell in the bases): once the session has sent
    chat, it follows its room's verdicts and passes those about its own frames to the client."""

    app: IngressApp
    core: PublisherSession
    ended: bool
    verdict_watch: VerdictWatch | None = None

    def handle(self, actions: list[Action]) -> None:
        super().handle(actions)  # type: ignore[misc]  # a mixin: the publishing class it is mixed into has handle
        if actions and self.verdict_watch is None and self.core.chatted and not self.ended:
            claims = self.core.claims
            self.verdict_watch = self.app.egress.watch_verdicts(claims.room, claims.user, self.on_verdict)

    def on_verdict(self, properties: dict[str, str], payload: bytes) -> None:
        if not self.ended:
            actions = self.core.verdict(properties, payload)
            if actions:
                self.handle(actions)

    def stop_following_verdicts(self) -> None:
        watch, self.verdict_watch = self.verdict_watch, None
        if watch is not None:
            self.app.egress.unwatch_verdicts(watch)


def _per_kind(child: Callable[[str], Any]) -> Callable[[Kind], None]:
    """``inc(kind)`` for a counter labelled by kind, its label looked up once per kind, not per message."""
    children: dict[Kind, Any] = {}

    def inc(kind: Kind) -> None:
        counter = children.get(kind)
        if counter is None:
            counter = children[kind] = child(kind.name.lower())
        counter.inc()

    return inc


class EgressHub:
    def __init__(self, app: IngressApp, client_factory: Callable[[], Any] | None = None) -> None:
        self.app = app
        self.tenant = app.config.tenant
        self.namespace = app.config.namespace
        self.stale_after = app.config.join_stale_after  # s; see JoinPoint.live
        self.join_from_end = app.config.join_from_end
        self.join_window = app.config.join_window
        self._client_factory = client_factory
        self._client: Any = None
        self.feeds: dict[str, RoomFeed] = {}
        self.verdict_feeds: dict[str, VerdictFeed] = {}  # by room
        self._sinks: set[ViewerSink] = set()
        metrics = app.metrics
        self._count_delivery = _per_kind(lambda k: metrics.delivered.labels(k))
        self._count_skip = _per_kind(lambda k: metrics.skipped.labels(k))

    def _get_client(self) -> Any:
        if self._client is None:
            if self._client_factory is not None:
                self._client = self._client_factory()
            else:
                import pulsar

                from ingress.broker_auth import client_kwargs

                self._client = pulsar.Client(self.app.config.broker_service_url,
                                             logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn),
                                             **client_kwargs(self.app.config.broker_token))
        return self._client

    def subscribe(self, sink: ViewerSink, room: str, kinds: tuple[Kind, ...], rendition: str) -> ViewerTracks:
        # dedup=None: each RoomFeed drops repeats once for all its viewers before offering
        viewer = ViewerTracks(sink, self.app.config.viewer_queue_bytes, on_skip=self._count_skip,
                              on_deliver=self._count_delivery, dedup=None)
        loop = asyncio.get_running_loop()
        for kind in kinds:
            short = room_topic(room, kind, rendition if kind in GROUPED_KINDS else None)
            feed = self.feeds.get(short)
            if feed is None:
                feed = self.feeds[short] = RoomFeed(self, short, kind)
                feed.start(loop, self._get_client())
            feed.add(viewer)
        self._sinks.add(sink)
        sink.flush()
        return viewer

    def unsubscribe(self, viewer: ViewerTracks) -> None:
        self._sinks.discard(viewer.sink)
        for short, feed in list(self.feeds.items()):
            feed.discard(viewer)
            if not feed.viewers:
                feed.stop()
                del self.feeds[short]

    def watch_verdicts(self, room: str, user: str,
                       deliver: Callable[[dict[str, str], bytes], None]) -> VerdictWatch:  # fmt: skip
        """Call ``deliver`` (on the event loop) for each verdict about ``user`` in ``room``."""
        watch = VerdictWatch(room, user, deliver)
        feed = self.verdict_feeds.get(room)
        if feed is None:
            feed = self.verdict_feeds[room] = VerdictFeed(self, room)
            feed.start(asyncio.get_running_loop(), self._get_client())
        feed.watchers.add(watch)
        return watch

    def unwatch_verdicts(self, watch: VerdictWatch) -> None:
        feed = self.verdict_feeds.get(watch.room)
        if feed is None:
            return
        feed.watchers.discard(watch)
        if not feed.watchers:
            feed.stop()
            del self.verdict_feeds[watch.room]

    def flush(self) -> None:
        for sink in list(self._sinks):
            sink.flush()

    async def close(self) -> None:
        feeds: list[RoomFeed] = [*self.feeds.values(), *self.verdict_feeds.values()]
        self.feeds.clear()
        self.verdict_feeds.clear()
        for feed in feeds:
            feed.stop()
        client, self._client = self._client, None

        def finish() -> None:
            for feed in feeds:
                feed.join()
            if client is not None and self._client_factory is None:
                client.close()

        await asyncio.to_thread(finish)
