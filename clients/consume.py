"""``wtpulsar consume ROOM``: read a room's output topic straight from the broker.

Video/screen/audio: written to ``--out`` as one fragmented MP4 (init segment + fragments, which is a
playable file), starting at the latest init segment and keyframe fragment like a viewer does, with
the timeline moved to start at 0 (ingress/fmp4_timeline.py); the file is created with its first bytes, and
consume finishes when the stream ends (ENVELOPE.md "End of stream"). A video rendition the room does
not have is refused with the ones it has. Chat: printed as it arrives. At exit, the latency (receive
time - capture_ts) of the messages that arrived live is summarised, or why there is none.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ingress.fmp4_timeline import TimelineRebase
from ingress.names import room_topic, room_topic_url
from ingress.viewer import DeliveryDedup, Item, JoinPoint
from schemas.framing_codec import Kind
from schemas.names import rooms_namespace

READ_TIMEOUT_MS = 200
STALE_AFTER_S = 10.0  # as the egress (IngressConfig.join_stale_after): an older join point is a stream that is over


@dataclass
class LatencySummary:
    samples: list[float] = field(default_factory=list)  # ms
    what: str = "message"  # what was read, for the sentence when nothing arrived live

    def add(self, properties: dict[str, str], now_ms: float) -> None:
        try:
            self.samples.append(now_ms - float(properties["capture_ts"]))
        except (KeyError, ValueError):
            pass

    def render(self) -> str:
        if not self.samples:
            return (f"latency: none measured (no {self.what} with a capture time arrived while consume ran; "
                    "what was already stored when it started is not timed)")
        s = sorted(self.samples)

        def pct(p: float) -> float:
            return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]

        return (f"latency now-capture_ts over {len(s)} messages: p50 {pct(50):.1f} ms, p90 {pct(90):.1f} ms, "
                f"p99 {pct(99):.1f} ms, max {s[-1]:.1f} ms")


class LazyFile:
    """An output file created when the first bytes are written, so a consume that got nothing leaves
    no empty file behind."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fh: IO[bytes] | None = None

    def write(self, data: bytes) -> int:
        if self.fh is None:
            self.fh = self.path.open("wb")
        return self.fh.write(data)

    def flush(self) -> None:
        if self.fh is not None:
            self.fh.flush()

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()


class MediaFile:
    """Appends init + fragments; a repeated identical init segment is written once; the fragments'
    decode times are rebased so the file starts at 0."""

    def __init__(self, out: IO[bytes] | LazyFile) -> None:
        self.out = out
        self.last_init: bytes | None = None
        self.fragments = 0
        self.stream = ""  # the stream whose init was written last
        self.timeline = TimelineRebase()

    def write(self, item: Item) -> None:
        if item.is_end:
            return
        if item.is_init:
            if item.payload == self.last_init:
                return
            if self.last_init is not None:
                print("consume: new init segment (encoder restarted); the file may need splitting",
                      file=sys.stderr)
            self.last_init = item.payload
            self.stream = item.properties.get("stream", "")
            payload = item.payload
        elif self.last_init is None:
            return  # fragments before any init segment cannot be played
        else:
            self.fragments += 1
            payload = self.timeline.rebase(item.payload)
        self.out.write(payload)
        self.out.flush()


def format_chat(item: Item) -> str:
    try:
        body = json.loads(item.payload.decode("utf-8"))
        text = body.get("text", body) if isinstance(body, dict) else body
    except (UnicodeDecodeError, ValueError):
        text = item.payload[:200]
    user = item.properties.get("user", "?")
    return f"[{user}] {text}"


