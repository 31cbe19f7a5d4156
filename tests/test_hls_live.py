"""Live HLS of a synthetic publisher through the whole pipeline (`wtpulsar up`, `wtpulsar publish`), read by
ffmpeg's HLS demuxer: ffprobe sees every rendition, ffmpeg decodes each of them, a publisher restart is a
discontinuity that playback goes through, a DVR start in the past plays the moment asked for (read from the
picture's burned-in capture time), and `wtpulsar record` makes an MP4 of a past interval."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from clients import capture_stamp
from ingress.hls_playlist import iso_time
from tests.browser_support import Pipeline, start_pipeline
from tests.hls_support import check_rules

ROOM = "hlslive"
FOUND = shutil.which("ffmpeg"), shutil.which("ffprobe")
FFMPEG, FFPROBE = FOUND[0] or "ffmpeg", FOUND[1] or "ffprobe"
pytestmark = pytest.mark.skipif(None in FOUND,
                                reason="ffmpeg/ffprobe missing: .ci/run installs Debian's ffmpeg")
FIRST_SECONDS, SECOND_SECONDS = 6, 120


@dataclass
class Live:
    pipeline: Pipeline
    base: str  # http://host:port/hls/<room>
    first_started_ms: float
    second_started_ms: float
    second: subprocess.Popen[bytes]
    tmp: Path


def fetch(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def publish(pipeline: Pipeline, seconds: int, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    wt = re.search(r"^\s+ingress\s+(https://\S+/wt)", pipeline.log_path.read_text(), re.M)
    assert wt, pipeline.log_tail()
    argv = [sys.executable, "-m", "wtpulsar.cli", "publish", ROOM, "--test-pattern", "--server", wt.group(1),
            "--token", pipeline.tokens["publisher"], "--seconds", str(seconds), "--size", "1280x720", "--fps", "15", *extra]
    return subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("hls-live")
    pipeline = start_pipeline(tmp / "state", room=ROOM)
    second = None
    try:
        started = time.time() * 1000
        first = publish(pipeline, FIRST_SECONDS, tmp / "publish-1.log", "--chat-every", "1")
        assert first.wait(60) == 0, (tmp / "publish-1.log").read_text()
        second_started = time.time() * 1000
        second = publish(pipeline, SECOND_SECONDS, tmp / "publish-2.log")  # a publisher restart: a new stream
        base = f"{pipeline.http_url}/hls/{ROOM}"
        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline:
            texts = [fetch(f"{base}/{track}/index.m3u8")[1].decode(errors="replace") for track in ("720p", "360p", "audio")]
            if all("#EXT-X-DISCONTINUITY\n" in t and t.split("#EXT-X-DISCONTINUITY\n")[1].count("#EXTINF") >= 3
                   for t in texts):
                break
            text = "\n".join(texts)
            time.sleep(0.5)
        else:
            raise AssertionError(f"no discontinuity and 3 segments after it in time:\n{text}\n{pipeline.log_tail()}")
        yield Live(pipeline, base, started, second_started, second, tmp)
    finally:
        if second is not None and second.poll() is None:
            second.terminate()
            second.wait(20)
        pipeline.stop()


def stamps_of(raw: bytes, width: int, height: int) -> list[int]:
    frame = width * height
    return [capture_stamp.read(np.frombuffer(raw[i:i + frame], np.uint8).reshape(height, width))
            for i in range(0, len(raw) - frame + 1, frame)]


def decode(url: str, *, seconds: float | None = None, frames: int | None = None, size: tuple[int, int],
           extra: tuple[str, ...] = ()) -> list[int]:
    """The burned-in capture times of the pictures ffmpeg's HLS demuxer decodes from ``url``."""
    limit = ["-t", str(seconds)] if seconds is not None else ["-frames:v", str(frames)]
    argv = [FFMPEG, "-hide_banner", "-loglevel", "error", "-live_start_index", "0", *extra, "-i", url, "-map", "0:v:0",
            *limit, "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "gray", "-"]
    done = subprocess.run(argv, capture_output=True, timeout=90)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    return stamps_of(done.stdout, *size)


def test_ffprobe_sees_every_rendition_and_the_playlists_keep_the_rules(live: Live) -> None:
    done = subprocess.run([FFPROBE, "-hide_banner", "-loglevel", "error", "-show_streams", "-of", "json",
                           f"{live.base}/index.m3u8"], capture_output=True, timeout=90)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    streams = json.loads(done.stdout)["streams"]
    video = sorted((s["width"], s["height"], s["codec_name"]) for s in streams if s["codec_type"] == "video")
    audio = [s["codec_name"] for s in streams if s["codec_type"] == "audio"]
    assert video == [(640, 360, "h264"), (1280, 720, "h264")], streams
    assert audio and set(audio) == {"opus"}, streams
    status, body = fetch(f"{live.base}/index.m3u8")
    text = body.decode()
    assert status == 200 and 'RESOLUTION=1280x720' in text and 'RESOLUTION=640x360' in text
    assert re.search(r'CODECS="avc1\.[0-9a-f]{6},opus"', text) and 'TYPE=AUDIO,GROUP-ID="audio"' in text
    for track in ("720p", "360p", "audio"):
        status, body = fetch(f"{live.base}/{track}/index.m3u8")
        playlist = body.decode()
        assert status == 200 and check_rules(playlist) == [], playlist
        assert "#EXT-X-DISCONTINUITY\n" in playlist and playlist.count("#EXT-X-MAP") == 2, (track, playlist)


@pytest.mark.parametrize("track,size", [("720p", (1280, 720)), ("360p", (640, 360))])
def test_ffmpeg_decodes_each_rendition_through_the_publisher_restart(live: Live, track: str, size: tuple[int, int]) -> None:
    stamps = decode(f"{live.base}/{track}/index.m3u8", seconds=FIRST_SECONDS + 4, size=size)
    assert len(stamps) >= 15 * (FIRST_SECONDS + 2), len(stamps)
    assert stamps == sorted(stamps), "pictures out of capture order"
    # one decode goes from the first publisher's pictures through the restart into the second's
    before = [s for s in stamps if s < live.second_started_ms]
    after = [s for s in stamps if s > live.second_started_ms]
    assert len(before) >= 15 * (FIRST_SECONDS - 1) and len(after) >= 15, (len(before), len(after))
    assert before[0] >= live.first_started_ms
    gaps = np.diff(stamps)
    assert np.median(gaps) == pytest.approx(1000 / 15, abs=3)  # every picture, 15 a second


def test_ffmpeg_decodes_the_audio_rendition(live: Live) -> None:
    argv = [FFMPEG, "-hide_banner", "-loglevel", "error", "-live_start_index", "0", "-i", f"{live.base}/audio/index.m3u8",
            "-t", "4", "-f", "s16le", "-ac", "1", "-ar", "48000", "-"]
    done = subprocess.run(argv, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    pcm = np.frombuffer(done.stdout, np.int16)
    assert len(pcm) >= 48_000 * 3.5 and np.abs(pcm).max() > 4000  # the tone, not silence


def test_a_dvr_start_in_the_past_plays_that_moment(live: Live) -> None:
    _, body = fetch(f"{live.base}/360p/index.m3u8")
    first_pdt = re.search(r"#EXT-X-PROGRAM-DATE-TIME:(\S+)", body.decode())
    assert first_pdt
    moment = datetime.fromisoformat(first_pdt.group(1)).timestamp() * 1000 + 3_400
    url = f"{live.base}/360p/index.m3u8?start={iso_time(moment)}"
    stamps = decode(url, frames=30, size=(640, 360))
    # the listing starts at the segment holding the moment: its keyframe is at most one GOP (1 s) before it
    assert moment - 1_100 <= stamps[0] <= moment, (stamps[0], moment)
    assert any(abs(s - moment) <= 1000 / 15 for s in stamps), (stamps, moment)
    status, body = fetch(f"{live.base}/index.m3u8?start={iso_time(moment)}")
    assert status == 200 and "360p/index.m3u8?start=" in body.decode()


def test_record_makes_an_mp4_of_a_past_interval_with_its_chat(live: Live) -> None:
    _, body = fetch(f"{live.base}/360p/index.m3u8")
    first_pdt = re.search(r"#EXT-X-PROGRAM-DATE-TIME:(\S+)", body.decode())
    assert first_pdt
    t1 = datetime.fromisoformat(first_pdt.group(1)).timestamp() * 1000 + 1_700
    t2 = t1 + 3_000
    out = live.tmp / "past.mp4"
    text = live.pipeline.log_path.read_text()
    broker = re.search(r"^\s+broker\s+(pulsar://\S+)", text, re.M)
    token = live.pipeline.log_path.parent / "broker-auth" / "cli.token"
    assert broker and token.is_file(), live.pipeline.log_tail()
    argv = [sys.executable, "-m", "wtpulsar.cli", "record", ROOM, "--from", iso_time(t1), "--to", iso_time(t2),
            "--rendition", "360p", "--out", str(out), "--broker-service-url", broker.group(1),
            "--broker-token", f"file://{token}"]
    done = subprocess.run(argv, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    probe = subprocess.run([FFPROBE, "-hide_banner", "-loglevel", "error", "-show_streams", "-show_format", "-of",
                            "json", str(out)], capture_output=True, timeout=30)
    info = json.loads(probe.stdout)
    assert float(info["format"]["duration"]) == pytest.approx(3.0, abs=0.15), info["format"]
    assert sorted(s["codec_type"] for s in info["streams"]) == ["audio", "video"]
    assert all(float(s.get("start_time", 0)) < 0.05 for s in info["streams"]), info["streams"]
    first = subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-i", str(out), "-frames:v", "1", "-f",
                            "rawvideo", "-pix_fmt", "gray", "-"], capture_output=True, timeout=30)
    stamp = stamps_of(first.stdout, 640, 360)[0]
    assert t1 <= stamp < t1 + 1000 / 15 + 1, (stamp, t1)  # the first picture is the one captured at --from
    chat = [json.loads(line) for line in (live.tmp / "past.chat.jsonl").read_text().splitlines()]
    assert len(chat) in (2, 3, 4), chat  # one message a second
    assert all(0 <= m["t"] <= 3.0 and m["text"].startswith("test pattern chat") for m in chat), chat
    assert [m["t"] for m in chat] == sorted(m["t"] for m in chat)


def test_record_refuses_an_interval_with_nothing_in_it(live: Live, tmp_path: Path) -> None:
    text = live.pipeline.log_path.read_text()
    broker = re.search(r"^\s+broker\s+(pulsar://\S+)", text, re.M)
    token = live.pipeline.log_path.parent / "broker-auth" / "cli.token"
    assert broker
    out = tmp_path / "old.mp4"
    argv = [sys.executable, "-m", "wtpulsar.cli", "record", ROOM, "--from", "2001-01-01T00:00:00Z", "--to",
            "2001-01-01T00:01:00Z", "--out", str(out), "--broker-service-url", broker.group(1),
            "--broker-token", f"file://{token}"]
    done = subprocess.run(argv, capture_output=True, timeout=120)
    err = done.stderr.decode()
    assert done.returncode == 1 and "has no 360p video between 2001-01-01T00:00:00Z and" in err, err
    assert "the topic keeps 20" in err and "Nothing was written" in err and not out.exists()


@pytest.mark.browser
def test_hlsjs_plays_it_in_chromium_at_the_live_edge(live: Live) -> None:
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    from tests.browser_support import launch_browser
    from tests.hlsjs_support import PLAYER_JS, hlsjs_source

    source = hlsjs_source()
    with sync_playwright() as pw:
        context = launch_browser(pw, live.tmp / "chromium-profile", grant_media=False)
        try:
            page = context.new_page()
            console: list[str] = []
            page.on("console", lambda msg: console.append(msg.text))
            page.goto(f"{live.pipeline.http_url}/health")  # the ingress's origin; the playlists allow any
            page.set_content("<!doctype html><title>hls.js</title><body></body>")
            page.add_script_tag(content=source)
            page.add_script_tag(content=PLAYER_JS)
            page.evaluate(f"() => window.startHls('{live.base}/index.m3u8')")
            page.wait_for_function("() => window.hlsStats.latencies.length >= 40 || window.hlsStats.errors.length",
                                   timeout=60_000)
            stats = page.evaluate("() => JSON.parse(JSON.stringify(window.hlsStats))")
        finally:
            context.close()
    assert not stats["errors"], (stats["errors"], console[-20:])
    assert stats["levels"] == 2 and stats["audioTracks"] >= 1, stats
    # at the live edge: hls.js's own distance from the playlist's live end stays near its LL-HLS target
    # (PART-HOLD-BACK, 1 s), whatever backlog the pipeline has on a loaded machine
    edge = sorted(stats["hlsLatency"][20:])
    assert edge and edge[len(edge) // 2] < 2.5, edge
    latencies = sorted(stats["latencies"][10:])  # glass to glass; bench/hls.py measures it on a quiet machine
    assert 0 < latencies[len(latencies) // 2] < 6000, latencies


@pytest.mark.browser
def test_the_page_goes_back_to_a_moment_on_its_timeline(live: Live) -> None:
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    from tests.browser_support import launch_browser
    from tests.hlsjs_support import STAMP_JS

    with sync_playwright() as pw:
        context = launch_browser(pw, live.tmp / "chromium-dvr", grant_media=False)
        try:
            page = context.new_page()
            page.goto(live.pipeline.viewer_url)
            page.add_script_tag(content=STAMP_JS)
            page.click("#dvrLoad")
            page.wait_for_function("() => window.wtpulsar.dvr.oldest !== null", timeout=20_000)
            oldest = page.evaluate("() => window.wtpulsar.dvr.oldest")
            moment = (oldest // 1000 + 3) * 1000  # three seconds into what the room retains (the first publisher)
            page.evaluate(f"() => {{ const s = document.getElementById('dvrTime'); s.value = {moment // 1000}; "
                          "s.dispatchEvent(new Event('input')); }")
            assert "s ago" in page.inner_text("#dvrLabel")
            page.click("#dvrPlay")
            page.wait_for_function("() => window.wtpulsar.dvr.segments >= 2 || window.wtpulsar.dvr.errors.length",
                                   timeout=30_000)
            page.wait_for_function("() => window.readStamp(document.getElementById('dvrPlayer')) !== null",
                                   timeout=20_000)
            first = page.evaluate("() => window.readStamp(document.getElementById('dvrPlayer'))")
            time.sleep(2)
            later = page.evaluate("() => window.readStamp(document.getElementById('dvrPlayer'))")
            state = page.evaluate("() => JSON.parse(JSON.stringify(window.wtpulsar.dvr))")
            overlay = page.inner_text("#dvrOverlay")
        finally:
            context.close()
    assert not state["errors"], state
    # the picture shown is the one captured at the chosen moment (the player seeks to EXT-X-START in the segment)
    assert abs(first - moment) < 500, (first, moment)
    assert later > first + 1000, (first, later)  # and it plays on
    assert "s back" in overlay
