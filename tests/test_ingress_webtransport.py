"""The aioquic WebTransport shell with a fake publisher: sessions, acks, refusals, limits, backpressure."""

from __future__ import annotations

import asyncio

import pytest

from clients.webtransport import open_webtransport
from ingress import flow_gate, tokens
from ingress.session import Limits
from schemas import framing_codec as f
from schemas.framing_codec import AckStatus, CloseCode
from tests.ingress_support import FakePublisher, chat, ingress, video


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def acks_of(client) -> list[f.Ack]:
    return [r for _, r in client.state.records if isinstance(r, f.Ack)]


def notices_of(client) -> list[f.Notice]:
    return [r for _, r in client.state.records if isinstance(r, f.Notice)]


def test_publish_frames_and_chat_get_acked(tmp_path) -> None:
    async def main() -> None:
        pub = FakePublisher()
        async with ingress(tmp_path, pub) as h:
            url = f"{h.wt_url}?token={h.issue_token('r1', 'alice', 'publisher')}"
            async with open_webtransport(url) as c:
                assert c.state.status == 200
                uni = c.open_stream()
                c.send(uni, b"".join(f.serialize(video(i)) for i in range(20)))
                bidi = c.open_stream(unidirectional=False)
                c.send(bidi, f.serialize(chat(0)) + f.serialize(chat(1)))
                await c.wait_for(lambda s: any(a.stream == "cam" and a.seq == 19 for a in acks_of(c))
                                 and sum(a.stream == "chat" for a in acks_of(c)) == 2)
                chat_acks = [(sid, r.seq) for sid, r in c.state.records if isinstance(r, f.Ack) and r.stream == "chat"]
                assert chat_acks == [(bidi, 0), (bidi, 1)]  # per message, on the chat stream itself
                media = [a.seq for a in acks_of(c) if a.stream == "cam"]
                assert media == sorted(media) and media[-1] == 19  # cumulative, increasing
            assert [p.properties["seq"] for p in pub.sent if p.topic == "raw-video"] == [str(i) for i in range(20)]
            assert {p.properties["room"] for p in pub.sent} == {"r1"}
            assert {p.properties["user"] for p in pub.sent} == {"alice"}
            metrics = h.app.metrics.render().decode()
            assert 'wtpulsar_ingress_frames_total{kind="video",transport="webtransport"} 20.0' in metrics

    run(main())


@pytest.mark.parametrize("query, code, words", [
    ("", CloseCode.TOKEN_MISSING, "missing"),
    ("token=abc.def.ghi", CloseCode.TOKEN_INVALID, "malformed"),
    ("token=BADSIG", CloseCode.TOKEN_INVALID, "signature"),
    ("token=EXPIRED", CloseCode.TOKEN_EXPIRED, "expired"),
    ("token=VIEWER", CloseCode.WRONG_ROLE, "may not publish"),
    ("token=VIEWER&mode=view&rendition=huge", CloseCode.BAD_NAME, "rendition"),
    ("token=VIEWER&mode=view&kinds=smell", CloseCode.BAD_REQUEST, "smell"),
])
def test_refused_sessions_get_close_code_and_reason(tmp_path, query, code, words) -> None:
    async def main() -> None:
        async with ingress(tmp_path, FakePublisher()) as h:
            secret = h.app.secret
            q = (query.replace("BADSIG", tokens.issue(b"x" * 64, "r", "u", "publisher", 1e9 * 2))
                 .replace("EXPIRED", tokens.issue(secret, "r", "u", "publisher", 1_000_000_000.0, ttl=5))
                 .replace("VIEWER", h.issue_token("r", "u", "viewer")))
            async with open_webtransport(f"{h.wt_url}?{q}") as c:
                await c.wait_for(lambda s: s.closed is not None)
                assert c.state.closed.code == code
                assert words in c.state.closed.reason
            assert h.app.addresses._counts == {}  # refused sessions hold no slot
            assert f'reason="{code.name.lower()}"' in h.app.metrics.render().decode()

    run(main())


def test_wrong_path_is_404(tmp_path) -> None:
    async def main() -> None:
        async with ingress(tmp_path, FakePublisher()) as h:
            url = h.wt_url.replace("/wt", "/other") + "?token=" + h.issue_token("r", "u", "publisher")
            async with open_webtransport(url) as c:
                assert c.state.status == 404

    run(main())


def test_garbage_closes_one_stream_others_carry_on(tmp_path) -> None:
    async def main() -> None:
        pub = FakePublisher()
        async with ingress(tmp_path, pub, limits=Limits(max_frame_bytes=4000)) as h:
            url = f"{h.wt_url}?token={h.issue_token('r1', 'bob', 'publisher')}"
            async with open_webtransport(url) as c:
                bad = c.open_stream()
                c.send(bad, b"\x00\x00\x00\x10GARBAGE-GARBAGE!")
                good = c.open_stream()
                await c.wait_for(lambda s: notices_of(c))
                c.send(good, f.serialize(video(0)))
                await c.wait_for(lambda s: any(a.stream == "cam" for a in acks_of(c)))
                (notice,) = notices_of(c)
                assert notice.code == CloseCode.PROTOCOL_ERROR and "bad_version" in notice.reason
                assert f"stream {bad}" in notice.reason
                # oversized frame: refused from its length prefix, stream closed with LIMIT_EXCEEDED
                big = c.open_stream()
                c.send(big, f.serialize(video(1, size=5000)))
                await c.wait_for(lambda s: len(notices_of(c)) == 2)
                assert notices_of(c)[1].code == CloseCode.LIMIT_EXCEEDED
                assert c.state.closed is None  # the session survived
            metrics = h.app.metrics.render().decode()
            assert 'wtpulsar_ingress_rejected_total{what="bad_version"} 1.0' in metrics
            # refused by the reader from its length prefix and kind, before its payload was buffered
            assert 'wtpulsar_ingress_rejected_total{what="too_large"} 1.0' in metrics
            assert len(pub.sent) == 1

    run(main())


