"""`wtpulsar consume` against the broker, as a new user runs it: a rendition the room does not have is
refused with the ones it has (and no empty file), the recording finishes when the stream ends, a room
whose stream is over says no one is publishing, and the latency line never promises what it cannot give."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pulsar
import pytest

from wtpulsar.cli import main

NS = "persistent://public/wtpulsar-rooms/"  # the room topics (schemas/names.py rooms_namespace)


def room_name() -> str:
    return "c" + uuid.uuid4().hex[:10]


def produce(service_url: str, short: str, items: list[tuple[dict[str, str], bytes]]) -> None:
    client = pulsar.Client(service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    try:
        producer = client.create_producer(NS + short, batching_enabled=False)
        for props, payload in items:
            producer.send(payload, properties=props)
        producer.close()
    finally:
        client.close()


def track(room: str, stream: str = "cam1", rendition: str = "360p", n: int = 3) -> list[tuple[dict[str, str], bytes]]:
    base = {"room": room, "stream": stream, "kind": "video", "rendition": rendition}
    items = [({**base, "segment_type": "init"}, b"INIT")]
    items += [({**base, "segment_type": "media", "segment_seq": str(i), "keyframe": "1" if i == 0 else "0",
                "first_seq": str(i), "last_seq": str(i), "capture_ts": str(time.time() * 1000)}, b"moof%d" % i)
              for i in range(n)]
    return items


def end(room: str, stream: str = "cam1", rendition: str = "360p") -> tuple[dict[str, str], bytes]:
    return ({"room": room, "stream": stream, "kind": "video", "rendition": rendition, "segment_type": "end",
             "end_of_stream": "1", "reason": "left", "last_seq": "2"}, b"")


def consume(broker: Any, room: str, *extra: str) -> int:
    return main(["consume", room, "--broker-service-url", broker.service_url, "--admin-url", broker.admin_url,
                 *extra])


def test_a_rendition_the_room_lacks_is_refused_with_the_ones_it_has(broker: Any, tmp_path: Path, capsys: Any) -> None:
    room = room_name()
    produce(broker.service_url, f"room-{room}-video-360p", track(room))
    produce(broker.service_url, f"room-{room}-video-240p", track(room, rendition="240p"))
    out = tmp_path / "demo.mp4"
    assert consume(broker, room, "--rendition", "720p", "--out", str(out), "--duration", "2") == 2
    err = capsys.readouterr().err
    assert f"room {room} has no 720p video; its video renditions are 240p, 360p" in err, err
    assert "never upscales" in err and "--rendition 360p" in err
    assert "latency" not in err  # no summary of nothing
    assert not out.exists()  # the old behaviour left a 0-byte file


def test_consume_finishes_when_the_stream_ends(broker: Any, tmp_path: Path, capsys: Any) -> None:
    room = room_name()
    topic = f"room-{room}-video-360p"
    produce(broker.service_url, topic, track(room))
    timer = threading.Timer(1.0, produce, (broker.service_url, topic, [end(room)]))
    timer.start()
    out = tmp_path / "demo.mp4"
    started = time.monotonic()
    try:
        assert consume(broker, room, "--out", str(out), "--duration", "30") == 0
    finally:
        timer.join()
    assert time.monotonic() - started < 15  # the end, not --duration, finished it
    err = capsys.readouterr().err
    assert "the stream cam1 ended (the publisher left)" in err, err
    assert out.read_bytes() == b"INIT" + b"moof0moof1moof2"


def test_a_room_whose_stream_ended_is_not_replayed(broker: Any, tmp_path: Path, capsys: Any) -> None:
    room = room_name()
    produce(broker.service_url, f"room-{room}-video-360p", [*track(room), end(room)])
    out = tmp_path / "demo.mp4"
    assert consume(broker, room, "--out", str(out), "--duration", "1") == 0
    err = capsys.readouterr().err
    assert f"no one is publishing video in room {room} right now; waiting for a stream" in err, err
    assert f"nothing arrived, so {out} was not written" in err and not out.exists()
    assert "latency: none measured (no video message with a capture time arrived while consume ran" in err


@pytest.mark.parametrize("kind", ["chat", "audio"])
def test_the_latency_line_says_why_there_is_none(broker: Any, kind: str, capsys: Any) -> None:
    assert consume(broker, room_name(), "--kind", kind, "--duration", "0.5") == 0
    err = capsys.readouterr().err
    assert f"latency: none measured (no {kind} message with a capture time arrived while consume ran" in err
    assert "no messages with capture_ts" not in err
