"""Publisher side of at-least-once: clients/webtransport.py keeps frames until acked, resends
them on a new session after a drop, and drops media (never chat) only at a keyframe boundary."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from typing import Any

import pytest

from clients.webtransport import BufferFull, ResendBuffer, ResendingPublisher
from ingress.viewer import Item, ViewerSink, ViewerTracks
from schemas import framing_codec as f
from schemas.framing_codec import Ack, AckStatus, Codec, Frame, Kind


def vid(seq: int, key: bool = False, stream: str = "cam", size: int = 10) -> Frame:
    return Frame(Kind.VIDEO, Codec.H264, stream, seq, seq * 33_333, time.time() * 1000.0, bytes(size), key, 64, 36)


def talk(seq: int, stream: str = "chat") -> Frame:
    body = {"text": f"m{seq}", "msg_id": f"u.{seq}"}
    return Frame(Kind.CHAT, Codec.JSON, stream, seq, 0, time.time() * 1000.0, json.dumps(body).encode())


def seqs(buffer: ResendBuffer) -> list[tuple[str, int]]:
    return list(buffer.kept)


def frame_of(record: bytes) -> Frame:
    """The frame a kept record holds (the buffer keeps only frames)."""
    frame = f.parse(record)
    assert isinstance(frame, Frame), frame
    return frame


def test_media_acks_are_cumulative_chat_acks_exact_and_order_is_send_order() -> None:
    b = ResendBuffer()
    for frame in (vid(0, True), talk(0), vid(1), talk(1), vid(2)):
        b.add(frame)
    b.on_ack(Ack("cam", 1))
    b.on_ack(Ack("chat", 1))
    assert seqs(b) == [("chat", 0), ("cam", 2)]
    assert [frame_of(r).seq for r in b.unacked()] == [0, 2]
    assert b.confirmed == 3


def test_rejected_frame_survives_a_later_cumulative_ack_and_is_sent_again() -> None:
    b = ResendBuffer()
    for seq in range(4):
        b.add(vid(seq, seq == 0))
    b.on_ack(Ack("cam", 1, AckStatus.REJECTED, 4012, "broker"))
    b.on_ack(Ack("cam", 3))
    assert seqs(b) == [("cam", 1)]
    (again,) = b.take_rejected()
    assert frame_of(again).seq == 1 and b.take_rejected() == []
    b.on_ack(Ack("cam", 1))  # session.py confirms a resend below the cumulative mark by its own seq
    assert not b.kept and b.nbytes == 0


def test_overflow_drops_oldest_media_up_to_the_next_keyframe_never_chat() -> None:
    b = ResendBuffer(max_frames=6)
    b.add(talk(0))
    for seq in range(5):  # GOP 0,1,2 then keyframe 3
        b.add(vid(seq, key=seq in (0, 3)))
    b.add(vid(5))  # 7th frame: frames 0..2 go, the stream resumes at keyframe 3
    assert seqs(b) == [("chat", 0), ("cam", 3), ("cam", 4), ("cam", 5)]
    assert b.dropped_media == 3 and b.overflows == 1
    full = ResendBuffer(max_frames=2)
    full.add(talk(0))
    full.add(talk(1))
    with pytest.raises(BufferFull, match="chat frame 2 of chat"):
        full.add(talk(2))
    full.add(vid(0, True))  # no media to give up: the new media frame itself is dropped, and counted
    assert seqs(full) == [("chat", 0), ("chat", 1)] and full.dropped_media == 1


def test_byte_bound_and_audio_drops_one_packet_at_a_time() -> None:
    b = ResendBuffer(max_bytes=250)  # 80-byte records: three fit
    mic = [Frame(Kind.AUDIO, Codec.OPUS, "mic", s, s, 0.0, bytes(40), True) for s in range(4)]
    for frame in mic:
        b.add(frame)
    assert seqs(b) == [("mic", 1), ("mic", 2), ("mic", 3)] and b.nbytes == 240 and b.dropped_media == 1


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_session_dropped_mid_stream_is_resumed_and_everything_reaches_the_topic(broker, tmp_path) -> None:
    import pulsar

    room = "r" + uuid.uuid4().hex[:10]
    listen, http = f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}", f"127.0.0.1:{free_port(socket.SOCK_STREAM)}"

    async def start() -> Any:
        from ingress.config import IngressConfig
        from ingress.server import start_ingress

        config = IngressConfig(state_dir=tmp_path / "state", secret=b"s" * 64, page=tmp_path / "p.html",
                               broker_service_url=broker.service_url, listen=listen, http=http)
        return await start_ingress(config)

    async def main() -> ResendingPublisher:
        h = await start()
        pub = ResendingPublisher(f"{h.wt_url}?token={h.issue_token(room, 'alice', 'publisher')}")
        stop = asyncio.Event()
        runner = asyncio.create_task(pub.run(stop, drain_s=30.0))
        for seq in range(40):
            pub.publish(vid(seq, key=seq % 10 == 0, size=200))
            if seq % 4 == 0:
                pub.publish(talk(seq // 4))
            if seq == 20:
                # the session drops mid-stream, before the ingress acked the newest frames; frames keep
                # being captured meanwhile
                assert pub.buffer.kept
                await h.stop()
            if seq == 30:
                h = await start()  # the same ports again
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(runner, 40)
        await h.stop()
        return pub

    pub = asyncio.run(asyncio.wait_for(main(), 60))
    assert not pub.buffer.kept and pub.sessions >= 2 and pub.resent > 0, (pub.sessions, pub.errors)
    client = pulsar.Client(broker.service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    got: dict[str, list[Any]] = {}
    try:
        for short in ("raw-video", "chat-in"):
            reader = client.create_reader(f"persistent://public/wtpulsar/{short}", pulsar.MessageId.earliest)
            got[short] = []
            while reader.has_message_available():
                msg = reader.read_next(5000)
                if msg.properties().get("room") == room and "end_of_stream" not in msg.properties():
                    got[short].append(msg)
            reader.close()
    finally:
        client.close()
    video_seqs = [int(m.properties()["seq"]) for m in got["raw-video"]]
    chat_seqs = [int(m.properties()["seq"]) for m in got["chat-in"]]
    assert set(video_seqs) == set(range(40)) and set(chat_seqs) == set(range(10))  # at least once each

    # What a viewer of those messages gets (route copies them to the room topics): each exactly once.
    class Sink(ViewerSink):
        def __init__(self) -> None:
            self.got: list[tuple[str, str]] = []

        def open_group(self, kind: Kind) -> object:
            return kind

        def write(self, handle: object, data: bytes) -> None:
            d = f.parse(data)
            assert isinstance(d, f.Delivery), d
            self.got.append((d.properties["stream"], d.properties["seq"]))

    sink = Sink()
    viewer = ViewerTracks(sink, queue_budget=1 << 30)
    for kind, short in ((Kind.VIDEO, "raw-video"), (Kind.CHAT, "chat-in")):
        for msg in got[short]:
            viewer.offer(Item(kind, dict(msg.properties()), msg.data()))
    assert sorted(sink.got) == sorted({(s, q) for s, q in sink.got}), "a duplicate reached the viewer"
    assert len([g for g in sink.got if g[0] == "chat"]) == 10
