"""Duplicates from at-least-once delivery must be removed by (stream, seq) before a viewer sees them.

`DeliveryDedup` (ingress/viewer.py) is the one filter: the egress and `wtpulsar consume`
(clients/consume.py) both deliver each copy once through it. The unit tests below pin its rules;
the others show the two readers keep only one copy of what a room topic holds twice.
"""

from __future__ import annotations

import io
import json
import urllib.request
import uuid

from ingress.viewer import DeliveryDedup
from schemas.framing_codec import Kind


def fragment(stream: str, first: int, last: int, rendition: str = "360p") -> dict[str, str]:
    return {"stream": stream, "kind": "video", "rendition": rendition, "segment_type": "media",
            "first_seq": str(first), "last_seq": str(last)}


def chat(stream: str, seq: int) -> dict[str, str]:
    return {"stream": stream, "kind": "chat", "seq": str(seq), "user": "u"}


def test_fragments_are_compared_by_frame_seq_per_track() -> None:
    dedup = DeliveryDedup()
    got = [dedup.accept(Kind.VIDEO, p) for p in [
        fragment("cam", 0, 0), fragment("cam", 1, 1), fragment("cam", 1, 1),  # redelivered
        fragment("cam", 0, 1, rendition="720p"),  # another rendition: its own track
        {"stream": "cam", "rendition": "360p", "segment_type": "init"},  # chunk restarted: new init passes
        fragment("cam", 0, 1),  # ...and re-sends frames the viewer already has
        fragment("cam", 1, 3),  # boundaries moved: new frames inside, delivered
    ]]
    assert got == [True, True, False, True, True, False, True]
    assert dedup.dropped == 2


def test_chat_is_deduplicated_by_seq_even_out_of_order() -> None:
    dedup = DeliveryDedup()
    got = [dedup.accept(Kind.CHAT, chat("c", s)) for s in (0, 2, 1, 2, 0, 3)]
    assert got == [True, True, True, False, False, True]


def test_messages_without_seq_are_delivered_not_lost() -> None:
    dedup = DeliveryDedup()
    assert dedup.accept(Kind.FILE, {"stream": "x", "kind": "file"}) and dedup.accept(Kind.FILE, {"stream": "x", "kind": "file"})


def _room_topic_with_duplicates(broker, kind: str) -> tuple[str, str]:
    import pulsar

    namespace = f"dedup{uuid.uuid4().hex[:8]}"
    admin = broker.admin_url
    for ns in (namespace, f"{namespace}-rooms"):  # the room topics live in the pipeline's rooms namespace
        urllib.request.urlopen(urllib.request.Request(f"{admin}/admin/v2/namespaces/public/{ns}",
                                                      method="PUT"), timeout=10).close()
    client = pulsar.Client(broker.service_url)
    try:
        if kind == "chat":
            producer = client.create_producer(f"persistent://public/{namespace}-rooms/room-r1-chat")
            for seq in (0, 1, 1, 2):  # seq 1 twice: a moderate instance died between publish and ack
                producer.send(json.dumps({"text": f"m{seq}"}).encode(), properties=chat("c", seq), partition_key="r1")
        else:
            producer = client.create_producer(f"persistent://public/{namespace}-rooms/room-r1-audio")
            for seq in (0, 1, 1, 2):
                props = dict(fragment("mic", seq, seq), kind="audio", rendition="")
                producer.send(f"frag{seq}".encode(), properties=props, partition_key="mic")
        producer.close()
    finally:
        client.close()
    return namespace, "r1"


def test_consume_shows_each_chat_message_once(broker) -> None:
    import pulsar

    from clients.consume import consume
    from schemas.framing_codec import Kind

    namespace, room = _room_topic_with_duplicates(broker, "chat")
    client = pulsar.Client(broker.service_url)
    out = io.StringIO()
    try:
        consume(client, "public", namespace, room, Kind.CHAT, None, None, out, duration=0.5, from_start=True)
    finally:
        client.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3, lines


def test_egress_offers_each_fragment_once() -> None:
    from ingress.viewer import Item, ViewerSink, ViewerTracks
    from schemas.framing_codec import Kind

    class Sink(ViewerSink):
        def __init__(self) -> None:
            self.writes: list[bytes] = []

        def open_group(self, kind: Kind) -> object:
            return kind

        def write(self, handle: object, data: bytes) -> None:
            self.writes.append(data)

    sink = Sink()
    viewer = ViewerTracks(sink, queue_budget=1 << 20)
    for seq in (0, 1, 1, 2):
        viewer.offer(Item(Kind.AUDIO, dict(fragment("mic", seq, seq), kind="audio"), b"frag"))
    assert len(sink.writes) == 3