def test_too_many_sessions_from_one_address(tmp_path) -> None:
    async def main() -> None:
        async with ingress(tmp_path, FakePublisher(), sessions_per_address=2) as h:
            url = f"{h.wt_url}?token={h.issue_token('r1', 'u', 'publisher')}"
            async with open_webtransport(url) as a, open_webtransport(url) as b, open_webtransport(url) as c:
                await c.wait_for(lambda s: s.closed is not None)
                assert c.state.closed.code == CloseCode.TOO_MANY_SESSIONS
                assert a.state.closed is None and b.state.closed is None
                # the surviving sessions still publish
                sid = a.open_stream()
                a.send(sid, f.serialize(video(0)))
                await a.wait_for(lambda s: acks_of(a))

    run(main())


def test_bitrate_limit_closes_session_with_reason(tmp_path) -> None:
    async def main() -> None:
        limits = Limits(max_bitrate=80_000, burst_seconds=0.5)  # 5 kB bucket
        async with ingress(tmp_path, FakePublisher(), limits=limits) as h:
            url = f"{h.wt_url}?token={h.issue_token('r1', 'u', 'publisher')}"
            async with open_webtransport(url) as c:
                sid = c.open_stream()
                c.send(sid, b"".join(f.serialize(video(i, size=4000)) for i in range(5)))
                await c.wait_for(lambda s: s.closed is not None)
                assert c.state.closed.code == CloseCode.LIMIT_EXCEEDED and "bit/s" in c.state.closed.reason
            assert h.app.addresses._counts == {}

    run(main())


def test_backpressure_stops_reading_until_broker_acks(tmp_path) -> None:
    """With the broker not acking, the ingress stops granting credit: the client is left holding the data."""

    async def main() -> None:
        pub = FakePublisher(hold=True)
        window = 64 * 1024
        limits = Limits(max_inflight=4, max_backlog_bytes=4 * 1024 * 1024)
        async with ingress(tmp_path, pub, limits=limits, stream_window=window) as h:
            url = f"{h.wt_url}?token={h.issue_token('r1', 'u', 'publisher')}"
            async with open_webtransport(url) as c:
                sid = c.open_stream()
                total = 200
                c.send(sid, b"".join(f.serialize(video(i, size=8000)) for i in range(total)))  # ~1.6 MB
                await asyncio.sleep(1.0)
                assert len(pub.sent) == 4  # only the in-flight window went to the "broker"
                unsent = c.unsent_bytes(sid)
                assert unsent > 1_000_000  # flow control holds the rest in the client
                pub.release()
                # Acks arrive as the fake broker now acks immediately; everything ends up published.
                for _ in range(200):
                    pub.release()
                    if len(pub.sent) == total:
                        break
                    await asyncio.sleep(0.02)
                assert [int(p.properties["seq"]) for p in pub.sent] == list(range(total))
                await c.wait_for(lambda s: any(a.seq == total - 1 for a in acks_of(c)))
            assert 'wtpulsar_ingress_read_paused_total 0.0' not in h.app.metrics.render().decode()

    run(main())


def test_flow_gate_helpers_report_zero_for_unknown_streams() -> None:
    class Q:
        _streams: dict[int, object] = {}

    assert flow_gate.queued_bytes(Q(), 5) == 0  # type: ignore[arg-type]  # only _streams is read
    assert flow_gate.received_offset(Q(), 5) == 0  # type: ignore[arg-type]  # only _streams is read


def test_datagram_audio_is_published(tmp_path) -> None:
    async def main() -> None:
        pub = FakePublisher()
        async with ingress(tmp_path, pub) as h:
            url = f"{h.wt_url}?token={h.issue_token('r1', 'u', 'publisher')}"
            async with open_webtransport(url) as c:
                frame = f.Frame(f.Kind.AUDIO, f.Codec.OPUS, "mic", 0, 0, 1.0, b"opus-packet")
                c.send_datagram(f.serialize(frame))
                await c.wait_for(lambda s: any(a.stream == "mic" for a in acks_of(c)))
            assert pub.sent[0].topic == "raw-audio" and pub.sent[0].payload == b"opus-packet"
            assert acks_of(c)[0].status == AckStatus.OK

    run(main())


def test_shutdown_closes_sessions_with_normal_code(tmp_path) -> None:
    async def main() -> None:
        from ingress.config import IngressConfig
        from ingress.server import start_ingress

        config = IngressConfig(listen="127.0.0.1:0", http="127.0.0.1:0", state_dir=tmp_path, secret=b"s" * 64)
        h = await start_ingress(config, publisher=FakePublisher())
        try:
            async with open_webtransport(f"{h.wt_url}?token={h.issue_token('r1', 'u', 'publisher')}") as c:
                await h.stop()
                await c.wait_for(lambda s: s.closed is not None)
                assert c.state.closed.code == CloseCode.NORMAL and "shutting down" in c.state.closed.reason
        finally:
            await h.stop()

    run(main())


def test_closed_connection_frees_its_address_slot_at_once(tmp_path) -> None:
    async def main() -> None:
        async with ingress(tmp_path, FakePublisher(), sessions_per_address=1) as h:
            url = f"{h.wt_url}?token={h.issue_token('r1', 'u', 'publisher')}"
            for _ in range(3):  # reconnecting right away must not hit the per-address cap
                async with open_webtransport(url) as c:
                    await asyncio.sleep(0.05)
                    assert c.state.status == 200 and c.state.closed is None

    run(main())
