"""HLS over the ingress's HTTP server (aiohttp): routes under /hls/<room>/ (docs/hls.md).

    /hls/<room>/index.m3u8[?start=<ISO time>]       multivariant playlist
    /hls/<room>/<track>/index.m3u8[?_HLS_msn=M[&_HLS_part=P]][&start=<ISO time>]
    /hls/<room>/<track>/<gen>/init-<n>.mp4, seg-<msn>.m4s, part-<msn>.<i>.m4s

``<track>`` is a rendition (360p, 720p, …) or ``audio``. ``<gen>`` names where the track's topic
began when this ingress read it (the message id of its first retained message): segment numbers
count from there, so when retention trims the topic and a restarted ingress numbers them again the
URIs differ and a CDN never serves an old copy under a new meaning. Segments, parts and inits are
immutable and cached for a year (header ``X-Wtpulsar-Source`` says whether memory or the topic served
them); playlists for a second (a blocking request's answer, which names
its position, for six target durations). Bad requests get a 4xx with the reason.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aiohttp import web

from ingress.hls_feed import AUDIO_TRACK, HlsHub, HlsRoom, TooManyRooms, TrackFeed
from ingress.hls_playlist import Listing, Variant, multivariant_playlist, peak_bandwidth
from ingress.names import BadName, check_name

if TYPE_CHECKING:
    from ingress.app import IngressApp

HLS_HUB_KEY = web.AppKey("hls_hub", HlsHub)
PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
IMMUTABLE = "public, max-age=31536000, immutable"
CORS = {"Access-Control-Allow-Origin": "*"}  # players on other sites (hls.js) fetch with CORS


def add_hls_routes(web_app: web.Application, app: IngressApp) -> HlsHub:
    hub = HlsHub(app.config.broker_service_url, app.config.tenant, app.config.namespace, app.config.broker_token,
                 app.config.hls)
    web_app[HLS_HUB_KEY] = hub

    async def close(_: web.Application) -> None:
        await hub.close()

    web_app.on_cleanup.append(close)
    web_app.router.add_get("/hls/{room}/index.m3u8", _multivariant)
    web_app.router.add_get("/hls/{room}/{track}/index.m3u8", _media)
    web_app.router.add_get("/hls/{room}/{track}/{gen}/{name}", _resource)
    return hub


def _error(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text + "\n", headers={"Cache-Control": "no-store", **CORS})


class Refused(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status


async def _room(request: web.Request) -> HlsRoom:
    try:
        name = check_name("room", request.match_info["room"])
    except BadName as exc:
        raise Refused(400, str(exc)) from None
    try:
        return await request.app[HLS_HUB_KEY].room(name)
    except TooManyRooms as exc:
        raise Refused(503, str(exc)) from None


def _track(room: HlsRoom, name: str) -> TrackFeed:
    feed = room.tracks.get(name)
    if feed is None or feed.window.info() is None:
        have = [n for n, f in room.tracks.items() if f.window.info() is not None]
        raise Refused(404, f"room {room.room} has no {name} track; it has {', '.join(have) or 'none'}")
    return feed


def _start_ms(request: web.Request) -> float | None:
    text = request.query.get("start")
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise Refused(400, f"start={text!r} is not an ISO 8601 time (e.g. 2026-12-04T15:00:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    ms = moment.timestamp() * 1000.0
    if ms > time.time() * 1000.0 + 1000.0:
        raise Refused(400, f"start={text} is in the future; leave it out to watch live")
    return ms


def _listing(feed: TrackFeed, start_ms: float | None) -> Listing:
    if start_ms is None:
        return Listing()
    seg = feed.window.segment_at(start_ms)
    if seg is None:
        raise Refused(404, "nothing retained to start from")
    if start_ms < seg.pdt_ms and seg is feed.window.segments[0]:
        oldest = datetime.fromtimestamp(seg.pdt_ms / 1000, UTC).isoformat(timespec="seconds")
        raise Refused(404, f"{feed.topic} keeps nothing that old; its oldest retained moment is {oldest}")
    return Listing(first_msn=seg.msn, start_offset=max(0.0, (start_ms - seg.pdt_ms) / 1000.0))


async def _multivariant(request: web.Request) -> web.Response:
    try:
        room = await _room(request)
        start = request.query.get("start")
        start_ms = _start_ms(request)
        variants, audio = [], None
        for name, feed in room.tracks.items():
            info = feed.window.info()
            if info is None:
                continue
            if start_ms is not None:
                _listing(feed, start_ms)  # refuses a start the track does not retain
            variant = Variant(name, info, peak_bandwidth(feed.window) or 1)
            if name == AUDIO_TRACK:
                audio = variant
            else:
                variants.append(variant)
        if not variants:
            raise Refused(404, f"room {room.room} has no video on its output topics: no one has published in it, "
                               "or retention has dropped what was published")
    except Refused as refused:
        return _error(refused.status, str(refused))
    from urllib.parse import quote

    query = f"?start={quote(start)}" if start is not None else ""
    return web.Response(text=multivariant_playlist(variants, audio, query), content_type=PLAYLIST_TYPE,
                        headers={"Cache-Control": "public, max-age=2", **CORS})


def _int_param(request: web.Request, name: str) -> int | None:
    text = request.query.get(name)
    if text is None:
        return None
    if not text.isdigit() or len(text) > 12:
        raise Refused(400, f"{name}={text!r} must be a non-negative integer")
    return int(text)


async def _media(request: web.Request) -> web.Response:
    try:
        room = await _room(request)
        feed = _track(room, request.match_info["track"])
        listing = _listing(feed, _start_ms(request))
        msn, part = _int_param(request, "_HLS_msn"), _int_param(request, "_HLS_part")
        cache = "public, max-age=1"
        if part is not None and msn is None:
            raise Refused(400, "_HLS_part needs _HLS_msn")
        if msn is not None:
            window = feed.window
            if msn > window.next_msn + 1:  # beyond the last segment + 2 (docs/hls.md "Blocking reload")
                raise Refused(400, f"_HLS_msn={msn} is more than two segments past the last one ({window.next_msn - 1})")
            last_msn, last_part = window.last_position()
            limit = advance_part_limit(window.config.part_target)
            if part is not None and msn == last_msn and part > last_part + limit:
                raise Refused(400, f"_HLS_part={part} is more than {limit} parts past the last one ({last_part}) "
                                   f"of segment {msn}")
            timeout = 3 * window.config.target_duration
            if part is None:
                ready = await feed.wait(lambda: _segment_ready(feed, msn), timeout)
            else:
                ready = await feed.wait(lambda: window.has_part(msn, part), timeout)
            if not ready:
                raise Refused(503, f"{feed.topic}: segment {msn} part {part} did not come within {timeout} s")
            cache = f"public, max-age={6 * window.config.target_duration}"
        body = feed.playlist(listing)
    except Refused as refused:
        return _error(refused.status, str(refused))
    return web.Response(body=body, content_type=PLAYLIST_TYPE, charset="utf-8",
                        headers={"Cache-Control": cache, **CORS})


def advance_part_limit(part_target: float) -> int:
    """How many parts ahead of the last one a blocking request may ask for (docs/hls.md)."""
    return max(1, int(3 / part_target)) if part_target < 1 else 3


def _segment_ready(feed: TrackFeed, msn: int) -> bool:
    seg = feed.window.segment(msn)
    return (seg is not None and seg.complete) or msn < (feed.window.segments[0].msn if feed.window.segments else 0)


async def _resource(request: web.Request) -> web.Response:
    try:
        room = await _room(request)
        feed = _track(room, request.match_info["track"])
        if request.match_info["gen"] != feed.generation:
            raise Refused(404, f"{request.path}: from an older numbering of {feed.topic} (now {feed.generation}); "
                               "reload the playlist")
        name = request.match_info["name"]
        data, content_type, source = await _resource_bytes(feed, name)
    except Refused as refused:
        return _error(refused.status, str(refused))
    return web.Response(body=data, content_type=content_type,
                        headers={"Cache-Control": IMMUTABLE, "X-Wtpulsar-Source": source, **CORS})


async def _resource_bytes(feed: TrackFeed, name: str) -> tuple[bytes, str, str]:
    """(bytes, content type, where they came from: ``memory`` or ``topic``)."""
    window = feed.window
    if name.startswith("init-") and name.endswith(".mp4") and name[5:-4].isdigit():
        init = window.inits.get(int(name[5:-4]))
        if init is None:
            raise Refused(404, f"{feed.topic} has no init segment {name[5:-4]}")
        return init, "video/mp4", "memory"
    if name.startswith("seg-") and name.endswith(".m4s") and name[4:-4].isdigit():
        msn = int(name[4:-4])
        seg = window.segment(msn)
        if seg is None or not seg.complete:
            raise Refused(404, f"{feed.topic} has no complete segment {msn} (it has "
                               f"{window.segments[0].msn if window.segments else 0}..{window.next_msn - 1})")
        data = seg.data()
        if data is not None:
            return data, "video/iso.segment", "memory"
        try:
            return await feed.read_back(seg), "video/iso.segment", "topic"
        except TimeoutError as exc:
            raise Refused(503, str(exc)) from None
    if name.startswith("part-") and name.endswith(".m4s"):
        numbers = name[5:-4].split(".")
        if len(numbers) == 2 and all(n.isdigit() for n in numbers):
            msn, index = int(numbers[0]), int(numbers[1])
            # a preload hint names a part before it exists: wait for it (docs/hls.md "Preload hints")
            await feed.wait(lambda: window.has_part(msn, index) or _never(feed, msn, index),
                            3 * window.config.target_duration)
            seg = window.segment(msn)
            if seg is None or index >= len(seg.parts) or not seg.parts[index].complete:
                raise Refused(404, f"{feed.topic} has no part {index} of segment {msn}")
            return seg.parts[index].data(), "video/iso.segment", "memory"
    raise Refused(404, f"{name}: not an HLS resource name (init-N.mp4, seg-N.m4s, part-N.I.m4s)")


def _never(feed: TrackFeed, msn: int, index: int) -> bool:
    """The part will not come: its segment closed with fewer parts, or a later segment has begun."""
    seg = feed.window.segment(msn)
    if seg is None:
        return msn < feed.window.next_msn
    return seg.complete and index >= len(seg.parts)
