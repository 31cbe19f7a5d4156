"""/hls/ on the ingress against the broker: the room topics chunk and route would write are served as
multivariant and LL-HLS media playlists, inits, segments and parts with CDN cache headers; blocking reload
waits for the part asked for; a start in the past lists from there; a segment the window let go is read
back from the topic; every bad request gets a 4xx naming what was wrong."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pulsar

from ingress.hls_feed import HlsSettings
from ingress.hls_playlist import iso_time
from ingress.hls_window import HlsConfig
from ingress.names import room_topic_url
from tests.hls_support import FakeTrack, check_rules
from tests.ingress_support import FakePublisher, ingress

NS = room_topic_url("public", "wtpulsar", "")  # route writes room topics into the rooms namespace


def produce(service_url: str, topic: str, track: FakeTrack) -> None:
    client = pulsar.Client(service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    try:
        producer = client.create_producer(NS + topic, batching_enabled=False)
        for props, payload, _ in track.messages:
            producer.send(payload, properties=props)
        producer.close()
    finally:
        client.close()
    track.messages.clear()


def tracks(room: str, seconds: int, t0_ms: float) -> tuple[FakeTrack, FakeTrack]:
    video = FakeTrack(t0_ms=t0_ms)
    audio = FakeTrack(kind="audio", fps=50 / 3, timescale=48_000, keyint=1, t0_ms=t0_ms)
    for track in (video, audio):
        track.init(b"INIT-" + track.kind.encode())
        track.media(round(seconds * track.fps))
    return video, audio


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 120))


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, Any, Any]:  # body: str for text, else bytes
    async with session.get(url) as response:
        body = await response.read()
        ctype = response.headers.get("Content-Type", "")
        text: str | bytes = body.decode() if ("mpegurl" in ctype or "text/plain" in ctype) else body
        return response.status, text, response.headers


def settings(**config: Any) -> HlsSettings:
    return HlsSettings(config=replace(HlsConfig(), **config), renditions=("720p", "360p"))


def test_playlists_segments_parts_and_cache_headers(broker: Any, tmp_path: Path) -> None:
    room = "h" + uuid.uuid4().hex[:10]
    t0 = time.time() * 1000 - 60_000
    video, audio = tracks(room, 5, t0)
    produce(broker.service_url, f"room-{room}-video-360p", video)
    produce(broker.service_url, f"room-{room}-audio", audio)

    async def go() -> None:
        async with ingress(tmp_path, FakePublisher(), broker_service_url=broker.service_url, hls=settings()) as h, \
                aiohttp.ClientSession() as s:
            base = f"{h.http_url}/hls/{room}"
            status, text, headers = await get(s, f"{base}/index.m3u8")
            assert status == 200, text
            assert text == ('#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio",NAME="audio",'
                            'DEFAULT=YES,AUTOSELECT=YES,CHANNELS="1",URI="audio/index.m3u8"\n'
                            f'#EXT-X-STREAM-INF:BANDWIDTH={_bandwidth(text)},CODECS="avc1.42c01e,opus",'
                            'RESOLUTION=640x360,AUDIO="audio"\n360p/index.m3u8\n')
            assert headers["Content-Type"].startswith("application/vnd.apple.mpegurl")
            assert headers["Cache-Control"] == "public, max-age=2" and headers["Access-Control-Allow-Origin"] == "*"
            for track in ("360p", "audio"):
                status, text, headers = await get(s, f"{base}/{track}/index.m3u8")
                assert status == 200 and check_rules(text) == [], text
                assert headers["Cache-Control"] == "public, max-age=1"
                gen = text.split('#EXT-X-MAP:URI="', 1)[1].split("/", 1)[0]
                status, body, headers = await get(s, f"{base}/{track}/{gen}/init-0.mp4")
                assert status == 200 and body == b"INIT-" + (b"video" if track == "360p" else b"audio")
                assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
            status, text, _ = await get(s, f"{base}/360p/index.m3u8")
            gen = text.split('#EXT-X-MAP:URI="', 1)[1].split("/", 1)[0]
            assert f"{gen}/seg-3.m4s" in text and f'URI="{gen}/part-4.2.m4s"' in text
            status, body, _ = await get(s, f"{base}/360p/{gen}/seg-1.m4s")
            assert status == 200 and body == b"".join(b"F%d;" % i for i in range(30, 60))
            status, body, _ = await get(s, f"{base}/360p/{gen}/part-1.2.m4s")
            assert status == 200 and body == b"".join(b"F%d;" % i for i in range(50, 60))
            # what is not there is refused with the reason
            for url, code, words in [
                (f"{h.http_url}/hls/bad%20room/index.m3u8", 400, "room 'bad room' must match"),
                (f"{base}/720p/index.m3u8", 404, f"room {room} has no 720p track; it has 360p, audio"),
                (f"{base}/360p/{gen}/seg-99.m4s", 404, "has no complete segment 99 (it has 0..4)"),
                (f"{base}/360p/gOLD/seg-1.m4s", 404, "from an older numbering"),
                (f"{base}/360p/{gen}/nonsense.bin", 404, "not an HLS resource name"),
                (f"{base}/360p/index.m3u8?_HLS_part=1", 400, "_HLS_part needs _HLS_msn"),
                (f"{base}/360p/index.m3u8?_HLS_msn=-1", 400, "_HLS_msn='-1' must be a non-negative integer"),
                (f"{base}/360p/index.m3u8?_HLS_msn=9", 400, "_HLS_msn=9 is more than two segments past the last one (4)"),
                (f"{base}/360p/index.m3u8?_HLS_msn=4&_HLS_part=12", 400,
                 "_HLS_part=12 is more than 8 parts past the last one (2) of segment 4"),
                (f"{base}/index.m3u8?start=yesterday", 400, "start='yesterday' is not an ISO 8601 time"),
                (f"{base}/index.m3u8?start=2999-01-01T00:00:00Z", 400, "is in the future"),
                (f"{base}/360p/index.m3u8?start=2001-01-01T00:00:00Z", 404, "keeps nothing that old"),
                (f"{h.http_url}/hls/nobody{uuid.uuid4().hex[:6]}/index.m3u8", 404, "has no video on its output topics"),
            ]:
                status, text, headers = await get(s, url)
                assert status == code and words in str(text), (url, status, text)
                assert headers["Cache-Control"] == "no-store"

    run(go())


def _bandwidth(text: str) -> str:
    return text.split("BANDWIDTH=", 1)[1].split(",", 1)[0]


def test_blocking_reload_and_preload_hint_wait_for_the_next_part(broker: Any, tmp_path: Path) -> None:
    room = "h" + uuid.uuid4().hex[:10]
    video, _ = tracks(room, 2, time.time() * 1000 - 2000)
    topic = f"room-{room}-video-360p"
    produce(broker.service_url, topic, video)  # 2 s: segment 0 complete, segment 1 with all three parts

    async def go() -> None:
        async with ingress(tmp_path, FakePublisher(), broker_service_url=broker.service_url, hls=settings()) as h, \
                aiohttp.ClientSession() as s:
            base = f"{h.http_url}/hls/{room}/360p"
            status, text, _ = await get(s, f"{base}/index.m3u8")
            assert status == 200 and "part-1.2.m4s" in text and "seg-1.m4s" not in text
            gen = text.split('#EXT-X-MAP:URI="', 1)[1].split("/", 1)[0]
            assert f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{gen}/part-2.0.m4s"' in text

            async def later() -> None:
                await asyncio.sleep(1.0)
                video.media(10)  # the keyframe that starts segment 2 and its first part
                await asyncio.to_thread(produce, broker.service_url, topic, video)

            feeder = asyncio.create_task(later())
            started = time.monotonic()
            hinted = asyncio.create_task(get(s, f"{base}/{gen}/part-2.0.m4s"))
            status, text, headers = await get(s, f"{base}/index.m3u8?_HLS_msn=2&_HLS_part=0")
            waited = time.monotonic() - started
            await feeder
            assert status == 200 and 0.9 < waited < 5, waited
            assert "#EXTINF:1.00000,\n" + f"{gen}/seg-1.m4s" in text and f'URI="{gen}/part-2.0.m4s"' in text
            assert headers["Cache-Control"] == "public, max-age=12"
            status, body, _ = await hinted  # the preload hint's request was answered once the part existed
            assert status == 200 and body == b"".join(b"F%d;" % i for i in range(60, 70))
            # nothing more comes: a blocking request gives up after three target durations with 503
            started = time.monotonic()
            status, text, _ = await get(s, f"{base}/index.m3u8?_HLS_msn=3")
            assert status == 503 and "did not come within 6 s" in str(text) and time.monotonic() - started >= 5.5

    run(go())


def test_a_start_in_the_past_and_segments_read_back_from_the_topic(broker: Any, tmp_path: Path) -> None:
    room = "h" + uuid.uuid4().hex[:10]
    t0 = time.time() * 1000 - 120_000
    video, audio = tracks(room, 20, t0)
    produce(broker.service_url, f"room-{room}-video-360p", video)
    produce(broker.service_url, f"room-{room}-audio", audio)

    async def go() -> None:
        small = settings(memory_bytes=1500, window=6.0)  # the window keeps about the last 6 s in memory
        async with ingress(tmp_path, FakePublisher(), broker_service_url=broker.service_url, hls=small) as h, \
                aiohttp.ClientSession() as s:
            base = f"{h.http_url}/hls/{room}"
            start = iso_time(t0 + 3_500)
            status, text, _ = await get(s, f"{base}/index.m3u8?start={start}")
            assert status == 200 and f"360p/index.m3u8?start={start.replace(':', '%3A')}" in text, text
            status, text, _ = await get(s, f"{base}/360p/index.m3u8?start={start}")
            assert status == 200 and check_rules(text) == [], text
            assert "#EXT-X-MEDIA-SEQUENCE:3\n" in text, text[:900]
            offset = float(text.split("#EXT-X-START:TIME-OFFSET=", 1)[1].split(",", 1)[0])
            assert abs(offset - 0.5) < 0.002 and ",PRECISE=YES\n" in text  # iso_time keeps whole milliseconds
            gen = text.split('#EXT-X-MAP:URI="', 1)[1].split("/", 1)[0]
            status, body, headers = await get(s, f"{base}/360p/{gen}/seg-3.m4s")  # long evicted: from the topic
            assert status == 200 and body == b"".join(b"F%d;" % i for i in range(90, 120))
            assert headers["X-Wtpulsar-Source"] == "topic"
            status, body, headers = await get(s, f"{base}/360p/{gen}/seg-18.m4s")
            assert body == b"".join(b"F%d;" % i for i in range(540, 570)) and headers["X-Wtpulsar-Source"] == "memory"
            status, live, _ = await get(s, f"{base}/360p/index.m3u8")
            assert "#EXT-X-MEDIA-SEQUENCE:14\n" in live and "PLAYLIST-TYPE" not in live  # the sliding window

    run(go())


def test_rooms_with_nothing_are_let_go_and_the_number_of_rooms_is_bounded(broker: Any, tmp_path: Path) -> None:
    room = "h" + uuid.uuid4().hex[:10]
    video, _ = tracks(room, 2, time.time() * 1000 - 2000)
    produce(broker.service_url, f"room-{room}-video-360p", video)

    async def go() -> None:
        one_room = replace(settings(), max_rooms=1)
        async with ingress(tmp_path, FakePublisher(), broker_service_url=broker.service_url, hls=one_room) as h, \
                aiohttp.ClientSession() as s:
            for _ in range(3):  # nothing there: answered, and no room kept, so the next one still fits
                status, text, _ = await get(s, f"{h.http_url}/hls/empty{uuid.uuid4().hex[:6]}/index.m3u8")
                assert status == 404 and "has no video" in str(text)
            status, _, _ = await get(s, f"{h.http_url}/hls/{room}/index.m3u8")
            assert status == 200
            status, text, headers = await get(s, f"{h.http_url}/hls/other{uuid.uuid4().hex[:6]}/index.m3u8")
            assert status == 503 and "serves HLS for 1 rooms already (max 1)" in str(text), text

    run(go())
