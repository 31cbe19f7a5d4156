"""The ingress ends a publisher's media streams when its session ends (schemas/ENVELOPE.md "End of
stream"): after the stream's last frame, with the reason (left, timeout, closed), never for a stream
another live session has taken over, and never for chat."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from clients.webtransport import open_webtransport
from ingress.session import Limits, Publish, PublisherSession
from ingress.tokens import Claims, Role
from schemas import framing_codec as f
from schemas.framing_codec import Codec, Frame, Kind
from tests.ingress_support import FakePublisher, chat, ingress, video

CLAIMS = Claims(room="room1", user="alice", role=Role.PUBLISHER, expires_at=2e9)
T0 = 1_800_000_000.0


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def audio(seq: int, stream: str = "mic") -> Frame:
    return Frame(Kind.AUDIO, Codec.OPUS, stream, seq, seq * 20_000, T0 * 1000, b"\xfc" + bytes(40), True)


def ends(sent: list[Publish]) -> list[Publish]:
    return [p for p in sent if p.properties.get("end_of_stream") == "1"]


# ---- the sans-I/O core -----------------------------------------------------------------------------


def test_end_of_streams_names_each_media_stream_and_its_last_sent_seq() -> None:
    s = PublisherSession(CLAIMS, Limits(), T0)
    s.stream_data(2, b"".join(f.serialize(video(i)) for i in range(5)), False, T0)
    s.stream_data(6, f.serialize(audio(0)) + f.serialize(audio(1)), False, T0)
    s.stream_data(10, f.serialize(chat(0)), False, T0, bidi=True)
    s.close()
    out = s.end_of_streams("left", T0 + 1)
    by_stream = {p.key: p for p in out}
    assert set(by_stream) == {"cam", "mic"}  # chat has no stream to end
    cam = by_stream["cam"]
    assert cam.topic == "raw-video" and cam.payload == b"" and cam.event_timestamp == int((T0 + 1) * 1000)
    assert cam.properties == {"end_of_stream": "1", "kind": "video", "codec": "h264", "stream": "cam",
                              "room": "room1", "user": "alice", "last_seq": "4", "reason": "left",
                              "t_ingress": "1800000001000"}
    assert by_stream["mic"].topic == "raw-audio" and by_stream["mic"].properties["last_seq"] == "1"
    assert by_stream["mic"].properties["codec"] == "opus"
    assert len({p.ticket for p in out}) == 2


def test_end_names_the_last_frame_handed_to_the_broker_not_one_still_waiting() -> None:
    s = PublisherSession(CLAIMS, Limits(max_inflight=2), T0)
    s.stream_data(2, b"".join(f.serialize(video(i)) for i in range(6)), False, T0)  # 0, 1 sent; 2..5 wait
    s.close()  # the waiting frames are dropped with the session (never acked: the page resends them)
    (end,) = s.end_of_streams("timeout", T0)
    assert end.properties["last_seq"] == "1" and end.properties["reason"] == "timeout"


def test_end_of_streams_refuses_an_unknown_reason_and_skips_streams_that_sent_nothing() -> None:
    s = PublisherSession(CLAIMS, Limits(), T0)
    assert s.end_of_streams("closed", T0) == []
    with pytest.raises(ValueError, match="reason 'gone' is not one of left, timeout, closed"):
        s.end_of_streams("gone", T0)


# ---- the WebTransport and WebSocket shells ------------------------------------------------------


def video_frames(n: int, stream: str = "cam") -> bytes:
    return b"".join(f.serialize(video(i, stream)) for i in range(n))


def test_leaving_publisher_ends_its_stream_behind_the_last_frame(tmp_path) -> None:
    async def main() -> None:
        pub = FakePublisher()
        async with ingress(tmp_path, pub) as h:
            url = f"{h.wt_url}?token={h.issue_token('room1', 'alice', 'publisher')}"
            async with open_webtransport(url) as c:
                c.send(c.open_stream(), video_frames(10))
                await c.wait_for(lambda s: any(isinstance(r, f.Ack) and r.seq == 9 for _, r in s.records))
            await wait(lambda: ends(pub.sent))
            (end,) = ends(pub.sent)
            assert pub.sent[-1] is end and end.topic == "raw-video" and end.key == "cam"
            assert end.properties["last_seq"] == "9" and end.properties["reason"] == "left"
            assert 'wtpulsar_ingress_streams_ended_total{reason="left"} 1.0' in h.app.metrics.render().decode()

    run(main())


def test_publisher_that_vanishes_is_ended_after_the_session_timeout(tmp_path) -> None:
    async def main() -> None:
        pub = FakePublisher()
        async with ingress(tmp_path, pub, session_timeout=1.5) as h:
            url = f"{h.wt_url}?token={h.issue_token('room1', 'alice', 'publisher')}"
            async with open_webtransport(url) as c:
                c.send(c.open_stream(), video_frames(4))
                await c.wait_for(lambda s: any(isinstance(r, f.Ack) and r.seq == 3 for _, r in s.records))
                c.transmit = lambda: None  # no more packets, no CONNECTION_CLOSE, no capsule: the peer is gone
                gone = time.monotonic()
                await wait(lambda: ends(pub.sent), timeout=10)
                waited = time.monotonic() - gone
            (end,) = ends(pub.sent)
            assert end.properties["reason"] == "timeout" and end.properties["last_seq"] == "3"
            assert 1.0 < waited < 6.0, waited  # the session timeout, not the old 60 s

    run(main())


def test_no_end_for_a_stream_a_newer_session_has_taken_over(tmp_path) -> None:
    async def main() -> None:
        pub = FakePublisher()
        async with ingress(tmp_path, pub) as h:
            url = f"{h.wt_url}?token={h.issue_token('room1', 'alice', 'publisher')}"
            async with open_webtransport(url) as first:
                first.send(first.open_stream(), video_frames(3))
                await first.wait_for(lambda s: any(isinstance(r, f.Ack) and r.seq == 2 for _, r in s.records))
                async with open_webtransport(url) as second:  # the page reconnected; the old session lingers
                    second.send(second.open_stream(), b"".join(f.serialize(video(i)) for i in range(3, 6)))
                    await second.wait_for(lambda s: any(isinstance(r, f.Ack) and r.seq == 5 for _, r in s.records))
                    first.close()
                    await asyncio.sleep(0.5)
                    assert ends(pub.sent) == []  # the old session's end would cut the live stream
            await wait(lambda: ends(pub.sent))
            await asyncio.sleep(0.3)
            (end,) = ends(pub.sent)
            assert end.properties["last_seq"] == "5"

    run(main())


def test_websocket_publisher_leaving_ends_its_stream(tmp_path) -> None:
    async def main() -> None:
        pub = FakePublisher()
        async with ingress(tmp_path, pub) as h:
            url = f"{h.http_url}/ws?token={h.issue_token('room1', 'alice', 'publisher')}"
            async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
                for i in range(3):
                    await ws.send_bytes(f.serialize(audio(i)))
                await wait(lambda: len(pub.sent) == 3)
            await wait(lambda: ends(pub.sent))
            (end,) = ends(pub.sent)
            assert end.topic == "raw-audio" and end.properties["reason"] == "left" and end.properties["last_seq"] == "2"

    run(main())


def test_session_the_ingress_closes_ends_its_streams_as_closed(tmp_path) -> None:
    async def main() -> None:
        pub = FakePublisher()
        limits = Limits(max_bitrate=80_000, burst_seconds=0.1)  # 1 KB of budget: the third frame is over it
        async with ingress(tmp_path, pub, limits=limits) as h:
            url = f"{h.wt_url}?token={h.issue_token('room1', 'alice', 'publisher')}"
            async with open_webtransport(url) as c:
                c.send(c.open_stream(), video_frames(5))
                await c.wait_for(lambda s: s.closed is not None)
            await wait(lambda: ends(pub.sent))
            (end,) = ends(pub.sent)
            assert end.properties["reason"] == "closed"

    run(main())


async def wait(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)
