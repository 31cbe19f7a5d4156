"""live_client.html against a bare ingress. What a person sees when something is wrong ("Clear
messages for every failure"): server down (and recovery by the retry), no/expired token, a viewer
token, a camera permission refused, a certificate the browser does not trust and a browser without
WebTransport (both fall back to the WebSocket path and say so). Also: screen capture publishes.

Each test drives live_client.html in Debian's Chromium. Only the ingress runs (against the session
broker); no functions are needed for these paths.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from ingress import tokens
from tests.browser_support import (
    REPO,
    IngressProcess,
    browser_tier,
    free_port,
    import_page_modules,
    ingress_in_thread,
    launch_browser,
    new_secret,
    start_ingress_process,
    stats,
)

pytestmark = browser_tier(90)

PAGE_FILE = (REPO / "live_client.html").as_uri()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser(playwright: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    context = launch_browser(playwright, tmp_path_factory.mktemp("chromium-errors"))
    yield context
    context.close()


@pytest.fixture(scope="module")
def ingress(broker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[IngressProcess]:
    handle = start_ingress_process(broker.service_url, tmp_path_factory.mktemp("ingress-errors"))
    yield handle
    handle.stop()


def banner(page: Any) -> str:
    page.wait_for_selector("#banner", state="visible", timeout=15_000)
    return page.inner_text("#bannerText")


def test_server_down_says_so_and_recovers_by_retrying(browser: Any, broker: Any, tmp_path: Path) -> None:
    port, secret = free_port(), new_secret()
    token = tokens.issue(secret, "lobby", "tester", "publisher", time.time(), 3600)
    page = browser.new_page()
    page.goto(f"{PAGE_FILE}?server=http://127.0.0.1:{port}&token={token}")
    text = banner(page)
    assert f"Cannot reach the server at http://127.0.0.1:{port}" in text
    assert "Retrying" in text
    assert page.is_visible("#bannerRetry")
    # Bring the server up on that port: the automatic retry must find it and clear the error.
    ingress = start_ingress_process(broker.service_url, tmp_path / "late-ingress", http_port=port, secret=secret)
    try:
        page.wait_for_function("() => window.wtpulsar && window.wtpulsar.errors.length === 0 && "
                               "getComputedStyle(document.getElementById('banner')).display === 'none'",
                               timeout=15_000)
    finally:
        ingress.stop()
        page.close()


def test_page_opened_from_disk_runs_the_modules_of_the_ingress_it_talks_to(browser: Any, ingress: IngressProcess) -> None:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{PAGE_FILE}?server={ingress.http_url}&token={quote(ingress.token('viewer'))}")
    page.wait_for_function("() => window.wtpulsar && window.wtpulsar.transport !== null", timeout=15_000)
    # still the file:// document (a secure context), running the page and modules the ingress serves
    assert page.evaluate("() => [location.protocol, window.isSecureContext, document.title]") == ["file:", True,
                                                                                                  "wtpulsar live"]
    modules = page.evaluate("() => [...document.querySelectorAll('script[type=module]')].map(s => s.src)")
    assert modules == [ingress.http_url + "/static/app.js"]
    assert "viewer" in page.inner_text("#who") and page.is_disabled("#startPub")
    page.wait_for_function("() => document.querySelectorAll('#metricsBody tr').length > 10", timeout=5_000)
    import_page_modules(page)
    assert page.evaluate("() => mods.viewer.view.running") is True  # a viewer token starts watching
    assert errors == []
    page.close()


def test_page_from_disk_says_when_the_server_has_no_page(browser: Any, tmp_path: Path) -> None:
    with ingress_in_thread(tmp_path / "state", page=tmp_path / "absent.html") as server:
        page = browser.new_page()
        page.goto(f"{PAGE_FILE}?server={server.http_url}&token=x.y.z")
        text = banner(page)
        page.close()
    assert text == f"The server at {server.http_url} answered 404 for the page. Retrying in 3 s."


def test_missing_token_is_explained(browser: Any, ingress: IngressProcess) -> None:
    page = browser.new_page()
    page.goto(ingress.http_url + "/")
    assert "No token was given" in banner(page)
    page.close()


def test_expired_token_is_explained_and_nothing_is_sent(browser: Any, ingress: IngressProcess) -> None:
    token = ingress.token("publisher", now=time.time() - 7200, ttl=60)
    page = browser.new_page()
    page.goto(f"{ingress.http_url}/?token={token}")
    assert "token has expired" in banner(page)
    page.click("#startPub")
    assert "token has expired" in banner(page)
    assert stats(page)["transport"] is None  # no session was opened


def test_viewer_token_cannot_publish_or_chat(browser: Any, ingress: IngressProcess) -> None:
    page = browser.new_page()
    page.goto(f"{ingress.http_url}/?token={ingress.token('viewer')}")
    page.wait_for_function("() => window.wtpulsar.transport !== null", timeout=15_000)  # viewer session opened
    assert page.is_disabled("#startPub")
    assert page.is_disabled("#chatSend")
    assert "read-only" in (page.get_attribute("#chatText", "placeholder") or "")
    assert "viewer" in page.inner_text("#who")
    page.close()


def test_camera_permission_refused_is_explained(playwright: Any, ingress: IngressProcess, tmp_path: Path) -> None:
    context = launch_browser(playwright, tmp_path / "no-media-ui", grant_media=False)
    try:
        page = context.new_page()
        page.goto(f"{ingress.http_url}/?token={ingress.token('publisher')}")
        page.click("#startPub")
        assert "permission was denied" in banner(page)
        assert stats(page)["pub"]["frames"] == 0
    finally:
        context.close()


def test_untrusted_certificate_falls_back_to_websocket(browser: Any, ingress: IngressProcess) -> None:
    token = ingress.token("publisher")
    page = browser.new_page()
    page.goto(f"{ingress.http_url}/?token={quote(token)}&certHash={'00' * 32}")
    page.click("#startPub")
    page.wait_for_function("() => window.wtpulsar.pub.acked >= 5", timeout=30_000)  # broker-acked over /ws
    state = stats(page)
    assert state["transport"] == "websocket"
    assert any("certificate" in note and "WebSocket" in note for note in state["notes"]), state["notes"]
    assert "WebSocket (fallback)" in page.inner_text("#transportState")
    page.close()


def test_browser_without_webtransport_uses_websocket_and_says_so(browser: Any, ingress: IngressProcess) -> None:
    page = browser.new_page()
    page.add_init_script("delete window.WebTransport")  # as in a browser that lacks it
    page.goto(f"{ingress.http_url}/?token={quote(ingress.token('publisher'))}")
    page.click("#startPub")
    page.wait_for_function("() => window.wtpulsar.pub.acked >= 5", timeout=30_000)
    state = stats(page)
    assert state["transport"] == "websocket"
    assert any("no WebTransport" in note for note in state["notes"]), state["notes"]
    page.close()


def test_screen_capture_publishes_as_screen_kind(browser: Any, ingress: IngressProcess) -> None:
    page = browser.new_page()
    page.goto(f"{ingress.http_url}/?token={quote(ingress.token('publisher'))}")
    page.select_option("#source", "screen")
    page.click("#startPub")
    page.wait_for_function("() => window.wtpulsar.pub.acked >= 5", timeout=30_000)
    state = stats(page)
    assert state["transport"] == "webtransport"
    assert state["pub"]["audio"] == 0  # screen capture carries no microphone
    import_page_modules(page)
    assert page.evaluate("() => Object.keys(mods.publisher.tracks).some(k => k.startsWith('screen-'))")
    page.close()


def test_watching_an_empty_room_says_nobody_is_publishing(browser: Any, ingress: IngressProcess) -> None:
    page = browser.new_page()
    page.goto(f"{ingress.http_url}/?token={quote(ingress.token('viewer', room='empty'))}&rendition=720p")
    page.wait_for_function("() => window.wtpulsar.notes.length > 0", timeout=20_000)
    note = stats(page)["notes"][-1]
    assert 'No one is publishing video in room "empty" at 720p' in note and "as soon as someone does" in note
    assert page.inner_text("#viewState") == "viewer: no one is publishing in room empty"
    assert stats(page)["view"]["frames"] == 0
    page.close()


def test_publisher_reconnects_after_the_ingress_restarts_and_resends(browser: Any, broker: Any, tmp_path: Path) -> None:
    import pulsar

    port, secret = free_port(), new_secret()
    first = start_ingress_process(broker.service_url, tmp_path / "first", http_port=port, secret=secret)
    page = browser.new_page()
    try:
        page.goto(f"{first.http_url}/?token={quote(first.token('publisher'))}")
        import_page_modules(page)
        page.click("#startPub")
        page.wait_for_function("() => window.wtpulsar.pub.acked >= 5", timeout=30_000)
        first.stop()  # server goes away mid-stream (SIGINT: sessions closed with 4000)
        # Capture goes on; the page says it is reconnecting and keeps the frames nobody acknowledged.
        page.wait_for_function("() => window.wtpulsar.pub.reconnecting && mods.publisher.outbox.kept.size > 10", timeout=15_000)
        assert "reconnecting" in page.inner_text("#pubState")
        assert any("reconnecting" in note for note in stats(page)["notes"])
        assert not any(e.startswith("Publishing stopped") for e in stats(page)["errors"])
        second = start_ingress_process(broker.service_url, tmp_path / "second", http_port=port, secret=secret)
        try:
            page.wait_for_function("() => window.wtpulsar.pub.reconnects >= 1 && !window.wtpulsar.pub.reconnecting",
                                   timeout=30_000)
            target = page.evaluate("() => Math.max(...Object.values(mods.publisher.tracks).map(t => t.seq))") + 30
            page.wait_for_function(f"() => window.wtpulsar.pub.acked >= {target}", timeout=30_000)
            assert "publisher: live" in page.inner_text("#pubState")
            state = stats(page)
            # what the first ingress never acknowledged went out again, what was captured meanwhile for the first time
            assert state["pub"]["resent"] + state["pub"]["heldSent"] > 0 and state["pub"]["overflowDropped"] == 0
            video = page.evaluate("() => Object.keys(mods.publisher.tracks).find(k => k.startsWith('cam-'))")
            acked = state["pub"]["acked"]
        finally:
            second.stop()
    finally:
        first.stop()
        page.close()
    # Every video frame up to the last acked one reached the input topic (at least once), no gap.
    client = pulsar.Client(broker.service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    try:
        reader = client.create_reader("persistent://public/wtpulsar/raw-video", pulsar.MessageId.earliest)
        seqs = set()
        while reader.has_message_available():
            msg = reader.read_next(5000)
            if msg.properties().get("stream") == video and "end_of_stream" not in msg.properties():
                seqs.add(int(msg.properties()["seq"]))
        reader.close()
    finally:
        client.close()
    assert set(range(acked + 1)) <= seqs, sorted(set(range(acked + 1)) - seqs)[:20]


def test_page_resend_buffer_keeps_chat_and_drops_media_only_at_a_keyframe(browser: Any, ingress: IngressProcess) -> None:
    page = browser.new_page()
    page.goto(f"{ingress.http_url}/?token={quote(ingress.token('viewer'))}")
    import_page_modules(page)
    got = page.evaluate("""() => {
      const rec = new Uint8Array(10), e = (sid, seq, kind, key) => ({ sid, seq, kind, key, rec, channel: sid });
      const b = new mods.resend.Outbox(6, 1e9);
      b.add(e("chat", 0, 4, false));
      for (let s = 0; s < 5; s++) b.add(e("cam", s, 1, s === 0 || s === 3));
      b.add(e("cam", 5, 1, false));  // over the bound: cam 0..2 go, the stream resumes at keyframe 3
      const afterOverflow = [...b.kept.keys()];
      const again = b.ack({ status: 1, stream: "cam", seq: 4 });  // REJECTED: kept across a later OK
      b.ack({ status: 0, stream: "cam", seq: 5 });
      b.ack({ status: 0, stream: "chat", seq: 7 });  // a chat OK names one message only
      const afterAcks = [...b.kept.keys()];
      b.entries(); b.ack({ status: 0, stream: "cam", seq: 4 });  // the resend, confirmed by its own seq
      const full = new mods.resend.Outbox(1, 1e9); full.add(e("chat", 0, 4, false));
      return { afterOverflow, againSeq: again && again.seq, afterAcks, last: [...b.kept.keys()],
               chatRefused: !full.add(e("chat", 1, 4, false)), dropped: window.wtpulsar.pub.overflowDropped };
    }""")
    page.close()
    assert got["afterOverflow"] == ["chat:0", "cam:3", "cam:4", "cam:5"]
    assert got["againSeq"] == 4 and got["afterAcks"] == ["chat:0", "cam:4"] and got["last"] == ["chat:0"]
    assert got["chatRefused"] is True and got["dropped"] == 3


def test_chat_sent_while_the_ingress_is_down_is_kept_and_sent_after_it_returns(browser: Any, broker: Any,
                                                                                 tmp_path: Path) -> None:
    import json

    import pulsar

    port, secret = free_port(), new_secret()
    first = start_ingress_process(broker.service_url, tmp_path / "first", http_port=port, secret=secret)
    page = browser.new_page()
    marker = f"kept-{time.time_ns()}"
    try:
        page.goto(f"{first.http_url}/?token={quote(first.token('publisher'))}")
        import_page_modules(page)
        page.fill("#chatText", "before")
        page.click("#chatSend")
        page.wait_for_function("() => mods.chat.chat.session && mods.chat.chat.outbox.kept.size === 0", timeout=15_000)  # acked
        first.stop()
        page.wait_for_function("() => !mods.chat.chat.session", timeout=15_000)
        page.fill("#chatText", marker)
        page.click("#chatSend")
        page.wait_for_function("() => window.wtpulsar.chatNotes.some(n => n.includes('will be sent when the connection'))",
                               timeout=15_000)
        assert page.evaluate("() => mods.chat.chat.outbox.kept.size") == 1  # kept, not dropped
        second = start_ingress_process(broker.service_url, tmp_path / "second", http_port=port, secret=secret)
        try:
            page.wait_for_function("() => mods.chat.chat.outbox.kept.size === 0", timeout=30_000)  # resent and acked
        finally:
            second.stop()
    finally:
        first.stop()
        page.close()
    client = pulsar.Client(broker.service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    try:
        reader = client.create_reader("persistent://public/wtpulsar/chat-in", pulsar.MessageId.earliest)
        bodies = []
        while reader.has_message_available():
            bodies.append(reader.read_next(5000).data())
        reader.close()
    finally:
        client.close()
    assert sum(marker.encode() in body for body in bodies) >= 1
    assert any(json.loads(body).get("text") == marker for body in bodies if marker.encode() in body)
