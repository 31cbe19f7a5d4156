"""Egress: the Pulsar reader threads that stream a room's output topics back to viewers.

One ``RoomFeed`` per output topic and process, shared by every viewer of that topic. Its thread reads
the topic (from its end, join_from_end.JoinFinder, or from its start) and hands each message to the
event loop as an ``Item``; there the feed keeps the topic's ``JoinPoint`` and offers each Item to its
viewers' ``ViewerTracks``. A viewer that joins gets the join point at once, then live messages; when the
stream has ended (its end of stream came, ENVELOPE.md) or went quiet past ``join_stale_after`` there is
nothing to join, and the viewer gets the next stream from its first message (init segment and keyframe)
on. What each viewer is sent, and when a slow one skips, is decided in viewer.py, without I/O.

Verdicts are not for viewers: ``VerdictFeed`` tails ``room-<room>-moderation`` and hands a verdict only
to the publisher sessions of the user it names (verdicts.py). ``EgressHub`` owns the feeds and the
Pulsar client of one ingress process.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ingress.join_from_end import JoinFinder, PulsarTopic
from ingress.names import room_topic, room_topic_url
from ingress.reader_client import SharedReaderClient
from ingress.verdicts import VerdictWatch, verdict_topic
from ingress.viewer import GROUPED_KINDS, DeliveryDedup, Item, JoinPoint, RoomFanout, ViewerSink, ViewerTracks
from schemas.framing_codec import Kind

if TYPE_CHECKING:
    from ingress.config import IngressConfig
    from ingress.metrics import IngressMetrics

log = logging.getLogger(__name__)

READ_TIMEOUT_MS = 100


class TopicReader:
    """A thread that reads one topic and hands each message to the event loop (``_on_item``), and says
    once when it has read what the topic held (``_caught_up``). RoomFeed and VerdictFeed say what then."""

    from_end = False  # find the join point from the topic's end (join_from_end.JoinFinder)

    def __init__(self, hub: EgressHub, short_name: str, kind: Kind) -> None:
        self.hub = hub
        self.short_name = short_name
        self.kind = kind
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str = ""
        self.search: Any = None  # the JoinSearch of a feed that joined from the end (what it read, seeks)

    def _on_item(self, item: Item) -> None:
        raise NotImplementedError

    def _caught_up(self) -> None:
        raise NotImplementedError

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


class RoomFeed(TopicReader):
    """Tails one output topic; keeps the late-joiner snapshot; fans out to subscribed viewers.

    The join point is found from the topic's end (join_from_end.JoinFinder), not by reading the topic
    from its start, unless the hub says otherwise (IngressConfig.join_from_end)."""

    from_end = True

    def __init__(self, hub: EgressHub, short_name: str, kind: Kind) -> None:
        super().__init__(hub, short_name, kind)
        self.fanout = RoomFanout(kind, hub.stale_after * 1000.0)  # viewers, join point, dedup (viewer.py)

    # ---- on the event loop: the fan-out decides (viewer.RoomFanout), the feed flushes ----------
    def _on_item(self, item: Item) -> None:
        if self.fanout.offer(item, time.time() * 1000.0):
            self._flush()

    def _caught_up(self) -> None:
        if self.fanout.catch_up(time.time() * 1000.0):
            self._flush()

    def _flush(self) -> None:
        """Hand what this feed just wrote to its viewers' transports (not every viewer of the process),
        and count it in the metrics."""
        self.hub.flush_counts()
        for viewer in self.fanout.viewers:
            viewer.sink.flush()

    def add(self, viewer: ViewerTracks) -> None:
        self.fanout.add(viewer, time.time() * 1000.0)

    def discard(self, viewer: ViewerTracks) -> None:
        self.fanout.discard(viewer)


class VerdictFeed(TopicReader):
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
        """Nothing to replay: a session waits only for verdicts about frames it sent after following."""


class KindCounts:
    """Counts for a counter labelled by kind, kept in a dict per frame and viewer (``count(kind)``) and added
    to the counter once per batch (``flush``): a fan-out pass counts one frame for each of its viewers,
    and the counter's own increment (a lock, a label lookup) then happens once per kind, not per viewer."""

    def __init__(self, child: Callable[[str], Any]) -> None:
        self.child = child
        self.children: dict[Kind, Any] = {}
        self.pending: dict[Kind, int] = {}

    def count(self, kind: Kind) -> None:
        pending = self.pending
        pending[kind] = pending.get(kind, 0) + 1

    def flush(self) -> None:
        if not self.pending:
            return
        pending, self.pending = self.pending, {}
        for kind, n in pending.items():
            counter = self.children.get(kind)
            if counter is None:
                counter = self.children[kind] = self.child(kind.name.lower())
            counter.inc(n)


class EgressHub:
    def __init__(self, config: IngressConfig, metrics: IngressMetrics,
                 client_factory: Callable[[], Any] | None = None) -> None:
        self.config = config
        self.tenant = config.tenant
        self.namespace = config.namespace
        self.stale_after = config.join_stale_after  # s; see JoinPoint.live
        self.join_from_end = config.join_from_end
        self.join_window = config.join_window
        self._client = SharedReaderClient(config.broker_service_url, config.broker_token, client_factory)
        self.feeds: dict[str, RoomFeed] = {}
        self.verdict_feeds: dict[str, VerdictFeed] = {}  # by room
        self._sinks: set[ViewerSink] = set()
        self.delivered = KindCounts(lambda k: metrics.delivered.labels(k))
        self.skipped = KindCounts(lambda k: metrics.skipped.labels(k))

    def subscribe(self, sink: ViewerSink, room: str, kinds: tuple[Kind, ...], rendition: str) -> ViewerTracks:
        # dedup=None: each RoomFeed drops repeats once for all its viewers before offering
        viewer = ViewerTracks(sink, self.config.viewer_queue_bytes, on_skip=self.skipped.count,
                              on_deliver=self.delivered.count, dedup=None)
        loop = asyncio.get_running_loop()
        for kind in kinds:
            short = room_topic(room, kind, rendition if kind in GROUPED_KINDS else None)
            feed = self.feeds.get(short)
            if feed is None:
                feed = self.feeds[short] = RoomFeed(self, short, kind)
                feed.start(loop, self._client.get())
            feed.add(viewer)
        self.flush_counts()
        self._sinks.add(sink)
        sink.flush()
        return viewer

    def flush_counts(self) -> None:
        """Add what the fan-out counted since the last call to the delivered and skipped metrics."""
        self.delivered.flush()
        self.skipped.flush()

    def unsubscribe(self, viewer: ViewerTracks) -> None:
        self._sinks.discard(viewer.sink)
        for short, feed in list(self.feeds.items()):
            feed.discard(viewer)
            if not feed.fanout.viewers:
                feed.stop()
                del self.feeds[short]

    def watch_verdicts(self, room: str, user: str,
                       deliver: Callable[[dict[str, str], bytes], None]) -> VerdictWatch:  # fmt: skip
        """Call ``deliver`` (on the event loop) for each verdict about ``user`` in ``room``."""
        watch = VerdictWatch(room, user, deliver)
        feed = self.verdict_feeds.get(room)
        if feed is None:
            feed = self.verdict_feeds[room] = VerdictFeed(self, room)
            feed.start(asyncio.get_running_loop(), self._client.get())
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
        feeds: list[TopicReader] = [*self.feeds.values(), *self.verdict_feeds.values()]
        self.feeds.clear()
        self.verdict_feeds.clear()
        await self._client.close_after(feeds)
