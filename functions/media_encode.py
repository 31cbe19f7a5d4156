"""Rendition ladder and low-latency H.264 encoding with libx264 (docs/media-and-webtransport.md §5.2).

Never upscale: a rung is used only when its height is at most the source height. When no rung
fits (a source smaller than the lowest rung) the lowest rung is encoded at the source size, so
small sources still play. A 640×480 source therefore gets only 360p from the default ladder
(480×360, aspect kept); there is no implicit "source" rung (add one to userConfig if wanted).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
from av.video.frame import PictureType
from av.video.reformatter import VideoReformatter

DEFAULT_LADDER: tuple[dict[str, Any], ...] = (
    {"name": "720p", "height": 720, "bitrate": 2_500_000},  # bit/s
    {"name": "360p", "height": 360, "bitrate": 800_000},
)
PTS_TIME_BASE = Fraction(1, 1_000_000)  # envelope pts are microseconds
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium")


@dataclass(frozen=True)
class Rung:
    name: str
    height: int
    bitrate: int  # bit/s


@dataclass(frozen=True)
class EncoderSettings:
    preset: str = "veryfast"
    profile: str = "baseline"  # Constrained Baseline and Main both play in every MSE browser
    fps: int = 30  # rate-control hint only; pts carry the real timing
    threads: int = 1  # one thread per encoder: scales better with many streams per core
    keyint_backstop: int = 300  # frames; our own forced keyframes come much sooner


def parse_ladder(value: Any) -> list[Rung]:
    """Rungs from userConfig `renditions` (list of {name, height, bitrate}); ValueError if malformed."""
    items = DEFAULT_LADDER if value in (None, "", []) else value
    if not isinstance(items, list | tuple):
        raise ValueError(f"renditions must be a list, got {type(items).__name__}")
    rungs = []
    for item in items:
        try:
            rung = Rung(str(item["name"]), int(item["height"]), int(item.get("bitrate", 1_000_000)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"bad rendition {item!r}: need name, height, bitrate ({exc})") from None
        if rung.height < 16 or rung.height % 2 or rung.bitrate <= 0:
            raise ValueError(f"bad rendition {item!r}: height must be even and >= 16, bitrate > 0")
        rungs.append(rung)
    if not rungs:
        raise ValueError("renditions is empty")
    return sorted(rungs, key=lambda r: -r.height)


def _even(x: float) -> int:
    return max(2, int(round(x / 2)) * 2)


def plan_ladder(rungs: list[Rung], src_width: int, src_height: int) -> list[tuple[Rung, int, int]]:
    """(rung, width, height) to encode for a source size; never taller than the source."""
    fitting = [r for r in rungs if r.height <= src_height]
    if not fitting:
        lowest = min(rungs, key=lambda r: r.height)
        return [(lowest, _even(src_width), _even(src_height))]
    return [(r, _even(src_width * r.height / src_height), r.height) for r in fitting]


def scale_to_yuv420p(frame: av.VideoFrame, width: int, height: int,
                     reformatter: VideoReformatter | None = None) -> av.VideoFrame:
    """`frame` as limited-range yuv420p of the given size (the same object when it already is).

    Pass a long-lived `reformatter`: `VideoFrame.reformat()` builds a new swscale context on every
    call, which measured ~4x slower (3.5 ms vs 0.6 ms for 640x480 -> 480x360, bench/pipeline.py).
    JPEG decodes to full-range yuvj4xxp, and swscale keeps the range unless told, which would
    crush blacks and whites in H.264 (limited range); so convert JPEG range explicitly.
    """
    full_range = frame.format.name.startswith("yuvj") or frame.color_range == 2  # AVCOL_RANGE_JPEG
    if frame.width == width and frame.height == height and frame.format.name == "yuv420p" and not full_range:
        return frame
    ranges: dict[str, Any] = {"src_color_range": "JPEG", "dst_color_range": "MPEG"} if full_range else {}
    return (reformatter or VideoReformatter()).reformat(frame, width=width, height=height, format="yuv420p",
                                                        interpolation="AREA", **ranges)


class RenditionEncoder:
    """libx264 for one (stream, rendition): one frame in, one Annex B access unit out."""

    def __init__(self, rung: Rung, width: int, height: int, settings: EncoderSettings) -> None:
        self.rung = rung
        self.width = width
        self.height = height
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
        ctx.time_base = PTS_TIME_BASE
        ctx.framerate = Fraction(settings.fps)
        ctx.bit_rate = rung.bitrate
        ctx.thread_count = settings.threads
        # zerolatency: no lookahead, no B-frames, a packet per frame (docs/media-and-webtransport.md §5.2). scenecut=0 and a long
        # keyint leave keyframe placement to us (aligned across rungs); forced-idr makes a forced
        # I-frame an IDR so every fragment that starts with one is a random-access point.
        ctx.options = {
            "preset": settings.preset,
            "tune": "zerolatency",
            "profile": settings.profile,
            "forced-idr": "1",
            "x264-params": f"keyint={settings.keyint_backstop}:min-keyint=1:scenecut=0:bframes=0",
        }
        self._ctx = ctx
        self._reformatter = VideoReformatter()  # keeps its swscale context between frames
        self._last_pts: int | None = None

    def encode(self, frame: av.VideoFrame, pts: int, force_keyframe: bool) -> list[av.Packet[Any]]:
        """Scale `frame` to this rendition and encode it at `pts` (µs)."""
        scaled = scale_to_yuv420p(frame, self.width, self.height, self._reformatter)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1  # x264 needs strictly increasing pts
        self._last_pts = pts
        scaled.pts = pts
        scaled.time_base = PTS_TIME_BASE
        scaled.pict_type = PictureType.I if force_keyframe else PictureType.NONE
        return list(self._ctx.encode(scaled))
