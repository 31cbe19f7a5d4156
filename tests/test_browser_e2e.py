"""End to end in a real browser: Debian's Chromium publishes its fake camera and microphone
through ingress -> transcode -> chunk -> route -> ingress egress, and viewer pages play it; a chat
message with a blocked word comes back masked, and one with a dropped word is reported to its sender
from the moderation verdict (route -> room-<room>-moderation -> ingress -> that session only).

The whole pipeline is `wtpulsar up` on free loopback ports. Screenshots of each page are saved in the
test's tmp_path (publisher.png, viewer-webcodecs.png, viewer-mse.png).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from tests.browser_support import (
    REPO,
    browser_tier,
    collect_console,
    launch_browser,
    start_pipeline,
    stats,
)

pytestmark = browser_tier(150)

PUBLISH_SECONDS = 10.0


def blocked_word(action: str) -> str:
    """A whole-word blocklist entry whose rule gets `action` in deploy/functions/moderate.yaml's userConfig."""
    return blocklist_rule(action)[1]


def blocklist_rule(action: str) -> tuple[str, str]:
    """(rule name, whole-word entry) of a blocklist rule with `action` in moderate.yaml's userConfig."""
    config = yaml.safe_load((REPO / "deploy" / "functions" / "moderate.yaml").read_text())["userConfig"]
    for rule, rule_action in config["actions"].items():
        if rule_action == action:
            for entry in config["blocklist"].get(rule, []):
                if "*" not in entry and entry.isalpha():
                    return rule, entry
    raise AssertionError(f"moderate.yaml has no whole-word blocklist entry with action {action} to test with")


def test_publish_watch_and_chat_in_chromium(tmp_path: Path) -> None:
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    pipeline = start_pipeline(tmp_path / "state")
    console: list[str] = []
    try:
        with sync_playwright() as pw:
            context = launch_browser(pw, tmp_path / "chromium-profile")
            try:
                publisher = context.new_page()
                collect_console(publisher, console)
                publisher.goto(pipeline.publisher_url)
                publisher.click("#startPub")
                publisher.wait_for_function("() => window.wtpulsar.pub.acked >= 0", timeout=20_000)
                started = time.monotonic()

                viewer = context.new_page()  # mode=view in the URL: starts watching on load (WebCodecs default)
                collect_console(viewer, console)
                viewer.goto(pipeline.viewer_url)
                mse_viewer = context.new_page()
                collect_console(mse_viewer, console)
                # MSE playback over the WebSocket fallback: covers the other player and the other transport.
                mse_viewer.goto(pipeline.viewer_url + "&playback=mse&transport=websocket")

                word, (drop_rule, dropped) = blocked_word("mask"), blocklist_rule("drop")
                publisher.fill("#chatText", f"what a {word} day")
                publisher.click("#chatSend")
                publisher.fill("#chatText", f"please {dropped} now")
                publisher.click("#chatSend")

                viewer.wait_for_function("() => window.wtpulsar.view.frames >= 30", timeout=30_000)
                viewer.wait_for_function("() => window.wtpulsar.chat.length > 0", timeout=20_000)
                time.sleep(max(0.0, PUBLISH_SECONDS - (time.monotonic() - started)))
                # The dropped message never reaches the room; its sender is told from the verdict.
                publisher.wait_for_function("() => window.wtpulsar.chatNotes.some(n => n.includes('was removed'))",
                                            timeout=20_000)

                pub_stats, view_stats, mse_stats = stats(publisher), stats(viewer), stats(mse_viewer)
                publisher.screenshot(path=str(tmp_path / "publisher.png"), full_page=True)
                viewer.screenshot(path=str(tmp_path / "viewer-webcodecs.png"), full_page=True)
                mse_viewer.screenshot(path=str(tmp_path / "viewer-mse.png"), full_page=True)
                mse_time = mse_viewer.evaluate("() => document.getElementById('player').currentTime")
            finally:
                context.close()
    except Exception:
        print("\n".join(console[-40:]))
        print(pipeline.log_tail())
        raise
    finally:
        pipeline.stop()

    diag = f"console: {console[-20:]}\npipeline: {pipeline.log_tail(30)}"
    # Publisher: WebTransport (not the fallback), frames encoded, sent and broker-acknowledged.
    assert pub_stats["transport"] == "webtransport", diag
    assert pub_stats["pub"]["frames"] >= 100, pub_stats["pub"]
    assert pub_stats["pub"]["acked"] >= 50, pub_stats["pub"]
    assert pub_stats["pub"]["keyframes"] >= 3, pub_stats["pub"]
    assert not pub_stats["errors"], pub_stats["errors"]
    # WebCodecs viewer: frames decoded and drawn, each with a capture -> render latency.
    view = view_stats["view"]
    assert view["mode"] == "webcodecs"
    assert view["initSeen"], diag
    assert view["frames"] >= 30, (view["frames"], diag)
    assert len(view["latencies"]) >= 30
    assert all(0 < lat < 30_000 for lat in view["latencies"]), view["latencies"][:10]
    assert set(view["hops"]) >= {"ingress → transcode", "transcode → chunk", "chunk → route"}, view["hops"]
    # Late join: the viewer came in mid-stream and skipped at most one GOP (1 s = 30 frames) before a picture.
    assert view["dropReasons"].get("waiting for keyframe", 0) <= 30, view["dropReasons"]
    # Audio: the microphone's Opus came through the pipeline and was decoded and scheduled for playback.
    assert pub_stats["pub"]["audio"] > 100, pub_stats["pub"]
    assert view["audioSegments"] > 10 and view["audioPlayed"] > 10, (view["audioSegments"], view["audioPlayed"])
    # MSE viewer (over /ws): the <video> element's clock advances and frames are presented.
    assert mse_stats["view"]["mode"] == "mse"
    assert mse_stats["transport"] == "websocket"
    assert mse_time > 1.0, (mse_time, mse_stats["view"])
    assert mse_stats["view"]["frames"] > 0
    # Chat: the blocked word arrives masked, on both the viewer's and the sender's page.
    for page_stats in (view_stats, pub_stats):
        texts = [m for m in page_stats["chat"] if "what a" in m["text"]]
        assert texts, page_stats["chat"]
        assert texts[0]["masked"] is True
        assert word not in texts[0]["text"].lower() and "*" in texts[0]["text"], texts[0]
    assert not any(dropped in m["text"] for m in view_stats["chat"] + pub_stats["chat"]), view_stats["chat"]
    # The notice is the verdict's: it names the rule and the word, and came well before the page's 8-s
    # fallback for a lost verdict (whose wording never appears).
    removed = [n for n in pub_stats["chatNotes"] if "was removed" in n]
    assert len(removed) == 1 and dropped in removed[0] and f"{drop_rule}: blocked word" in removed[0], removed
    assert not any("No moderation decision" in n for n in pub_stats["chatNotes"]), pub_stats["chatNotes"]
    verdicts = {v["action"]: v for v in pub_stats["verdicts"]}
    assert verdicts["drop"]["rules"] == [drop_rule], pub_stats["verdicts"]
    assert verdicts["mask"]["msg_id"], pub_stats["verdicts"]  # the masked message's verdict came too
    # The viewer page (another user, who sent no chat) got no verdict.
    assert view_stats["verdicts"] == [] and not any("was removed" in n for n in view_stats["chatNotes"])
    for name in ("publisher.png", "viewer-webcodecs.png", "viewer-mse.png"):
        assert (tmp_path / name).stat().st_size > 10_000
