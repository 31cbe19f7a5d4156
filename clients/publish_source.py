"""What `wtpulsar publish` sends: encoded frames in the page's codecs, made from a test pattern or a file.

The page encodes camera frames with WebCodecs as H.264 (Annex B, realtime, no B-frames, parameter
sets with every keyframe) and microphone audio as 20 ms Opus packets at 48 kHz, and frames each as a
FRAMING.md Frame. `VideoEncoder` and `AudioEncoder` do the same with PyAV (libx264 baseline
zerolatency, libopus); `pattern_picture` draws the test pattern with its capture time burned in
(clients.capture_stamp) so what a viewer, HLS player or recording shows can be checked against the
moment it was captured. `FileSource` decodes any file PyAV reads and hands its pictures and sound
to the same encoders: a file is always re-encoded, so what goes out is exactly what the page sends.
No I/O here beyond reading the file: the caller paces and sends (clients.publish_cli).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from clients import capture_stamp
from schemas.framing_codec import Codec, Frame, Kind

OPUS_RATE = 48_000
OPUS_FRAME = 960  # samples: 20 ms, what a WebCodecs AudioEncoder emits for Opus
OPUS_FRAME_US = 20_000


@dataclass(frozen=True, slots=True)
class Encoded:
    data: bytes
    keyframe: bool
    pts_us: int


_NOISE = np.random.default_rng(7)


def pattern_picture(index: int, width: int, height: int, capture_ms: int, noise: bool = False) -> av.VideoFrame:
    """yuv420p test picture: gradient, a bar moving one step per frame, the capture time on top; with
    ``noise`` the lower third is fresh random noise every frame, so the encoders need a camera's bitrate."""
    ramp = np.linspace(40, 200, width, dtype=np.float32)
    luma = np.broadcast_to(ramp, (height, width)).astype(np.uint8).copy()
    if noise:
        luma[height * 2 // 3:] = _NOISE.integers(16, 236, (height - height * 2 // 3, width), dtype=np.uint8)
    x0 = (index * 8) % max(1, width - 32)
    luma[height // 2: height // 2 + height // 12, x0:x0 + 32] = 235
    capture_stamp.burn(luma, capture_ms)
    chroma = np.full((height // 2, width), 128, np.uint8)  # U then V planes, as I420 rows
    return av.VideoFrame.from_ndarray(np.vstack([luma, chroma]), format="yuv420p")


class VideoEncoder:
    """H.264 like the page's WebCodecs encoder: one access unit per picture, Annex B, a keyframe every
    ``keyint`` pictures with SPS/PPS in front of it, no B-frames (zerolatency)."""

    def __init__(self, width: int, height: int, fps: float, keyint: int, bitrate: int = 1_500_000) -> None:
        if width % 2 or height % 2 or width < 16 or height < 16:
            raise ValueError(f"video size {width}x{height}: width and height must be even and at least 16")
        self.width, self.height = width, height
        self.ctx = av.CodecContext.create("libx264", "w")
        self.ctx.width, self.ctx.height = width, height
        self.ctx.pix_fmt = "yuv420p"
        self.ctx.time_base = Fraction(1, 1_000_000)
        self.ctx.framerate = Fraction(fps).limit_denominator(1001)
        self.ctx.bit_rate = bitrate
        self.ctx.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline",
                            "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0:repeat-headers=1"}

    def encode(self, picture: av.VideoFrame, pts_us: int) -> list[Encoded]:
        if (picture.width, picture.height) != (self.width, self.height) or picture.format.name != "yuv420p":
            picture = picture.reformat(width=self.width, height=self.height, format="yuv420p")
        picture.pts = pts_us
        picture.time_base = self.ctx.time_base
        return [Encoded(bytes(p), bool(p.is_keyframe), int(p.pts or 0)) for p in self.ctx.encode(picture)]


class AudioEncoder:
    """Opus at 48 kHz mono in 20 ms packets, like the page's WebCodecs AudioEncoder."""

    def __init__(self, bitrate: int = 48_000) -> None:
        self.ctx = av.CodecContext.create("libopus", "w")
        self.ctx.sample_rate, self.ctx.layout, self.ctx.format = OPUS_RATE, "mono", "s16"
        self.ctx.bit_rate = bitrate
        self.ctx.time_base = Fraction(1, OPUS_RATE)
        self.samples = 0

    def encode(self, pcm: np.ndarray) -> list[Encoded]:
        """``pcm``: int16 mono samples, a multiple of 960 long (20 ms blocks)."""
        out = []
        for start in range(0, len(pcm) - OPUS_FRAME + 1, OPUS_FRAME):
            frame = av.AudioFrame.from_ndarray(pcm[start:start + OPUS_FRAME].reshape(1, -1), format="s16",
                                               layout="mono")
            frame.sample_rate, frame.pts = OPUS_RATE, self.samples
            self.samples += OPUS_FRAME
            for packet in self.ctx.encode(frame):
                out.append(Encoded(bytes(packet), True, int(packet.pts or 0) * 1_000_000 // OPUS_RATE))
        return out


def tone(block: int, freq: float = 440.0) -> np.ndarray:
    """20 ms of a sine tone (int16), block ``block`` of a continuous signal."""
    t = (np.arange(OPUS_FRAME) + block * OPUS_FRAME) / OPUS_RATE
    return (np.sin(2 * np.pi * freq * t) * 8000).astype(np.int16)


@dataclass(slots=True)
class FileSource:
    """Pictures and 48 kHz mono sound of a media file, in presentation order, with their times (µs
    from the file's start). ``items()`` yields ("video", VideoFrame, t_us) and ("audio", int16 array
    of 20 ms, t_us)."""

    path: Path

    def probe(self) -> tuple[int, int, float, bool]:
        """(width, height, fps, has audio) of the file; ValueError with the reason when it has no video."""
        try:
            container = av.open(str(self.path))
        except (OSError, av.error.FFmpegError) as exc:
            raise ValueError(f"--file {self.path}: cannot open it ({exc})") from None
        with container:
            if not container.streams.video:
                raise ValueError(f"--file {self.path}: it has no video stream")
            stream = container.streams.video[0]
            rate = float(stream.average_rate or stream.guessed_rate or 30)
            width, height = stream.codec_context.width, stream.codec_context.height
            return width - width % 2, height - height % 2, rate, bool(container.streams.audio)

    def items(self) -> Iterator[tuple[str, object, int]]:
        container = av.open(str(self.path))
        with container:
            streams = [container.streams.video[0], *container.streams.audio[:1]]
            resampler = av.AudioResampler(format="s16", layout="mono", rate=OPUS_RATE)
            pending = np.zeros(0, np.int16)
            audio_start: int | None = None
            sent_blocks = 0
            for frame in container.decode(*streams):
                if not isinstance(frame, av.VideoFrame | av.AudioFrame) or frame.pts is None \
                        or frame.time_base is None:
                    continue
                t_us = int(frame.pts * frame.time_base * 1_000_000)
                if isinstance(frame, av.VideoFrame):
                    yield "video", frame, t_us
                    continue
                if audio_start is None:
                    audio_start = t_us
                for out in resampler.resample(frame):
                    pending = np.concatenate([pending, out.to_ndarray().reshape(-1)])
                while len(pending) >= OPUS_FRAME:
                    yield "audio", pending[:OPUS_FRAME], audio_start + sent_blocks * OPUS_FRAME_US
                    pending = pending[OPUS_FRAME:]
                    sent_blocks += 1


@dataclass
class FrameMaker:
    """Numbers and frames encoded chunks per stream id, as the page does (seq from 0 per stream)."""

    video_stream: str
    audio_stream: str
    width: int = 0
    height: int = 0
    video_seq: int = 0
    audio_seq: int = 0

    def video(self, chunk: Encoded, capture_ms: float) -> Frame:
        frame = Frame(Kind.VIDEO, Codec.H264, self.video_stream, self.video_seq, chunk.pts_us, capture_ms,
                      chunk.data, chunk.keyframe, self.width, self.height)
        self.video_seq += 1
        return frame

    def audio(self, chunk: Encoded, capture_ms: float) -> Frame:
        frame = Frame(Kind.AUDIO, Codec.OPUS, self.audio_stream, self.audio_seq, chunk.pts_us, capture_ms,
                      chunk.data, True)
        self.audio_seq += 1
        return frame
