"""The ingress against the real broker: frames land on the input topics, viewers get room output."""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from typing import Any

import aiohttp
import pulsar
import pytest

from clients import consume
from clients.webtransport import open_webtransport
from ingress.viewer import Item
from schemas import framing_codec as f
from schemas.framing_codec import Codec, Frame, Kind
from tests.ingress_support import chat, ingress, video

NS = "persistent://public/wtpulsar/"
ROOMS_NS = "persistent://public/wtpulsar-rooms/"  # room output topics (schemas/names.py rooms_namespace)


def run(coro: Any, timeout: float = 60) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def read_all(service_url: str, short: str, room: str | None = None) -> list[Any]:
    client = pulsar.Client(service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    try:
        reader = client.create_reader(NS + short, pulsar.MessageId.earliest)
        out = []
        while reader.has_message_available():
            msg = reader.read_next(5000)
            if room is None or msg.properties().get("room") == room:
                out.append(msg)
        return out
    finally:
        client.close()


def produce(service_url: str, short: str, items: list[tuple[dict[str, str], bytes]]) -> None:
    client = pulsar.Client(service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    try:
        producer = client.create_producer(ROOMS_NS + short, batching_enabled=False)
        for props, payload in items:
            producer.send(payload, properties=props)
        producer.close()
    finally:
        client.close()


def acks(client: Any) -> list[f.Ack]:
    return [r for _, r in client.state.records if isinstance(r, f.Ack)]


def room_name() -> str:
    return "r" + uuid.uuid4().hex[:10]


def test_frames_land_on_input_topics_in_order_with_properties(broker, tmp_path) -> None:
    room = room_name()

    async def main() -> None:
        async with ingress(tmp_path, broker_service_url=broker.service_url) as h:
            url = f"{h.wt_url}?token={h.issue_token(room, 'alice', 'publisher')}"
            async with open_webtransport(url) as c:
                # one stream per GOP, as FRAMING.md suggests: 4 GOPs of 25 frames
                for gop in range(4):
                    sid = c.open_stream()
                    c.send(sid, b"".join(f.serialize(video(i, key=i % 25 == 0)) for i in range(gop * 25, gop * 25 + 25)),
                           end_stream=True)
                mic = c.open_stream()
                audio = [Frame(Kind.AUDIO, Codec.OPUS, "mic", i, i * 20_000, time.time() * 1000, b"op%d" % i)
                         for i in range(30)]
                c.send(mic, b"".join(f.serialize(a) for a in audio))
                talk = c.open_stream(unidirectional=False)
                c.send(talk, f.serialize(chat(0, "hello")))
                await c.wait_for(lambda s: any(a.stream == "cam" and a.seq == 99 for a in acks(c))
                                 and any(a.stream == "mic" and a.seq == 29 for a in acks(c))
                                 and any(a.stream == "chat" for a in acks(c)), 30)

    run(main())
    *msgs, end = read_all(broker.service_url, "raw-video", room)
    assert [m.properties()["seq"] for m in msgs] == [str(i) for i in range(100)]  # in order, none lost
    # the session is over: its stream ends behind its last frame (ENVELOPE.md "End of stream")
    assert end.properties()["end_of_stream"] == "1" and end.properties()["last_seq"] == "99" and end.data() == b""
    first = msgs[0]
    props = first.properties()
    assert first.partition_key() == "cam" and first.data() == bytes([0]) * 1000
    assert props["kind"] == "video" and props["codec"] == "h264" and props["user"] == "alice"
    assert props["keyframe"] == "1" and msgs[1].properties()["keyframe"] == "0"
    assert props["width"] == "640" and props["height"] == "360" and props["pts"] == "0"
    assert first.event_timestamp() == int(float(props["capture_ts"]))
    assert float(props["t_ingress"]) >= float(props["capture_ts"])
    *audio_msgs, audio_end = read_all(broker.service_url, "raw-audio", room)
    assert [m.data() for m in audio_msgs] == [b"op%d" % i for i in range(30)]
    assert audio_end.properties()["end_of_stream"] == "1" and audio_end.properties()["last_seq"] == "29"
    (chat_msg,) = read_all(broker.service_url, "chat-in", room)
    assert chat_msg.partition_key() == room and b"hello" in chat_msg.data()


def test_large_file_uses_chunking(broker, tmp_path) -> None:
    room = room_name()
    blob = bytes(range(256)) * (24 * 1024)  # 6 MiB, above the 5 MB default message size

    async def main() -> None:
        async with ingress(tmp_path, broker_service_url=broker.service_url) as h:
            url = f"{h.wt_url}?token={h.issue_token(room, 'alice', 'publisher')}"
            async with open_webtransport(url) as c:
                sid = c.open_stream(unidirectional=False)
                c.send(sid, f.serialize(Frame(Kind.FILE, Codec.BYTES, "doc", 0, 0, time.time() * 1000, blob)),
                       end_stream=True)
                await c.wait_for(lambda s: any(a.stream == "doc" for a in acks(c)), 40)
                assert acks(c)[0].status == f.AckStatus.OK

    run(main())
    (msg,) = read_all(broker.service_url, "file-in", room)
    assert msg.data() == blob


def _segments(room: str, first: int, n: int) -> list[tuple[dict[str, str], bytes]]:
    out = []
    for i in range(first, first + n):
        out.append(({"segment_type": "media", "segment_seq": str(i), "keyframe": "1" if i % 3 == 0 else "0",
                     "room": room, "capture_ts": str(time.time() * 1000)}, b"moof%d" % i))
    return out


def test_viewer_late_join_starts_at_init_and_keyframe(broker, tmp_path) -> None:
    room = room_name()
    topic = f"room-{room}-video-360p"
    init = ({"segment_type": "init", "room": room, "mime": 'video/mp4; codecs="avc1.42c01e"'}, b"ftypmoov")
    # history: init, fragments 0..4 (keyframes at 0 and 3) -> a joiner needs init, 3, 4
    produce(broker.service_url, topic, [init] + _segments(room, 0, 5))
    produce(broker.service_url, f"room-{room}-chat", [({"user": "bob", "room": room}, b'{"text":"earlier"}')])

    async def main() -> None:
        async with ingress(tmp_path, broker_service_url=broker.service_url) as h:
            url = f"{h.wt_url}?token={h.issue_token(room, 'viewer1', 'viewer')}&mode=view&rendition=360p"
            async with open_webtransport(url) as c:
                assert c.state.status == 200 and c.state.closed is None

                def deliveries(kind: Kind) -> list[f.Delivery]:
                    return [r for _, r in c.state.records if isinstance(r, f.Delivery) and r.kind == kind]

                await c.wait_for(lambda s: len(deliveries(Kind.VIDEO)) >= 3 and deliveries(Kind.CHAT), 20)
                assert [d.payload for d in deliveries(Kind.VIDEO)] == [b"ftypmoov", b"moof3", b"moof4"]
                assert deliveries(Kind.VIDEO)[0].properties["mime"].startswith("video/mp4")
                assert b"earlier" in deliveries(Kind.CHAT)[0].payload
                # live: a delta, then a new keyframe group on a new stream
                await asyncio.to_thread(produce, broker.service_url, topic, _segments(room, 5, 2))
                await c.wait_for(lambda s: len(deliveries(Kind.VIDEO)) >= 5, 20)
                assert [d.payload for d in deliveries(Kind.VIDEO)][3:] == [b"moof5", b"moof6"]
                streams = [sid for sid, r in c.state.records if isinstance(r, f.Delivery) and r.kind == Kind.VIDEO]
                assert streams[0] == streams[1] == streams[2] == streams[3]  # init + group 3..5 on one stream
                assert streams[4] != streams[3]  # keyframe 6 opens the next group stream

    run(main())


def test_websocket_fallback_round_trip(broker, tmp_path) -> None:
    room = room_name()
    produce(broker.service_url, f"room-{room}-chat", [({"user": "carol", "room": room}, b'{"text":"welcome"}')])

    async def main() -> None:
        async with ingress(tmp_path, broker_service_url=broker.service_url) as h:
            pub_url = f"{h.http_url}/ws?token={h.issue_token(room, 'dave', 'publisher')}"
            view_url = f"{h.http_url}/ws?token={h.issue_token(room, 'erin', 'viewer')}&mode=view&kinds=chat"
            async with aiohttp.ClientSession() as http:
                async with http.ws_connect(pub_url) as ws:
                    for i in range(10):
                        await ws.send_bytes(f.serialize(video(i, stream="wscam")))
                    await ws.send_bytes(f.serialize(chat(0, "via-ws")))
                    await ws.send_bytes(b"\x00\x00\x00\x02\x01\x63")  # a broken record: notice, not a crash
                    got: list[f.Record] = []
                    while not (any(isinstance(r, f.Ack) and r.stream == "wscam" and r.seq == 9 for r in got)
                               and any(isinstance(r, f.Ack) and r.stream == "chat" for r in got)
                               and any(isinstance(r, f.Notice) for r in got)):
                        msg = await ws.receive(timeout=10)
                        got.append(f.parse(msg.data))
                    (notice,) = [r for r in got if isinstance(r, f.Notice)]
                    assert notice.code == f.CloseCode.PROTOCOL_ERROR
                async with http.ws_connect(view_url) as ws:
                    msg = await ws.receive(timeout=10)
                    delivery = f.parse(msg.data)
                    assert isinstance(delivery, f.Delivery) and b"welcome" in delivery.payload
                # a viewer token cannot publish over /ws either
                async with http.ws_connect(view_url.replace("&mode=view", "")) as ws:
                    msg = await ws.receive(timeout=10)
                    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == f.CloseCode.WRONG_ROLE

    run(main())
    *msgs, end = read_all(broker.service_url, "raw-video", room)
    assert [m.properties()["seq"] for m in msgs] == [str(i) for i in range(10)]
    assert [m.partition_key() for m in msgs] == ["wscam"] * 10
    assert end.properties()["end_of_stream"] == "1" and end.partition_key() == "wscam"  # the socket closed


def test_fifty_concurrent_publishers(broker, tmp_path) -> None:
    room = room_name()
    sessions, frames = 50, 10

    async def one(h: Any, n: int) -> None:
        url = f"{h.wt_url}?token={h.issue_token(room, f'user{n}', 'publisher')}"
        async with open_webtransport(url, timeout=30) as c:
            sid = c.open_stream()
            c.send(sid, b"".join(f.serialize(video(i, stream=f"cam{n}", size=2000)) for i in range(frames)))
            await c.wait_for(lambda s: any(a.seq == frames - 1 for a in acks(c)), 45)

    async def main() -> None:
        async with ingress(tmp_path, broker_service_url=broker.service_url, sessions_per_address=64) as h:
            await asyncio.gather(*(one(h, n) for n in range(sessions)))

    run(main(), timeout=90)
    everything = read_all(broker.service_url, "raw-video", room)
    msgs = [m for m in everything if "end_of_stream" not in m.properties()]
    assert len(msgs) == sessions * frames
    assert len(everything) - len(msgs) == sessions  # each stream ended once its session did
    by_stream: dict[str, list[int]] = {}
    for m in msgs:
        by_stream.setdefault(m.partition_key(), []).append(int(m.properties()["seq"]))
    assert len(by_stream) == sessions
    assert all(seqs == list(range(frames)) for seqs in by_stream.values())


def test_consume_writes_playable_sequence_and_prints_chat(broker) -> None:
    room = room_name()
    init = ({"segment_type": "init", "room": room}, b"INIT")
    produce(broker.service_url, f"room-{room}-video-360p", [init] + _segments(room, 0, 4))
    client = pulsar.Client(broker.service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    try:
        out = io.BytesIO()
        summary = consume.consume(client, "public", "wtpulsar", room, Kind.VIDEO, "360p", out, io.StringIO(),
                                  duration=1.0)
        assert out.getvalue() == b"INIT" + b"moof3"  # join point: init + the group from the last keyframe
        produce(broker.service_url, f"room-{room}-chat",
                [({"user": "zed", "capture_ts": str(time.time() * 1000)}, b'{"text":"yo"}')])
        text = io.StringIO()
        summary = consume.consume(client, "public", "wtpulsar", room, Kind.CHAT, None, None, text,
                                  duration=0.5)
        assert text.getvalue() == "[zed] yo\n"
        # history is not "live": no latency sample, and the summary says why rather than promise one
        assert summary.render().startswith("latency: none measured (no chat message with a capture time arrived")
    finally:
        client.close()


def test_media_file_writer_skips_repeated_init() -> None:
    out = io.BytesIO()
    mf = consume.MediaFile(out)
    for props, payload in [({}, b"early"), ({"segment_type": "init"}, b"I"), ({}, b"a"),
                           ({"segment_type": "init"}, b"I"), ({}, b"b")]:
        mf.write(Item(Kind.VIDEO, props, payload))
    assert out.getvalue() == b"Iab" and mf.fragments == 2
    summary = consume.LatencySummary([5.0, 1.0, 3.0])
    assert "p50 3.0 ms" in summary.render() and "max 5.0 ms" in summary.render()


@pytest.mark.parametrize("kinds", ["video", "chat"])
def test_viewer_of_empty_room_gets_nothing_and_closes_cleanly(broker, tmp_path, kinds) -> None:
    room = room_name()

    async def main() -> None:
        async with ingress(tmp_path, broker_service_url=broker.service_url) as h:
            url = f"{h.wt_url}?token={h.issue_token(room, 'v', 'viewer')}&mode=view&kinds={kinds}"
            async with open_webtransport(url) as c:
                await asyncio.sleep(0.5)
                assert c.state.records == [] and c.state.closed is None
            # The server learns of the close after QUIC's draining period (3 x PTO): poll, do not sleep.
            for _ in range(200):
                if not h.app.egress.feeds:
                    break
                await asyncio.sleep(0.05)
            assert h.app.egress.feeds == {}  # the feed stopped with its last viewer

    run(main())


def _fmp4_segments(frames: int = 40, keyint: int = 10) -> list[tuple[dict[str, str], bytes]]:
    """A real fragmented MP4 from PyAV (docs/media-and-webtransport.md §5.3), split into init + one fragment per GOP."""
    import av
    import numpy as np

    sink = io.BytesIO()
    out = av.open(sink, "w", format="mp4", options={"movflags": "frag_keyframe+empty_moov+default_base_moof"})
    stream = out.add_stream("libx264", rate=30)
    stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
    stream.options = {"preset": "ultrafast", "tune": "zerolatency",
                      "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0:bframes=0"}
    for i in range(frames):
        img = np.full((64, 64, 3), i * 5 % 256, dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = i
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)
    out.close()
    data = sink.getvalue()
    boxes, pos = [], 0
    while pos < len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        boxes.append((data[pos + 4:pos + 8], data[pos:pos + size]))
        pos += size
    init = b"".join(b for t, b in boxes if t in (b"ftyp", b"moov"))
    media = [b for t, b in boxes if t in (b"moof", b"mdat")]
    fragments = [media[i] + media[i + 1] for i in range(0, len(media), 2)]
    segs = [({"segment_type": "init"}, init)]
    segs += [({"segment_type": "media", "segment_seq": str(n), "keyframe": "1"}, frag)
             for n, frag in enumerate(fragments)]
    return segs


def test_consume_output_is_a_playable_mp4(broker, tmp_path) -> None:
    import av

    room = room_name()
    produce(broker.service_url, f"room-{room}-video-360p", _fmp4_segments())
    client = pulsar.Client(broker.service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    try:
        path = tmp_path / "out.mp4"
        with path.open("wb") as out:
            consume.consume(client, "public", "wtpulsar", room, Kind.VIDEO, "360p", out, io.StringIO(),
                            duration=0.3, from_start=True)
    finally:
        client.close()
    with av.open(str(path)) as container:
        decoded = sum(1 for _ in container.decode(video=0))
    assert decoded == 40
