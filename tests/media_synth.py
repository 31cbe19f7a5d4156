"""Synthetic camera frames and browser-like encoded chunks, for tests and bench/pipeline.py.

Each frame carries its index (mod 256) as 8 black/white blocks along the top edge, which
`marker_of()` reads back after lossy coding and scaling, so tests can check frame order end to end.
It is test material, not a function module, so it is not packaged with the functions; it encodes with
functions/media_encode.py, so functions/ must be on sys.path (test_functions_media_support.py puts it there).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import cast

import av
import numpy as np
from media_encode import scale_to_yuv420p

FRAME_US = 33_333  # 30 fps
MARKER_BITS = 8
MARKER_PERIOD = 1 << MARKER_BITS
_BLACK, _WHITE = 16, 235  # video-range luma


@dataclass(frozen=True)
class EncodedChunk:
    """One encoded frame as a browser's WebCodecs encoder would hand it to the ingress."""

    data: bytes
    keyframe: bool
    pts: int  # µs


def pattern_frames(count: int, width: int = 640, height: int = 480, *, start: int = 0) -> list[av.VideoFrame]:
    """yuv420p frames: a moving bright bar over a gradient, index marker in the top-left block."""
    ramp = np.linspace(40, 200, width, dtype=np.float32)
    base = np.broadcast_to(ramp, (height, width)).astype(np.uint8)
    frames = []
    for i in range(start, start + count):
        y = base.copy()
        x0 = (i * 8) % max(1, width - 32)
        y[height // 3 : height // 3 + 24, x0 : x0 + 32] = 235
        block_w, block_h = width // (2 * MARKER_BITS), height // 8
        for bit in range(MARKER_BITS):
            y[:block_h, bit * block_w : (bit + 1) * block_w] = _WHITE if (i >> bit) & 1 else _BLACK
        uv = np.full((height // 2, width), 128, np.uint8)  # U and V planes, stacked as I420 rows
        frame = av.VideoFrame.from_ndarray(np.vstack([y, uv]), format="yuv420p")
        frame.pts = i * FRAME_US
        frames.append(frame)
    return frames


def marker_of(frame: av.VideoFrame) -> int:
    """The index written by `pattern_frames` (mod MARKER_PERIOD), from any size/format."""
    h, w = frame.height, frame.width
    y = scale_to_yuv420p(frame, w, h).to_ndarray()[:h]  # the Y plane, limited range like the source
    block_w, block_h = w / (2 * MARKER_BITS), h / 8
    value = 0
    for bit in range(MARKER_BITS):  # sample the middle of each block, away from blurred edges
        x0, x1 = int((bit + 0.25) * block_w), int((bit + 0.75) * block_w)
        if y[int(block_h * 0.25) : int(block_h * 0.75), x0:x1].mean() > (_BLACK + _WHITE) / 2:
            value |= 1 << bit
    return value


def i420_bytes(frame: av.VideoFrame) -> bytes:
    return frame.to_ndarray(format="yuv420p").tobytes()


def encode_chunks(frames: list[av.VideoFrame], codec: str, *, keyint: int = 60,
                  bitrate: int = 1_000_000) -> list[EncodedChunk]:
    """Encode like a realtime WebCodecs encoder: one chunk per frame, keyframe every `keyint`.

    codec: `vp8`, `vp9`, `h264` (Annex B, SPS/PPS inline on keyframes) or `jpeg`.
    """
    names = {"vp8": "libvpx", "vp9": "libvpx-vp9", "h264": "libx264", "jpeg": "mjpeg"}
    ctx = cast(av.VideoCodecContext, av.CodecContext.create(names[codec], "w"))
    ctx.width, ctx.height = frames[0].width, frames[0].height
    ctx.pix_fmt = "yuvj420p" if codec == "jpeg" else "yuv420p"
    ctx.time_base = Fraction(1, 1_000_000)
    ctx.framerate = Fraction(30)
    ctx.bit_rate = bitrate
    if codec == "h264":
        ctx.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline",
                       "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0"}
    elif codec in ("vp8", "vp9"):
        ctx.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "g": str(keyint),
                       "keyint_min": str(keyint)}
    chunks = []
    for frame in frames:
        src = frame.reformat(format=ctx.pix_fmt) if codec == "jpeg" else frame
        src.pts = frame.pts
        for packet in ctx.encode(src):
            chunks.append(EncodedChunk(bytes(packet), bool(packet.is_keyframe), int(packet.pts or 0)))
    for packet in ctx.encode(None):
        chunks.append(EncodedChunk(bytes(packet), bool(packet.is_keyframe), int(packet.pts or 0)))
    return chunks


def opus_packets(seconds: float, *, freq: float = 440.0, channels: int = 1) -> list[bytes]:
    """20 ms Opus packets of a sine tone, like a WebCodecs AudioEncoder (48 kHz) produces."""
    enc = av.CodecContext.create("libopus", "w")
    enc.sample_rate, enc.layout, enc.format = 48_000, "stereo" if channels == 2 else "mono", "s16"
    enc.bit_rate = 32_000 * channels
    enc.time_base = Fraction(1, 48_000)
    total = int(seconds * 48_000) // 960 * 960
    tone = (np.sin(2 * np.pi * freq * np.arange(total) / 48_000) * 10_000).astype(np.int16)
    packets: list[bytes] = []
    for start in range(0, total, 960):
        block = np.repeat(tone[start : start + 960], channels).reshape(1, -1)  # packed s16: interleaved
        frame = av.AudioFrame.from_ndarray(block, format="s16", layout=enc.layout.name)
        frame.sample_rate, frame.pts = 48_000, start
        packets.extend(bytes(p) for p in enc.encode(frame))
    packets.extend(bytes(p) for p in enc.encode(None))
    return packets
