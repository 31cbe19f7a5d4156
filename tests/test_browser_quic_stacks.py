"""Chromium publishes and views over WebTransport with the ingress on each QUIC stack (docs/quic-stack.md): the
whole pipeline (`wtpulsar up`, $WTPULSAR_QUIC_STACK=qh3 (the default) or aioquic), the publisher page sending its fake camera and microphone,
a viewer page playing the routed stream, both on WebTransport, not the WebSocket fallback."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

from ingress import quic_stack
from tests.browser_support import (
    browser_tier,
    collect_console,
    launch_browser,
    start_pipeline,
    stats,
)
from tests.chromium_first_flight import load

pytestmark = browser_tier(150)

PUBLISH_SECONDS = 6.0


def answers_with_a_retry(port: int) -> bool:
    """Whether the ingress at ``port`` answers a fresh Initial (Chromium's recorded first datagram) with a Retry,
    as it does on qh3 and not on aioquic (QuicStack.retry): which stack the pipeline runs."""
    first = next(d.data for d in load() if d.direction == "c2s")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.settimeout(2.0)
        probe.sendto(first, ("127.0.0.1", port))
        try:
            reply = probe.recv(65536)
        except TimeoutError:
            return False
    return bool(reply[0] & 0x80) and (reply[0] >> 4) & 0x03 == 3  # long header, type 3: Retry (RFC 9000 §17.2.5)


@pytest.mark.parametrize("stack", quic_stack.STACKS)
def test_chromium_publishes_and_views_over_webtransport_on_each_stack(stack: str, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    monkeypatch.setenv(quic_stack.ENV, stack)  # `wtpulsar up` and its ingress inherit it
    pipeline = start_pipeline(tmp_path / "state")
    console: list[str] = []
    try:
        wt_port = int(re.search(r"ingress: WebTransport https://[\d.]+:(\d+)/wt", pipeline.log_path.read_text()).group(1))  # type: ignore[union-attr]  # printed before the page URLs start_pipeline waited for
        retried = answers_with_a_retry(wt_port)
        with sync_playwright() as pw:
            context = launch_browser(pw, tmp_path / "chromium-profile")
            try:
                publisher = context.new_page()
                collect_console(publisher, console)
                publisher.goto(pipeline.publisher_url)
                publisher.click("#startPub")
                publisher.wait_for_function("() => window.wtpulsar.pub.acked >= 0", timeout=20_000)
                started = time.monotonic()
                viewer = context.new_page()  # mode=view: starts watching on load (WebCodecs)
                collect_console(viewer, console)
                viewer.goto(pipeline.viewer_url)
                viewer.wait_for_function("() => window.wtpulsar.view.frames >= 30", timeout=40_000)
                time.sleep(max(0.0, PUBLISH_SECONDS - (time.monotonic() - started)))
                pub_stats, view_stats = stats(publisher), stats(viewer)
            finally:
                context.close()
    except Exception:
        print("\n".join(console[-40:]))
        print(pipeline.log_tail())
        raise
    finally:
        pipeline.stop()

    diag = f"console: {console[-20:]}\npipeline: {pipeline.log_tail(30)}"
    assert retried == (stack == "qh3"), f"a fresh Initial answered with a Retry: {retried}, on {stack}?\n{diag}"
    assert pub_stats["transport"] == "webtransport", diag
    assert view_stats["transport"] == "webtransport", diag
    assert pub_stats["pub"]["frames"] >= 60 and pub_stats["pub"]["acked"] >= 30, pub_stats["pub"]
    assert pub_stats["pub"]["audio"] > 50, pub_stats["pub"]
    assert not pub_stats["errors"], pub_stats["errors"]
    view = view_stats["view"]
    assert view["mode"] == "webcodecs" and view["initSeen"], diag
    assert view["frames"] >= 30, (view["frames"], diag)
    assert all(0 < lat < 30_000 for lat in view["latencies"]), view["latencies"][:10]
