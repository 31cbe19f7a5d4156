"""``wtpulsar consume ROOM``: read a room's output topic straight from the broker.

Video/screen/audio: written to ``--out`` as one fragmented MP4 (init segment + fragments, which is a
playable file), starting at the latest init segment and keyframe fragment like a viewer does.
Chat: printed as it arrives. At exit, latency per message (receive time - capture_ts) is summarised.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ingress.egress import DeliveryDedup, Item, JoinPoint
from ingress.names import room_topic, topic_url
from schemas.framing import Kind

READ_TIMEOUT_MS = 200


@dataclass
class LatencySummary:
    samples: list[float] = field(default_factory=list)  # ms

    def add(self, properties: dict[str, str], now_ms: float) -> None:
        try:
            self.samples.append(now_ms - float(properties["capture_ts"]))
        except (KeyError, ValueError):
            pass

    def render(self) -> str:
        if not self.samples:
            return "latency: no messages with capture_ts"
        s = sorted(self.samples)

        def pct(p: float) -> float:
            return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]

        return (f"latency now-capture_ts over {len(s)} messages: p50 {pct(50):.1f} ms, p90 {pct(90):.1f} ms, "
                f"p99 {pct(99):.1f} ms, max {s[-1]:.1f} ms")


class MediaFile:
    """Appends init + fragments; a repeated identical init segment is written once."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.last_init: bytes | None = None
        self.fragments = 0

    def write(self, item: Item) -> None:
        if item.is_init:
            if item.payload == self.last_init:
                return
            if self.last_init is not None:
                print("consume: new init segment (encoder restarted); the file may need splitting",
                      file=sys.stderr)
            self.last_init = item.payload
        elif self.last_init is None:
            return  # fragments before any init segment cannot be played
        else:
            self.fragments += 1
        self.out.write(item.payload)
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
            out: IO[bytes] | None, stdout: IO[str], duration: float | None = None, count: int | None = None,
            from_start: bool = False) -> LatencySummary:
    import pulsar

    short = room_topic(room, kind, rendition if kind in (Kind.VIDEO, Kind.SCREEN) else None)
    reader = client.create_reader(topic_url(tenant, namespace, short), pulsar.MessageId.earliest)
    latency = LatencySummary()
    media = MediaFile(out) if out is not None and kind != Kind.CHAT else None
    join = JoinPoint(kind)
    dedup = DeliveryDedup()  # at-least-once repeats are shown once (issue 8)
    seen = 0
    deadline = time.monotonic() + duration if duration else None

    def emit(item: Item, live: bool) -> None:
        if live:
            latency.add(item.properties, time.time() * 1000.0)
        if kind == Kind.CHAT:
            print(format_chat(item), file=stdout, flush=True)
        elif media is not None:
            media.write(item)
        elif live:
            seq = item.properties.get("segment_seq", item.properties.get("seq", "?"))
            print(f"{short} #{seq} {len(item.payload)} bytes", file=stdout, flush=True)

    try:
        # Catch up: keep only the join point (or everything with --from-start).
        while reader.has_message_available():
            msg = reader.read_next(READ_TIMEOUT_MS * 5)
            item = Item(kind, dict(msg.properties()), msg.data())
            if not dedup.accept(kind, item.properties, item.payload):
                continue
            if from_start:
                emit(item, live=False)
            else:
                join.remember(item)
        if not from_start:
            for item in join.snapshot():
                emit(item, live=False)
        while (deadline is None or time.monotonic() < deadline) and (count is None or seen < count):
            try:
                msg = reader.read_next(READ_TIMEOUT_MS)
            except pulsar.Timeout:
                continue
            item = Item(kind, dict(msg.properties()), msg.data())
            if not dedup.accept(kind, item.properties, item.payload):
                continue
            emit(item, live=True)
            seen += 1
    except KeyboardInterrupt:
        pass
    finally:
        reader.close()
    return latency


def run(args: Any) -> int:
    import pulsar

    from ingress.broker_auth import ENV, client_kwargs, resolve

    kind = Kind[args.kind.upper()]
    token = resolve(getattr(args, "broker_token", None))
    client = pulsar.Client(args.broker_service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error),
                           operation_timeout_seconds=10, **client_kwargs(token))
    out: IO[bytes] | None = None
    try:
        if args.out:
            out = Path(args.out).open("wb")
        latency = consume(client, args.tenant, args.namespace, args.room, kind, args.rendition, out, sys.stdout,
                          duration=args.duration, count=args.count, from_start=args.from_start)
    except pulsar.PulsarException as exc:
        hint = (f"the broker requires a token: pass --broker-token or set ${ENV}" if token is None
                else "the token's role may not read this room (it needs consume permission on the namespace)")
        print(f"wtpulsar consume: the broker refused: {exc}; {hint}", file=sys.stderr)
        return 1
    finally:
        if out is not None:
            out.close()
        client.close()
    print(latency.render(), file=sys.stderr)
    return 0
