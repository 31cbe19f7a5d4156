"""What each viewer is sent, without I/O: the viewer side's policy in one place.

- ``Item``: one message of a room's output topic, shared by every viewer of it in this process.
- ``DeliveryDedup``: drops what at-least-once delivery repeats (the egress and ``wtpulsar consume``).
- ``JoinPoint``: what a late joiner needs from one topic (latest init segment and the group since the
  latest keyframe, or the last few chat messages), and whether a stream is live to join.
- ``RoomFanout``: one topic's viewers in this process: each Item deduplicated once for all of them,
  remembered in the join point and offered to every viewer; a viewer who arrives gets the join point if
  a stream is live, else waits (unprimed) for the next stream's first message.
- ``ViewerTracks``: per viewer, what goes on which stream: media one group (keyframe to keyframe) per
  stream; a viewer whose stream backs up past a byte budget has that group cancelled and resumes at the
  next keyframe instead of queuing (the skip policy; docs/media-and-webtransport.md §1.8); audio behind
  the budget is dropped; chat and files are always sent.

The transport is a ``ViewerSink`` (WebTransport streams or one WebSocket) that ``ViewerTracks`` calls;
the Pulsar reader threads that produce Items are in egress.py, the adapters in webtransport_server.py
and websocket_server.py.
"""

from __future__ import annotations

import json
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ingress.ws_frames import binary_frame
from schemas.framing_codec import Delivery, Kind, serialize_delivery

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


class RoomFanout:
    """One output topic's viewers in this process (egress.RoomFeed reads the topic and calls this on
    the event loop). The caller says the time (``now_ms``) and flushes the sinks when a call returns
    True (something may have been written)."""

    def __init__(self, kind: Kind, stale_ms: float) -> None:
        self.kind = kind
        self.stale_ms = stale_ms  # a join point older than this is a stream that is over (JoinPoint.live)
        self.viewers: set[ViewerTracks] = set()
        # viewers that joined while there was no live stream to join: primed by the next one's first message
        self.unprimed: set[ViewerTracks] = set()
        self.caught_up = False  # the reader has read what the topic held when it started: viewers may join
        self.join_point = JoinPoint(kind)
        self.dedup = DeliveryDedup()  # once for all viewers, so the join point never caches a repeat either

    def offer(self, item: Item, now_ms: float) -> bool:
        """A message read from the topic; True when viewers were offered it."""
        if not self.dedup.accept(item.kind, item.properties, item.payload):
            return False
        self.join_point.remember(item)
        if not self.caught_up:
            return False
        # The same Item (and so the same record bytes, item.record()) goes to every viewer.
        unprimed = self.unprimed
        for viewer in list(self.viewers):
            if viewer not in unprimed:
                viewer.offer(item)
            elif not item.is_end and self._joinable(now_ms):  # a stream (re)started: from its init on
                unprimed.discard(viewer)
                self._replay(viewer)
        return True

    def catch_up(self, now_ms: float) -> bool:
        """The reader reached the topic's end once: the viewers who came meanwhile join now."""
        if self.caught_up:
            return False
        self.caught_up = True
        for viewer in list(self.viewers):
            self._join(viewer, now_ms)
        return True

    def add(self, viewer: ViewerTracks, now_ms: float) -> None:
        self.viewers.add(viewer)
        if self.caught_up:
            self._join(viewer, now_ms)

    def discard(self, viewer: ViewerTracks) -> None:
        self.viewers.discard(viewer)
        self.unprimed.discard(viewer)

    def _joinable(self, now_ms: float) -> bool:
        return self.join_point.live(now_ms, self.stale_ms)

    def _join(self, viewer: ViewerTracks, now_ms: float) -> None:
        """A viewer arrives: the join point if a stream is live, else nothing until one starts."""
        if self._joinable(now_ms):
            self._replay(viewer)
        else:
            self.unprimed.add(viewer)

    def _replay(self, viewer: ViewerTracks) -> None:
        for item in self.join_point.snapshot():
            viewer.offer(item)
