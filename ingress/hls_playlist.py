"""HLS playlists as text, from a TrackWindow (sans-I/O; the tags and their rules are in docs/hls.md).

``media_playlist`` writes one rendition's Low-Latency HLS media playlist: target duration, part
target, server control (blocking reload, part hold back), the media sequence and discontinuity
sequence of the first segment listed, an init (EXT-X-MAP) wherever it changes, a program date time
(the capture time of the segment's first frame) on every segment, partial segments for the last three
target durations and a preload hint for the next part. ``multivariant_playlist`` lists the video
renditions with codecs, resolution and bandwidth, and the audio as its own rendition group.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice

from ingress.hls_window import RECENT_TARGETS, Segment, TrackInfo, TrackWindow

VERSION = 6  # EXT-X-MAP in a playlist that is not I-frames only needs version 6 (docs/hls.md)
AUDIO_GROUP = "audio"


@dataclass(frozen=True, slots=True)
class Listing:
    """Which segments a media playlist shows: from ``first_msn`` (None: the window's choice), and where a
    player starts (``start_offset`` s into the playlist, for a viewer sent to a moment in the past)."""

    first_msn: int | None = None
    start_offset: float | None = None


def iso_time(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000.0, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fmt(seconds: float) -> str:
    return f"{seconds:.5f}"


def listed_segments(window: TrackWindow, listing: Listing) -> list[Segment]:
    """The segments a playlist shows, without copying the whole history (it may hold thousands)."""
    segments = window.segments
    if not segments:
        return []
    if listing.first_msn is not None:
        start = max(0, listing.first_msn - segments[0].msn)
        return list(islice(segments, start, None))
    if window.config.window is None:
        return list(segments)
    chosen: list[Segment] = []
    total = 0.0
    for seg in reversed(segments):
        total += seg.duration if seg.complete else sum(p.duration for p in seg.parts)
        if total > window.config.window and chosen:
            break
        chosen.append(seg)
    chosen.reverse()
    return chosen


def media_playlist(window: TrackWindow, listing: Listing = Listing(), prefix: str = "") -> str:
    """``prefix`` goes in front of every init, segment and part URI (hls_http: the topic's numbering)."""
    cfg = window.config
    segments = [s for s in listed_segments(window, listing) if s.complete or s.parts]
    event = cfg.window is None or listing.first_msn is not None
    first_msn = segments[0].msn if segments else window.next_msn
    # the first segment's number counts its own discontinuity, whose tag a playlist starting there omits
    disc_seq = segments[0].dseq if segments else window.discontinuities
    part_hold_back = 3 * cfg.part_target
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{VERSION}",
        f"#EXT-X-TARGETDURATION:{cfg.target_duration}",
        f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={_fmt(part_hold_back)},"
        f"HOLD-BACK={_fmt(3 * cfg.target_duration)}",
        f"#EXT-X-PART-INF:PART-TARGET={_fmt(cfg.part_target)}",
    ]
    if event:
        lines.append("#EXT-X-PLAYLIST-TYPE:EVENT")
    lines += [f"#EXT-X-MEDIA-SEQUENCE:{first_msn}", f"#EXT-X-DISCONTINUITY-SEQUENCE:{disc_seq}"]
    if listing.start_offset is not None:
        lines.append(f"#EXT-X-START:TIME-OFFSET={_fmt(listing.start_offset)},PRECISE=YES")
    recent = _recent_from(segments, RECENT_TARGETS * cfg.target_duration)
    init_shown = -1
    for i, seg in enumerate(segments):
        if seg.discontinuity and i > 0:
            lines.append("#EXT-X-DISCONTINUITY")
        if seg.init_id != init_shown:
            lines.append(f'#EXT-X-MAP:URI="{prefix}init-{seg.init_id}.mp4"')
            init_shown = seg.init_id
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{iso_time(seg.pdt_ms)}")
        if seg.msn >= recent:
            for part in seg.parts:
                if part.complete:
                    attrs = f'DURATION={_fmt(part.duration)},URI="{prefix}part-{seg.msn}.{part.index}.m4s"'
                    lines.append(f"#EXT-X-PART:{attrs}" + (",INDEPENDENT=YES" if part.independent else ""))
        if seg.complete:
            lines += [f"#EXTINF:{_fmt(seg.duration)},", f"{prefix}seg-{seg.msn}.m4s"]
    if not window.ended:
        lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{prefix}{_next_part_uri(window)}"')
    return "\n".join(lines) + "\n"


def _recent_from(segments: Sequence[Segment], seconds: float) -> int:
    total = 0.0
    for seg in reversed(segments):
        total += seg.duration if seg.complete else sum(p.duration for p in seg.parts)
        if total > seconds:
            return seg.msn
    return segments[0].msn if segments else 0


def _next_part_uri(window: TrackWindow) -> str:
    """The part the next fragment will most likely open or extend: in the open segment, unless that one is
    long enough for the next keyframe to start a new segment and the GOP so far says one is due."""
    last = window.segments[-1] if window.segments else None
    if last is not None and not last.complete:
        done = sum(1 for p in last.parts if p.complete)
        if done < len(last.parts) or not window.segment_due():
            return f"part-{last.msn}.{done}.m4s"
    return f"part-{window.next_msn}.0.m4s"


@dataclass(frozen=True, slots=True)
class Variant:
    name: str  # the rendition's path segment, e.g. 360p
    info: TrackInfo
    bandwidth: int  # bit/s, peak segment bitrate


def peak_bandwidth(window: TrackWindow) -> int:
    """The highest segment bitrate among the complete segments still in memory, bit/s (0: none yet)."""
    peak = 0.0
    for seg in window.segments:
        if seg.complete and not seg.evicted and seg.duration > 0:
            peak = max(peak, seg.nbytes * 8 / seg.duration)
    return math.ceil(peak)


def multivariant_playlist(variants: Sequence[Variant], audio: Variant | None, query: str = "") -> str:
    """``query``: appended to every media playlist URI (``?start=...`` for a viewer sent back in time)."""
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{VERSION}"]
    if audio is not None:
        channels = f',CHANNELS="{audio.info.channels}"' if audio.info.channels else ""
        lines.append(f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="{AUDIO_GROUP}",NAME="audio",DEFAULT=YES,AUTOSELECT=YES'
                     f'{channels},URI="{audio.name}/index.m3u8{query}"')
    for variant in sorted(variants, key=lambda v: -v.bandwidth):
        codecs = variant.info.codec_string + (f",{audio.info.codec_string}" if audio is not None else "")
        bandwidth = max(1, variant.bandwidth + (audio.bandwidth if audio is not None else 0))
        attrs = f'BANDWIDTH={bandwidth},CODECS="{codecs}"'
        if variant.info.width and variant.info.height:
            attrs += f",RESOLUTION={variant.info.width}x{variant.info.height}"
        if audio is not None:
            attrs += f',AUDIO="{AUDIO_GROUP}"'
        lines += [f"#EXT-X-STREAM-INF:{attrs}", f"{variant.name}/index.m3u8{query}"]
    return "\n".join(lines) + "\n"