def consume(client: Any, tenant: str, namespace: str, room: str, kind: Kind, rendition: str | None,
            out: IO[bytes] | LazyFile | None, stdout: IO[str], duration: float | None = None,
            count: int | None = None, from_start: bool = False, notify: Callable[[str], None] | None = None,
            ) -> LatencySummary:
    """Read one room topic until ``duration``/``count`` is reached, Ctrl-C, or (media) the stream being
    written ends. ``notify`` gets the sentences for the person at the terminal (stderr by default)."""
    import pulsar

    say = notify or (lambda text: print(f"consume: {text}", file=sys.stderr, flush=True))
    short = room_topic(room, kind, rendition if kind in (Kind.VIDEO, Kind.SCREEN) else None)
    reader = client.create_reader(room_topic_url(tenant, namespace, short), pulsar.MessageId.earliest)
    latency = LatencySummary(what=f"{kind.name.lower()} message")
    media = MediaFile(out) if out is not None and kind != Kind.CHAT else None
    join = JoinPoint(kind)
    dedup = DeliveryDedup()  # at-least-once repeats are shown once: nothing lost, nothing twice
    seen = 0
    deadline = time.monotonic() + duration if duration else None
    playing = ""  # media: the stream id being followed ('' until one starts)

    def emit(item: Item, live: bool) -> bool:
        """Show or write one message; True when the stream being followed ended."""
        nonlocal playing
        if item.is_end:
            stream = item.properties.get("stream", "")
            if from_start and not live or stream != playing:
                return False
            why = {"left": "the publisher left", "timeout": "the publisher's session timed out",
                   "closed": "the ingress closed the publisher's session"}.get(item.properties.get("reason", ""), "")
            say(f"the stream {stream} ended{' (' + why + ')' if why else ''}")
            return True
        if item.is_init:
            playing = item.properties.get("stream", playing)
        if live:
            latency.add(item.properties, time.time() * 1000.0)
        if kind == Kind.CHAT:
            print(format_chat(item), file=stdout, flush=True)
        elif media is not None:
            media.write(item)
        elif live:
            seq = item.properties.get("segment_seq", item.properties.get("seq", "?"))
            print(f"{short} #{seq} {len(item.payload)} bytes", file=stdout, flush=True)
        return False

    def item_of(msg: Any) -> Item:
        return Item(kind, dict(msg.properties()), msg.data(), float(msg.publish_timestamp()))

    try:
        # Catch up: keep only the join point (or everything with --from-start).
        while reader.has_message_available():
            msg = reader.read_next(READ_TIMEOUT_MS * 5)
            item = item_of(msg)
            if not dedup.accept(kind, item.properties, item.payload):
                continue
            if from_start:
                emit(item, live=False)
            else:
                join.remember(item)
        if not from_start:
            if join.live(time.time() * 1000.0, STALE_AFTER_S * 1000.0):
                for item in join.snapshot():
                    emit(item, live=False)
            elif kind in (Kind.VIDEO, Kind.SCREEN, Kind.AUDIO):
                say(f"no one is publishing {kind.name.lower()} in room {room} right now; waiting for a stream")
        while (deadline is None or time.monotonic() < deadline) and (count is None or seen < count):
            try:
                msg = reader.read_next(READ_TIMEOUT_MS)
            except pulsar.Timeout:
                continue
            item = item_of(msg)
            if not dedup.accept(kind, item.properties, item.payload):
                continue
            if emit(item, live=True):
                break
            seen += 1
    except KeyboardInterrupt:
        pass
    finally:
        reader.close()
    return latency


def missing_rendition(client: Any, listed: list[str], tenant: str, namespace: str, room: str, kind: Kind,
                      rendition: str) -> str:
    """A sentence when ``rendition`` has nothing stored while other renditions of the room do, else ''."""
    import pulsar

    wanted = room_topic(room, kind, rendition)
    prefix = f"room-{room}-{kind.name.lower()}-"

    def stored(short: str) -> bool:
        reader = client.create_reader(room_topic_url(tenant, namespace, short), pulsar.MessageId.earliest)
        try:
            return bool(reader.has_message_available())
        finally:
            reader.close()

    if wanted in listed and stored(wanted):
        return ""
    others = sorted((t.removeprefix(prefix) for t in listed if t.startswith(prefix) and t != wanted and stored(t)),
                    key=lambda r: (len(r), r))
    if not others:
        return ""
    word = kind.name.lower()
    return (f"room {room} has no {rendition} {word}; its {word} renditions are {', '.join(others)} "
            f"(renditions above the source's resolution are not made: transcode never upscales). "
            f"Try --rendition {others[-1]}.")


def default_admin_url(service_url: str) -> str:
    """The admin REST of a broker at pulsar://HOST:PORT: http://HOST:8080 (Pulsar's and `wtpulsar up`'s default)."""
    from urllib.parse import urlsplit

    host = urlsplit(service_url).hostname or "127.0.0.1"
    return f"http://{host}:8080"


def run(args: Any) -> int:
    import pulsar

    from clients.admin_topics import list_topics
    from ingress.broker_auth import ENV, client_kwargs, resolve

    kind = Kind[args.kind.upper()]
    token = resolve(getattr(args, "broker_token", None))
    client = pulsar.Client(args.broker_service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn),
                           operation_timeout_seconds=10, **client_kwargs(token))
    out: LazyFile | None = None
    try:
        if kind in (Kind.VIDEO, Kind.SCREEN):
            admin = args.admin_url or default_admin_url(args.broker_service_url)
            try:
                listed = list_topics(admin, args.tenant, rooms_namespace(args.namespace))
            except (OSError, ValueError) as exc:
                print(f"consume: could not list the room's renditions at {admin} ({exc}); reading "
                      f"{args.rendition} anyway", file=sys.stderr)
                listed = []
            problem = missing_rendition(client, listed, args.tenant, args.namespace, args.room, kind, args.rendition)
            if problem:
                print(f"wtpulsar consume: {problem}", file=sys.stderr)
                return 2
        if args.out:
            out = LazyFile(Path(args.out))
        latency = consume(client, args.tenant, args.namespace, args.room, kind, args.rendition, out, sys.stdout,
                          duration=args.duration, count=args.count, from_start=args.from_start)
    except pulsar.PulsarException as exc:
        hint = (f"the broker requires a token: pass --broker-token or set ${ENV}" if token is None
                else "the token's role may not read this room (it needs consume permission on the rooms namespace)")
        print(f"wtpulsar consume: the broker refused: {exc}; {hint}", file=sys.stderr)
        return 1
    finally:
        if out is not None:
            out.close()
        client.close()
    if out is not None and out.fh is None:
        print(f"consume: nothing arrived, so {args.out} was not written", file=sys.stderr)
    print(latency.render(), file=sys.stderr)
    return 0
