"""The clock-offset exchange (schemas/FRAMING.md "Clock"): the CLOCK record, the ingress's replies over
WebTransport datagrams and the WebSocket for publishers and viewers, refusals of malformed ones, and the
ingress never storing a capture time later than its own receive time."""

from __future__ import annotations

import asyncio
import math
import struct
import time

import aiohttp
import pytest

from clients.webtransport import DATAGRAM, open_webtransport
from ingress import clock
from ingress.session import Limits, Publish, PublisherSession
from ingress.tokens import Claims, Role
from schemas import framing_codec as f
from schemas.framing_codec import Clock, Codec, Frame, Kind
from tests.ingress_support import FakePublisher, ingress


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_clock_record_round_trips_and_is_recognised_cheaply() -> None:
    record = Clock(1_800_000_000_123.25, 1_800_000_008_000.5, 1_800_000_008_000.75)
    data = f.serialize(record)
    assert len(data) == 4 + 26 and f.is_clock(data) and f.parse(data) == record
    assert not f.is_clock(f.serialize(f.Ack("cam", 1))) and not f.is_clock(b"\x00")
    assert Clock(5.0).is_request and not record.is_request


@pytest.mark.parametrize(("data", "words"), [
    (struct.pack(">IBBdd", 18, 1, 0x13, 1.0, 0.0), "clock record body is 18 bytes, must be 26"),
    (struct.pack(">IBBddd", 26, 1, 0x13, math.nan, 0.0, 0.0), "clock origin nan must be finite and >= 0"),
    (struct.pack(">IBBddd", 26, 1, 0x13, 5.0, -1.0, 0.0), "clock received -1.0 must be finite and >= 0"),
])
def test_malformed_clock_records_are_refused_naming_the_field(data: bytes, words: str) -> None:
    with pytest.raises(f.FramingError, match=words):
        f.parse(data)
    assert words in clock.answer(data, 1.0, 2.0).error


def test_answer_echoes_the_origin_with_the_ingress_times() -> None:
    reply = f.parse(clock.answer(f.serialize(Clock(1000.0)), 9000.0, 9000.5).reply)
    assert reply == Clock(1000.0, 9000.0, 9000.5)
    refused = clock.answer(f.serialize(Clock(1000.0, 2.0, 3.0)), 9000.0, 9000.5)
    assert refused.reply == b"" and "must have received = transmitted = 0" in refused.error
    assert "Ack record where a CLOCK request was expected" in clock.answer(f.serialize(f.Ack("c", 0)), 1, 1).error


def offset_from(request_ms: float, reply: Clock, arrival_ms: float) -> tuple[float, float]:
    """NTP's offset and round-trip delay from the four timestamps (docs/clock-sync.md)."""
    offset = ((reply.received - request_ms) + (reply.transmitted - arrival_ms)) / 2
    delay = (arrival_ms - request_ms) - (reply.transmitted - reply.received)
    return offset, delay


@pytest.mark.parametrize("mode", ["publish", "view"])
def test_webtransport_session_answers_clock_datagrams(tmp_path, mode: str) -> None:
    async def main() -> None:
        async with ingress(tmp_path, FakePublisher()) as h:
            role = "publisher" if mode == "publish" else "viewer"
            url = f"{h.wt_url}?token={h.issue_token('room1', 'alice', role)}&mode={mode}"
            async with open_webtransport(url) as c:
                skew = 8_000.0  # this client's clock runs 8 s ahead of the ingress's
                sent = time.time() * 1000 + skew
                c.send_datagram(f.serialize(Clock(sent)))
                await c.wait_for(lambda s: any(isinstance(r, Clock) for _, r in s.records))
                arrived = time.time() * 1000 + skew
                (where, reply), = [(w, r) for w, r in c.state.records if isinstance(r, Clock)]
                assert where == DATAGRAM and reply.origin == sent
                offset, delay = offset_from(sent, reply, arrived)
                assert abs(offset + skew) < 50 and 0 <= delay < 200, (offset, delay)

    run(main())


def test_websocket_publisher_and_viewer_get_clock_replies_and_a_notice_for_garbage(tmp_path) -> None:
    async def main() -> None:
        async with ingress(tmp_path, FakePublisher()) as h:
            async with aiohttp.ClientSession() as http:
                for role, query in (("publisher", ""), ("viewer", "&mode=view")):
                    url = f"{h.http_url}/ws?token={h.issue_token('room1', 'bob', role)}{query}"
                    async with http.ws_connect(url) as ws:
                        await ws.send_bytes(f.serialize(Clock(1234.5)))
                        reply = f.parse((await ws.receive(timeout=5)).data)
                        assert isinstance(reply, Clock) and reply.origin == 1234.5
                        assert abs(reply.received - time.time() * 1000) < 2000
                        await ws.send_bytes(struct.pack(">IBBd", 10, 1, 0x13, 1.0))
                        notice = f.parse((await ws.receive(timeout=5)).data)
                        assert isinstance(notice, f.Notice) and "clock record body is 10 bytes" in notice.reason
            assert 'wtpulsar_ingress_rejected_total{what="bad_clock"} 2.0' in h.app.metrics.render().decode()

    run(main())


def test_a_capture_time_after_the_ingress_received_the_frame_is_stored_as_the_receive_time() -> None:
    claims = Claims(room="room1", user="alice", role=Role.PUBLISHER, expires_at=2e9)
    now = 1_800_000_000.0
    s = PublisherSession(claims, Limits(), now)
    ahead = Frame(Kind.VIDEO, Codec.H264, "cam", 0, 0, now * 1000 + 8_349, bytes(10), True, 640, 360)
    behind = Frame(Kind.VIDEO, Codec.H264, "cam", 1, 0, now * 1000 - 40, bytes(10), False, 640, 360)
    out = [a for a in s.stream_data(2, f.serialize(ahead) + f.serialize(behind), False, now) if isinstance(a, Publish)]
    assert out[0].properties["capture_ts"] == out[0].properties["t_ingress"] == "1800000000000"
    assert out[0].event_timestamp == 1_800_000_000_000  # never a negative capture -> ingress hop
    assert out[1].properties["capture_ts"] == "1799999999960"  # an earlier capture time is kept as sent
