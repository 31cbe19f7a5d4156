"""`wtpulsar audit ROOM`: read a room's input and output topics from the start and report, per stream
and rendition, frames in/out, gaps, duplicates, reorderings and per-hop latency (room_audit.py).

The raw input topics are shared by every room, so input messages are kept when their `room`
property names ROOM (ENVELOPE.md "Properties"). Readers start at `MessageId.earliest` and stop once
`has_message_available()` says the topic is drained, so the audit sees a consistent snapshot of
what was stored when it ran; nothing is acknowledged and no subscription is left behind.

The input topics are complete only if the broker keeps acknowledged messages: without retention,
Pulsar (and our broker) delete what every subscription (here: transcode's) has acknowledged, and the
audit can then count only the frames still stored. It says so ("input topics no longer hold the
first frames of ...") when an output holds lower seqs than its input topic; run the broker with
`--retention-minutes N` (Pulsar: a namespace retention policy) to audit a room fully.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import Any

from audit.room_audit import AuditReport, BadMessage, RoomAudit, input_frame, output_segment, render_text
from clients.admin_topics import list_topics
from schemas.framing_codec import Kind
from schemas.names import rooms_namespace
from schemas.topics import INPUT_TOPIC

DEFAULT_BROKER = "pulsar://127.0.0.1:6650"
# --kinds name -> input topic, for the kinds the audit follows (files are not frames of a track).
INPUT_TOPICS = {kind.name.lower(): INPUT_TOPIC[kind] for kind in (Kind.VIDEO, Kind.SCREEN, Kind.AUDIO, Kind.CHAT)}
DEFAULT_KINDS = ("video", "screen", "audio")
DEFAULT_RENDITIONS = ("720p", "360p")
READ_TIMEOUT_MS = 2000


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "audit",
        help="end-to-end audit of a room: frames in/out, gaps, duplicates, per-hop latency",
        description=(
            "Read ROOM's input topics (raw-video, raw-screen, raw-audio; chat-in with --kinds chat) and its "
            "output topics room-ROOM-* from the earliest message, then print per stream and rendition: "
            "frames in, frames out, frames lost, duplicates, reorderings, and latency per hop "
            "(ingress, input topic, transcode, chunk, route, output) as p50/p95/p99. "
            "Exit status 1 when any input frame is missing from an output track. Input topics are complete "
            "only when the broker retains acknowledged messages (wtpulsar broker --retention-minutes N)."
        ),
    )
    p.add_argument("room")
    p.add_argument("--broker-service-url", default=DEFAULT_BROKER, help="default %(default)s")
    p.add_argument("--admin-url", help="broker admin REST (e.g. http://127.0.0.1:8080) to list the room's "
                                       "output topics; without it the renditions below are tried")
    p.add_argument("--tenant", default="public")
    p.add_argument("--namespace", default="wtpulsar")
    p.add_argument("--kinds", default=",".join(DEFAULT_KINDS),
                   help="comma-separated kinds to audit: video,screen,audio,chat (default %(default)s)")
    p.add_argument("--renditions", default=",".join(DEFAULT_RENDITIONS),
                   help="video/screen renditions when no --admin-url (default %(default)s)")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON ('-' for stdout only)")
    p.set_defaults(func=run)


def _kinds(text: str) -> list[str]:
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in INPUT_TOPICS]
    if not kinds or unknown:
        raise ValueError(f"--kinds {text!r}: choose from {', '.join(INPUT_TOPICS)}")
    return kinds


def output_topics(room: str, kinds: list[str], renditions: list[str], listed: list[str] | None) -> list[str]:
    """Short names of the room topics to read: from the broker's topic list when given, else guessed."""
    wanted = []
    for kind in kinds:
        prefix = f"room-{room}-{kind}"
        if listed is not None:
            wanted += sorted(t for t in listed if t == prefix or t.startswith(prefix + "-"))
        elif kind in ("video", "screen"):
            wanted += [f"{prefix}-{r}" for r in renditions]
        else:
            wanted.append(prefix)
    return wanted


def read_all(client: Any, topic: str) -> Iterator[Any]:
    """Every message stored on `topic`, oldest first, without a durable subscription."""
    import pulsar

    reader = client.create_reader(topic, pulsar.MessageId.earliest)
    try:
        while reader.has_message_available():
            yield reader.read_next(READ_TIMEOUT_MS)
    finally:
        reader.close()


def audit_room(client: Any, room: str, tenant: str, namespace: str, kinds: list[str], out_topics: list[str]) -> AuditReport:
    return collect_room(client, room, tenant, namespace, kinds, out_topics).report()


def collect_room(client: Any, room: str, tenant: str, namespace: str, kinds: list[str], out_topics: list[str],
                 ) -> RoomAudit:
    """Feed everything stored on the room's input and output topics into a RoomAudit."""
    audit = RoomAudit(room)
    base = f"persistent://{tenant}/{namespace}/"
    for kind in kinds:
        topic = INPUT_TOPICS[kind]
        for msg in read_all(client, base + topic):
            props = msg.properties()
            if props.get("room") != room:
                continue
            try:
                frame = input_frame(props, float(msg.publish_timestamp()), msg.partition_key())
                if frame is not None:
                    audit.add_input(frame)
            except BadMessage as exc:
                audit.add_bad(f"{topic} {msg.message_id()}", exc)
    rooms_base = f"persistent://{tenant}/{rooms_namespace(namespace)}/"
    for topic in out_topics:
        for msg in read_all(client, rooms_base + topic):
            try:
                segment = output_segment(msg.properties(), float(msg.publish_timestamp()), msg.partition_key())
            except BadMessage as exc:
                audit.add_bad(f"{topic} {msg.message_id()}", exc)
                continue
            if segment is not None:
                audit.add_output(segment)
    return audit


def run(args: argparse.Namespace) -> int:
    import pulsar

    try:
        kinds = _kinds(args.kinds)
        listed = list_topics(args.admin_url, args.tenant, rooms_namespace(args.namespace)) if args.admin_url else None
    except (ValueError, OSError) as exc:
        print(f"wtpulsar audit: {exc}", file=sys.stderr)
        return 2
    renditions = [r.strip() for r in args.renditions.split(",") if r.strip()]
    topics = output_topics(args.room, kinds, renditions, listed)
    client = pulsar.Client(args.broker_service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error),
                           operation_timeout_seconds=10)
    try:
        report = audit_room(client, args.room, args.tenant, args.namespace, kinds, topics)
    except pulsar.PulsarException as exc:
        print(f"wtpulsar audit: reading from {args.broker_service_url} failed: {exc}", file=sys.stderr)
        return 2
    finally:
        client.close()
    if args.json == "-":
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(render_text(report))
        if args.json:
            with open(args.json, "w", encoding="utf-8") as fh:
                json.dump(report.to_json(), fh, indent=2)
    return 1 if report.lost else 0
