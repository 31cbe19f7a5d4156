"""Headless Chromium against the ingress: serverCertificateHashes, a published frame, its Ack, a refusal."""

from __future__ import annotations

import asyncio
import json
import shutil
import time

import pytest

from schemas import framing_codec as f
from tests.ingress_support import FakePublisher, ingress

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian chromium"),
]

PAGE = """<!doctype html><html><body><script>
async function runTest(url, hashBytes, frame) {
  const out = {};
  try {
    const wt = new WebTransport(url, {serverCertificateHashes: [{algorithm: 'sha-256', value: new Uint8Array(hashBytes)}]});
    await wt.ready; out.ready = true;
    if (frame) {
      const s = await wt.createUnidirectionalStream(); const w = s.getWriter();
      await w.write(new Uint8Array(frame)); await w.close();
      const reader = wt.incomingUnidirectionalStreams.getReader();
      const {value} = await reader.read(); const r = value.getReader();
      const {value: chunk} = await r.read(); out.ack = Array.from(chunk);
    }
    out.closed = await Promise.race([wt.closed, new Promise(r => setTimeout(() => r('open'), 1000))]);
  } catch (e) { out.error = String(e); }
  return JSON.stringify(out);
}
</script></body></html>"""


def test_chromium_publishes_and_sees_close_codes(tmp_path) -> None:
    playwright = pytest.importorskip("playwright.async_api")
    (tmp_path / "live_client.html").write_text(PAGE)

    async def main() -> None:
        pub = FakePublisher()
        async with ingress(tmp_path, pub) as h, playwright.async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            try:
                page = await browser.new_page()
                await page.goto(h.http_url + "/")  # the ingress serves the page itself (secure: loopback)
                frame = list(f.serialize(f.Frame(f.Kind.VIDEO, f.Codec.H264, "cam", 0, 0, time.time() * 1000,
                                                 b"\x00\x00\x00\x01\x65", True, 640, 480)))
                cert = list(h.cert.sha256)
                url = f"{h.wt_url}?token={h.issue_token('r1', 'u', 'publisher')}"
                ok = json.loads(await page.evaluate("([u, h, f]) => runTest(u, h, f)", [url, cert, frame]))
                assert ok.get("ready") is True and ok["closed"] == "open", ok
                assert f.parse(bytes(ok["ack"])) == f.Ack("cam", 0)  # broker-acked, on the control stream
                url = f"{h.wt_url}?token={h.issue_token('r1', 'u', 'viewer')}"
                refused = json.loads(await page.evaluate("([u, h]) => runTest(u, h, null)", [url, cert]))
                assert refused["closed"]["closeCode"] == f.CloseCode.WRONG_ROLE
                assert "may not publish" in refused["closed"]["reason"]
            finally:
                await browser.close()
        frames = [p for p in pub.sent if "end_of_stream" not in p.properties]
        assert [(p.topic, p.payload) for p in frames] == [("raw-video", b"\x00\x00\x00\x01\x65")]

    asyncio.run(asyncio.wait_for(main(), 90))
