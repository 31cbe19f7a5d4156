"""The aiohttp side: page, health, metrics, cert hash, and /ws refusals and limits (fake publisher)."""

from __future__ import annotations

import asyncio
import hashlib
import json

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ingress.session import Limits
from schemas import framing_codec as f
from schemas.framing_codec import CloseCode
from tests.ingress_support import FakePublisher, ingress, video


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_endpoints(tmp_path) -> None:
    async def main() -> None:
        async with ingress(tmp_path, FakePublisher()) as h, aiohttp.ClientSession() as http:
            async with http.get(h.http_url + "/") as r:
                assert r.status == 404 and "live_client.html" in await r.text()
            (tmp_path / "live_client.html").write_text("<html>live</html>")
            async with http.get(h.http_url + "/") as r:
                assert r.status == 200 and await r.text() == "<html>live</html>"
            async with http.get(h.http_url + "/health") as r:
                assert (await r.json())["status"] == "ok"
            async with http.get(h.http_url + "/cert-hash") as r:
                body = json.loads(await r.text())
            cert = x509.load_pem_x509_certificate(h.cert.cert_path.read_bytes())
            der_hash = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()
            assert body["algorithm"] == "sha-256" and bytes(body["value"]) == der_hash
            assert body["hex"] == der_hash.hex() and body["port"] == h.wt_port
            async with http.get(h.http_url + "/metrics") as r:
                assert "wtpulsar_ingress_publish_latency_seconds" in await r.text()

    run(main())


def test_ws_refusals_use_close_codes(tmp_path) -> None:
    async def main() -> None:
        async with ingress(tmp_path, FakePublisher()) as h, aiohttp.ClientSession() as http:
            for query, code in [("", CloseCode.TOKEN_MISSING), ("?token=x.y.z", CloseCode.TOKEN_INVALID)]:
                async with http.ws_connect(h.http_url + "/ws" + query) as ws:
                    msg = await ws.receive(timeout=5)
                    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == code
                    assert ws.close_code == code

    run(main())


def test_ws_text_message_closes_session_with_reason(tmp_path) -> None:
    async def main() -> None:
        async with ingress(tmp_path, FakePublisher()) as h, aiohttp.ClientSession() as http:
            url = f"{h.http_url}/ws?token={h.issue_token('r', 'u', 'publisher')}"
            async with http.ws_connect(url) as ws:
                await ws.send_str("hello")
                msg = await ws.receive(timeout=5)
                assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == CloseCode.PROTOCOL_ERROR
                assert msg.extra is not None and "binary" in msg.extra
            assert 'what="text_message"' in h.app.metrics.render().decode()

    run(main())


def test_ws_backpressure_stops_reading_then_resumes(tmp_path) -> None:
    async def main() -> None:
        pub = FakePublisher(hold=True)
        async with ingress(tmp_path, pub, limits=Limits(max_inflight=2)) as h, aiohttp.ClientSession() as http:
            url = f"{h.http_url}/ws?token={h.issue_token('r', 'u', 'publisher')}"
            async with http.ws_connect(url) as ws:
                for i in range(10):
                    await ws.send_bytes(f.serialize(video(i)))
                await asyncio.sleep(0.3)
                # 2 in flight + 1 read into the backlog; the rest stay unread in the socket
                assert len(pub.sent) == 2
                for _ in range(100):
                    pub.release()
                    if len(pub.sent) == 10:
                        break
                    await asyncio.sleep(0.02)
                assert [p.properties["seq"] for p in pub.sent] == [str(i) for i in range(10)]
                seen: set[int] = set()
                while 9 not in seen:
                    rec = f.parse((await ws.receive(timeout=5)).data)
                    assert isinstance(rec, f.Ack)
                    seen.add(rec.seq)

    run(main())
