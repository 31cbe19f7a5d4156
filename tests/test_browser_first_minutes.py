"""What a new user sees in the browser in the first ten minutes (issue 15), end to end in Chromium:
chat sent on the first connect is not announced as a resend and a real resend is shown once; a viewer
of a room without a publisher is told so, plays as soon as someone publishes and is told when the
stream ends; the stream's tail is flushed through every function when the publisher leaves; latency
stays right when the page's clock is off.

One `wtpulsar up` on free loopback ports serves every test; each test uses its own room, with tokens
signed by the pipeline's own secret.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser_support import CHROMIUM, Pipeline, collect_console, launch_browser, start_pipeline, stats

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(240),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                                                     "(apt-get install chromium; CI installs it)"),
]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    pipe = start_pipeline(tmp_path_factory.mktemp("first-minutes") / "state")
    yield pipe
    pipe.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    with sync_playwright() as pw:
        context = launch_browser(pw, tmp_path_factory.mktemp("chromium-profile"))
        yield context
        context.close()


def page_url(pipeline: Pipeline, room: str, user: str, role: str, extra: str = "") -> str:
    from ingress import tokens

    secret = tokens.read_secret(pipeline.log_path.parent / "ingress" / "ingress-secret")
    token = tokens.issue(secret, room, user, role, time.time(), 3600)
    return f"{pipeline.http_url}/?room={room}&token={token}" + ("&mode=view" if role == "viewer" else "") + extra


def open_page(browser: Any, url: str, console: list[str]) -> Any:
    page = browser.new_page()
    collect_console(page, console)
    page.goto(url)
    return page


def chat_lines(page: Any) -> list[str]:
    return page.evaluate("() => [...document.querySelectorAll('#chatLog div')].map(d => d.textContent)")


def test_first_chat_message_is_not_a_resend_and_a_real_resend_shows_once(pipeline: Pipeline, browser: Any) -> None:
    console: list[str] = []
    publisher = open_page(browser, page_url(pipeline, "room3", "alice", "publisher"), console)
    viewer = open_page(browser, page_url(pipeline, "room3", "bob", "viewer"), console)
    try:
        publisher.wait_for_function("() => window.wtpulsar.transport !== null", timeout=20_000)
        publisher.fill("#chatText", "first words")
        publisher.click("#chatSend")
        viewer.wait_for_function("() => window.wtpulsar.chat.some(m => m.text === 'first words')", timeout=20_000)
        publisher.wait_for_function("() => window.wtpulsar.verdicts.length === 1", timeout=20_000)
        first = stats(publisher)
        assert first["pub"]["resent"] == 0, first["pub"]
        assert not any("reconnected" in n.lower() for n in first["chatNotes"]), first["chatNotes"]

        # A real resend: the Ack of the next message is lost, then the chat session drops. The page sends the
        # message again on the new session (and says so); the room shows it once.
        publisher.evaluate("() => { window.__realAck = onChatAck; onChatAck = () => {}; }")
        publisher.fill("#chatText", "second words")
        publisher.click("#chatSend")
        viewer.wait_for_function("() => window.wtpulsar.chat.some(m => m.text === 'second words')", timeout=20_000)
        publisher.evaluate("() => { onChatAck = window.__realAck; const s = chat.session;"
                           " if (s.wt) s.wt.close({ closeCode: 4000, reason: 'test drops the session' }); else s.ws.close(4000); }")
        publisher.wait_for_function(
            "() => window.wtpulsar.chatNotes.some(n => n.includes('sent 1 unconfirmed message(s) again'))", timeout=20_000)
        publisher.wait_for_function("() => chat.outbox.kept.size === 0", timeout=20_000)  # the resent copy was acked
        time.sleep(3)  # time for the second copy to travel moderate -> route -> egress
        pub_stats, view_stats = stats(publisher), stats(viewer)
        viewer_lines, publisher_lines = chat_lines(viewer), chat_lines(publisher)
    finally:
        publisher.close()
        viewer.close()
    assert pub_stats["pub"]["resent"] == 1, pub_stats["pub"]
    for page_stats, lines in ((view_stats, viewer_lines), (pub_stats, publisher_lines)):
        assert [m["text"] for m in page_stats["chat"]].count("second words") == 1, page_stats["chat"]
        assert sum(line.endswith("second words") for line in lines) == 1, lines
        assert sum(line.endswith("first words") for line in lines) == 1, lines


def admin_json(pipeline: Pipeline, path: str) -> Any:
    admin = pipeline.log_tail(400)
    base = admin.split("admin ", 1)[1].split("/admin/v2", 1)[0]
    with urllib.request.urlopen(base + path, timeout=5) as response:
        return json.loads(response.read())
