"""The I/O side of HLS: one reader per room output topic filling a TrackWindow, and segments read back.

``HlsHub`` gives each room, on its first HLS request, a ``TrackFeed`` per rendition topic
(``room-<room>-video-<rendition>`` for each configured rendition, and ``room-<room>-audio``): a
pulsar-client reader from the topic's earliest retained message, on its own thread like the egress's
RoomFeed, handing every message (with its message id) to the event loop, where the TrackWindow cuts
it into parts and segments and wakes the requests blocked on the next part. Nothing is transcoded
and nothing is written to disk: the topic is the source of truth, the window a bounded cache of it.
A segment whose bytes the window has let go is read back from the topic, from the message id of its
first fragment (``read_back``). A room nobody asked for in ``idle_after`` seconds is closed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ingress.hls_playlist import Listing, media_playlist
from ingress.hls_window import HlsConfig, Segment, TrackWindow
from ingress.names import room_topic, room_topic_url
from ingress.reader_client import SharedReaderClient
from schemas.framing_codec import Kind

log = logging.getLogger(__name__)

READ_TIMEOUT_MS = 100
DEFAULT_RENDITIONS = ("720p", "360p")  # transcode's default ladder (README "The functions")
AUDIO_TRACK = "audio"


@dataclass(frozen=True, slots=True)
class HlsSettings:
    config: HlsConfig = HlsConfig()
    renditions: tuple[str, ...] = DEFAULT_RENDITIONS
    idle_after: float = 120.0  # s without a request before a room's readers stop
    catch_up_wait: float = 5.0  # s a first request waits for the readers to reach the topic's end
    read_back_timeout: float = 10.0
    max_rooms: int = 256  # rooms served at once (three readers each); more are refused until one goes idle


class TrackFeed:
    def __init__(self, hub: HlsHub, topic: str) -> None:
        self.hub = hub
        self.topic = topic
        self.window = TrackWindow(hub.settings.config)
        self.caught_up = asyncio.Event()
        self._waiters: list[asyncio.Future[None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error = ""
        self.received = 0
        self.generation = "g"  # where the topic began when this feed read it (hls_http: in segment URIs)
        self._playlists: dict[tuple[int, int | None, float | None], bytes] = {}

    def start(self, loop: asyncio.AbstractEventLoop, client: Any) -> None:
        self._thread = threading.Thread(target=self._run, args=(loop, client), daemon=True, name=f"hls-{self.topic}")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float = 2.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self, loop: asyncio.AbstractEventLoop, client: Any) -> None:
        import pulsar

        url = room_topic_url(self.hub.tenant, self.hub.namespace, self.topic)
        try:
            reader = client.create_reader(url, pulsar.MessageId.earliest)
        except Exception as exc:
            self.error = str(exc)
            log.warning("hls: cannot read %s: %s", url, exc)
            loop.call_soon_threadsafe(self.caught_up.set)
            return
        caught_up = False
        try:
            while not self._stop.is_set():
                try:
                    msg = reader.read_next(READ_TIMEOUT_MS)
                except pulsar.Timeout:
                    if not caught_up:
                        caught_up = True
                        loop.call_soon_threadsafe(self.caught_up.set)
                    continue
                loop.call_soon_threadsafe(self._on_message, dict(msg.properties()), msg.data(), msg.message_id())
                if not caught_up and not reader.has_message_available():
                    caught_up = True
                    loop.call_soon_threadsafe(self.caught_up.set)
        except Exception as exc:  # closed under us at shutdown, or the broker went away
            if not self._stop.is_set():
                log.warning("hls: reading %s failed: %s", url, exc)
        finally:
            try:
                reader.close()
            except Exception:
                pass

    # ---- on the event loop ---------------------------------------------------------------------
    def _on_message(self, props: dict[str, str], payload: bytes, ref: Any) -> None:
        if not self.received:
            self.generation = _generation_of(ref)
        self.received += 1
        if self.window.add(props, payload, ref):
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def playlist(self, listing: Listing) -> bytes:
        """The media playlist text (UTF-8) for ``listing``, rendered once per change of the window: every
        viewer of a rendition asks for the same few texts several times a second."""
        key = (self.window.version, listing.first_msn, listing.start_offset)
        text = self._playlists.get(key)
        if text is None:
            if self._playlists and next(iter(self._playlists))[0] != self.window.version:
                self._playlists.clear()
            text = media_playlist(self.window, listing, prefix=f"{self.generation}/").encode("utf-8")
            self._playlists[key] = text
            if len(self._playlists) > 64:
                self._playlists.pop(next(iter(self._playlists)))
        return text

    async def wait(self, ready: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``ready()`` (checked on every playlist change) or ``timeout`` s; returns ready()."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not ready():
            left = deadline - loop.time()
            if left <= 0:
                return False
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, left)
            except TimeoutError:
                return ready()
        return True

    async def read_back(self, seg: Segment) -> bytes:
        """The bytes of a segment the window no longer holds, from the topic (its fragments from first_ref on)."""
        timeout = self.hub.settings.read_back_timeout
        return await asyncio.to_thread(self._read_back, seg, timeout)

    def _read_back(self, seg: Segment, timeout: float) -> bytes:
        import pulsar

        url = room_topic_url(self.hub.tenant, self.hub.namespace, self.topic)
        reader = self.hub.client().create_reader(url, seg.first_ref, start_message_id_inclusive=True)
        parts: list[bytes] = []
        deadline = time.monotonic() + timeout
        try:
            while len(parts) < seg.fragments:
                left_ms = int((deadline - time.monotonic()) * 1000)
                if left_ms <= 0:
                    raise TimeoutError(f"{self.topic}: segment {seg.msn} not read back within {timeout:.0f} s "
                                       f"({len(parts)} of {seg.fragments} fragments)")
                try:
                    msg = reader.read_next(min(left_ms, 1000))
                except pulsar.Timeout:
                    continue
                props = msg.properties()
                if props.get("segment_type") == "media" and props.get("stream") == seg.stream:
                    parts.append(msg.data())
        finally:
            reader.close()
        return b"".join(parts)


def _generation_of(ref: Any) -> str:
    try:
        return f"g{ref.ledger_id()}-{ref.entry_id()}"
    except AttributeError:
        return f"g{ref}"


class TooManyRooms(Exception):
    pass


class HlsRoom:
    def __init__(self, hub: HlsHub, room: str) -> None:
        self.room = room
        self.tracks: dict[str, TrackFeed] = {}
        for rendition in hub.settings.renditions:
            self.tracks[rendition] = TrackFeed(hub, room_topic(room, Kind.VIDEO, rendition))
        self.tracks[AUDIO_TRACK] = TrackFeed(hub, room_topic(room, Kind.AUDIO))
        self.last_used = time.monotonic()

    async def ready(self, wait: float) -> None:
        await asyncio.wait([asyncio.ensure_future(t.caught_up.wait()) for t in self.tracks.values()], timeout=wait)


class HlsHub:
    """The HLS rooms of one ingress process, each started on its first request."""

    def __init__(self, service_url: str, tenant: str, namespace: str, token: str | None = None,
                 settings: HlsSettings = HlsSettings(), client_factory: Callable[[], Any] | None = None) -> None:
        self.service_url, self.tenant, self.namespace, self.token = service_url, tenant, namespace, token
        self.settings = settings
        self._client = SharedReaderClient(service_url, token, client_factory)
        self.rooms: dict[str, HlsRoom] = {}
        self._sweeper: asyncio.Task[None] | None = None

    def client(self) -> Any:
        return self._client.get()

    async def room(self, name: str) -> HlsRoom:
        """The room's feeds, started on first use. Raises TooManyRooms past ``max_rooms``. A room whose
        topics turn out to hold nothing is let go at once, so asking for rooms that do not exist keeps
        no readers open."""
        room = self.rooms.get(name)
        if room is None:
            if len(self.rooms) >= self.settings.max_rooms:
                raise TooManyRooms(f"this ingress serves HLS for {len(self.rooms)} rooms already "
                                   f"(max {self.settings.max_rooms}); try again when one has gone idle")
            room = self.rooms[name] = HlsRoom(self, name)
            loop = asyncio.get_running_loop()
            client = await asyncio.to_thread(self.client)
            for feed in room.tracks.values():
                feed.start(loop, client)
            if self._sweeper is None:
                self._sweeper = loop.create_task(self._sweep())
            await room.ready(self.settings.catch_up_wait)
            if all(feed.received == 0 for feed in room.tracks.values()) and self.rooms.get(name) is room:
                del self.rooms[name]
                for feed in room.tracks.values():
                    feed.stop()
        room.last_used = time.monotonic()
        return room

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(min(30.0, self.settings.idle_after / 2))
            now = time.monotonic()
            for name, room in list(self.rooms.items()):
                if now - room.last_used > self.settings.idle_after:
                    del self.rooms[name]
                    for feed in room.tracks.values():
                        feed.stop()

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        feeds = [feed for room in self.rooms.values() for feed in room.tracks.values()]
        self.rooms.clear()
        await self._client.close_after(feeds)
