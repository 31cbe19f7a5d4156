"""What a new user sees in the browser in the first ten minutes, end to end in Chromium:
chat sent on the first connect is not announced as a resend and a real resend is shown once; a viewer
of a room without a publisher is told so, plays as soon as someone publishes and is told when the
stream ends; the stream's tail is flushed through every function when the publisher leaves; latency
stays right when the page's clock is off.

One `wtpulsar up` on free loopback ports serves every test; each test uses its own room, with tokens
signed by the pipeline's own secret.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser_support import (
    Pipeline,
    browser_tier,
    collect_console,
    import_page_modules,
    launch_browser,
    start_pipeline,
    stats,
)

pytestmark = browser_tier(240)


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
        import_page_modules(publisher)
        publisher.evaluate("() => { const s = mods.chat.chat.session; window.__realOnRecord = s.onRecord;"
                           " s.onRecord = (r) => { if (r.type !== mods.framing.REC.ACK) window.__realOnRecord(r); }; }")
        publisher.fill("#chatText", "second words")
        publisher.click("#chatSend")
        viewer.wait_for_function("() => window.wtpulsar.chat.some(m => m.text === 'second words')", timeout=20_000)
        publisher.evaluate("() => { const s = mods.chat.chat.session; s.onRecord = window.__realOnRecord;"
                           " if (s.wt) s.wt.close({ closeCode: 4000, reason: 'test drops the session' }); else s.ws.close(4000); }")
        publisher.wait_for_function(
            "() => window.wtpulsar.chatNotes.some(n => n.includes('sent 1 unconfirmed message(s) again'))", timeout=20_000)
        publisher.wait_for_function("() => mods.chat.chat.outbox.kept.size === 0", timeout=20_000)  # the resent copy was acked
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


def broker_urls(pipeline: Pipeline) -> tuple[str, str]:
    """(service URL, admin URL) from the lines `wtpulsar up` printed."""
    match = re.search(r"^\s+broker\s+(pulsar://\S+)\s+admin (http://\S+)/admin/v2", pipeline.log_path.read_text(), re.M)
    assert match, pipeline.log_tail()
    return match.group(1), match.group(2)


def admin_token(pipeline: Pipeline) -> str:
    """The superuser token `wtpulsar up` made (its broker runs with authentication on, SECURITY.md)."""
    return (pipeline.log_path.parent / "broker-auth" / "admin.token").read_text().strip()


def broker_client(pipeline: Pipeline) -> Any:
    import pulsar

    return pulsar.Client(broker_urls(pipeline)[0], logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn),
                         authentication=pulsar.AuthenticationToken(admin_token(pipeline)))


def admin_json(pipeline: Pipeline, path: str) -> Any:
    request = urllib.request.Request(broker_urls(pipeline)[1] + path,
                                     headers={"Authorization": f"Bearer {admin_token(pipeline)}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def publish_for(publisher: Any, frames: int) -> None:
    publisher.click("#startPub")
    publisher.wait_for_function(f"() => window.wtpulsar.pub.acked >= {frames}", timeout=30_000)


def test_viewer_of_a_room_whose_publisher_left_sees_no_frozen_stream_then_plays_then_is_told_it_ended(
        pipeline: Pipeline, browser: Any) -> None:
    console: list[str] = []
    publisher = open_page(browser, page_url(pipeline, "room4", "alice", "publisher"), console)
    first_viewer = open_page(browser, page_url(pipeline, "room4", "carol", "viewer"), console)
    try:
        publish_for(publisher, 30)
        first_viewer.wait_for_function("() => window.wtpulsar.view.frames >= 10", timeout=30_000)
        publisher.click("#stopPub")
        first_viewer.wait_for_function("() => window.wtpulsar.view.ends.some(e => e.kind === 'video')", timeout=15_000)

        # Minutes later (for the page, no difference): a new viewer comes to the room.
        viewer = open_page(browser, page_url(pipeline, "room4", "bob", "viewer"), console)
        viewer.wait_for_function("() => window.wtpulsar.view.status === 'nobody'", timeout=15_000)
        time.sleep(2)
        idle = stats(viewer)["view"]
        idle_pill = viewer.inner_text("#viewState")
        idle_overlay = viewer.inner_text("#viewOverlay")

        publish_for(publisher, 10)  # someone publishes: the waiting viewer plays at once
        viewer.wait_for_function("() => window.wtpulsar.view.frames >= 20", timeout=30_000)
        playing = stats(viewer)["view"]
        playing_pill = viewer.inner_text("#viewState")

        publisher.click("#stopPub")
        viewer.wait_for_function("() => window.wtpulsar.view.ends.some(e => e.kind === 'video')", timeout=15_000)
        ended = stats(viewer)
        ended_pill = viewer.inner_text("#viewState")
        viewer.close()
    finally:
        publisher.close()
        first_viewer.close()
    diag = f"{console[-10:]}\n{pipeline.log_tail(20)}"
    assert idle["frames"] == 0 and idle["latencies"] == [] and not idle["initSeen"], (idle, diag)
    assert idle_pill == "viewer: no one is publishing in room room4", idle_pill
    assert idle_overlay == "no one is publishing in room room4", idle_overlay
    assert playing_pill == "viewer: playing" and playing["status"] == "playing"
    assert max(playing["latencies"]) < 5_000, max(playing["latencies"])  # live, not a minutes-old frame
    assert ended["view"]["status"] == "ended" and ended_pill.startswith("viewer: the stream ended")
    assert [e["reason"] for e in ended["view"]["ends"] if e["kind"] == "video"] == ["left"], ended["view"]["ends"]
    assert any('The stream in room "room4" ended (the publisher left)' in n for n in ended["notes"]), ended["notes"]


def test_a_leaving_publishers_tail_is_flushed_through_every_function(pipeline: Pipeline, browser: Any) -> None:
    import pulsar

    console: list[str] = []
    publisher = open_page(browser, page_url(pipeline, "room5", "alice", "publisher"), console)
    viewer = open_page(browser, page_url(pipeline, "room5", "bob", "viewer"), console)
    try:
        publish_for(publisher, 45)
        viewer.wait_for_function("() => window.wtpulsar.view.audioSegments > 5", timeout=30_000)
        publisher.click("#stopPub")
        viewer.wait_for_function("() => ['video', 'audio'].every(k => window.wtpulsar.view.ends.some(e => e.kind === k))",
                                 timeout=15_000)
        ends = stats(viewer)["view"]["ends"]
    finally:
        publisher.close()
        viewer.close()
    # Nothing of the stream is left unacknowledged on any function's input (transcode's last GOP, chunk's last
    # audio packets, route's last fragments), without waiting for another stream's message.
    deadline = time.monotonic() + 10
    held: dict[str, tuple[int, int]] = {}
    while time.monotonic() < deadline:
        held = {}
        for topic in ("raw-video", "raw-audio", "encoded", "segments"):
            for name, sub in admin_json(pipeline, f"/admin/v2/persistent/public/wtpulsar/{topic}/stats")[
                    "subscriptions"].items():
                if sub["msgBacklog"] or sub["unackedMessages"]:
                    held[f"{topic}/{name}"] = (sub["msgBacklog"], sub["unackedMessages"])
        if not held:
            break
        time.sleep(0.3)
    assert held == {}, held
    # The room topics end with the stream's last frames, then the end.
    client = broker_client(pipeline)
    try:
        for topic in ("room-room5-video-360p", "room-room5-audio"):
            reader = client.create_reader(f"persistent://public/wtpulsar-rooms/{topic}", pulsar.MessageId.earliest)
            props = []
            while reader.has_message_available():
                props.append(reader.read_next(5000).properties())
            reader.close()
            media = [p for p in props if p.get("segment_type") == "media"]
            end = props[-1]
            assert end["segment_type"] == "end" and end["reason"] == "left", end
            assert media[-1]["last_seq"] == end["last_seq"], (topic, media[-1], end)  # the tail is there
    finally:
        client.close()
    assert {e["kind"] for e in ends} == {"video", "audio"} and {e["reason"] for e in ends} == {"left"}, ends


# Chromium's clocks moved by `skew` ms (window.__skewMs: a wrong wall clock, both Date.now and the
# performance clock). window.__suspendMs moves the performance clock alone, as a suspend does: the
# monotonic clock under performance.now() stops while the machine sleeps, the wall clock does not.
SKEWED_CLOCK = """(() => {
  window.__skewMs = %d; window.__suspendMs = 0;
  const origin = Object.getOwnPropertyDescriptor(Performance.prototype, "timeOrigin").get;
  Object.defineProperty(Performance.prototype, "timeOrigin", { configurable: true,
    get() { return origin.call(this) + window.__skewMs - window.__suspendMs; } });
  const dateNow = Date.now;
  Date.now = () => dateNow() + window.__skewMs;
})();"""


def open_skewed(browser: Any, url: str, skew_ms: int, console: list[str]) -> Any:
    page = browser.new_page()
    collect_console(page, console)
    page.add_init_script(SKEWED_CLOCK % skew_ms)
    page.goto(url)
    return page


def raw_video_lags(pipeline: Pipeline, room: str, timeout: float = 20.0) -> list[tuple[float, float]]:
    """(capture_ts, t_ingress - capture_ts) of every frame of `room`, as the ingress stamped them.

    Read from the room's 360p output topic, which carries each frame's capture_ts and t_ingress
    (ENVELOPE.md) and, unlike raw-video, is consumed by no function, so nothing of it is deleted
    while the test reads it. Retried until the stamps are there or `timeout`."""
    import pulsar

    deadline = time.monotonic() + timeout
    client = broker_client(pipeline)
    out: list[tuple[float, float]] = []
    try:
        while not out and time.monotonic() < deadline:
            reader = client.create_reader(f"persistent://public/wtpulsar-rooms/room-{room}-video-360p",
                                          pulsar.MessageId.earliest)
            while reader.has_message_available():
                props = reader.read_next(5000).properties()
                if props.get("segment_type") == "media" and "capture_ts" in props and "t_ingress" in props:
                    out.append((float(props["capture_ts"]), float(props["t_ingress"]) - float(props["capture_ts"])))
            reader.close()
            if not out:
                time.sleep(0.5)
        return out
    finally:
        client.close()


def test_latency_stays_right_when_the_page_clocks_are_off_and_step(pipeline: Pipeline, browser: Any) -> None:
    console: list[str] = []
    publisher = open_skewed(browser, page_url(pipeline, "room7", "alice", "publisher"), 8_000, console)
    viewer = open_skewed(browser, page_url(pipeline, "room7", "bob", "viewer"), -5_000, console)
    try:
        publish_for(publisher, 30)
        viewer.wait_for_function("() => window.wtpulsar.view.frames >= 40", timeout=30_000)
        before = stats(viewer)
        pub_before = stats(publisher)
        # The publisher's machine slept 11 s (its page clock now reads 3 s behind the server); the viewer's
        # wall clock was stepped to 4 s ahead (an NTP correction).
        publisher.evaluate("() => { window.__suspendMs = 11000; }")
        viewer.evaluate("() => { window.__skewMs = 4000; }")
        stepped_at = time.time() * 1000
        time.sleep(4)  # CLOCK exchanges (at once after the suspend, every second anyway) re-estimate both
        count = stats(viewer)["view"]["frames"]
        viewer.wait_for_function(f"() => window.wtpulsar.view.frames >= {count + 60}", timeout=30_000)
        after = stats(viewer)
        pub_after = stats(publisher)
        publisher.click("#stopPub")
    finally:
        publisher.close()
        viewer.close()
    diag = f"{console[-10:]}"
    assert abs(pub_before["clock"]["offset"] + 8_000) < 500, pub_before["clock"]  # it measured its own skew
    assert abs(before["clock"]["offset"] - 5_000) < 500, before["clock"]
    for state in (before, after):
        recent = state["view"]["latencies"][-30:]
        wrong = [round(lat) for lat in recent if not 0 < lat < 1_500]
        assert not wrong, (wrong, state is after, state["clock"], diag)  # was ~ -13 s, and 7 s after the steps
        assert all(v is None or v >= 0 for v in state["view"]["hops"].values()), state["view"]["hops"]
    assert pub_after["clock"]["steps"] >= 1 and abs(pub_after["clock"]["offset"] - 3_000) < 500, pub_after["clock"]
    assert after["clock"]["steps"] >= 1 and abs(after["clock"]["offset"] + 4_000) < 500, after["clock"]
    # What the ingress stored (what `wtpulsar audit` and `consume` read): capture -> ingress is never negative
    # and stays small, before the step and once the page re-estimated after it.
    lags = raw_video_lags(pipeline, "room7")
    assert lags, "no frame of room7 reached its output topic"
    assert all(lag >= 0 for _, lag in lags), min(lag for _, lag in lags)
    # Frames captured between the suspend and the first CLOCK reply after it waited for the new offset.
    off = [(round(at + lag - stepped_at), round(lag)) for at, lag in lags if lag >= 1_000]
    assert len(lags) > 100 and not off, off
