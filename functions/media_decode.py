"""Decoding what browsers send, one message = one frame (docs/media-and-webtransport.md §5.1).

`VideoDecoder` wraps one PyAV decoder for one stream. It knows nothing about Pulsar: it turns a
payload into zero or more `av.VideoFrame`s or raises `BadInput` naming the problem. The caller
(transcode) keeps one per stream and decides about keyframes, sequence gaps and dead letters.
"""

from __future__ import annotations

from typing import cast

import av
import numpy as np
from media_envelope import BadInput
from media_h264 import is_idr, split_annexb

# PyAV decoder names for the envelope codec names; i420 is raw planes and needs no decoder.
_DECODER_BY_CODEC = {"vp8": "vp8", "vp9": "vp9", "h264": "h264", "jpeg": "mjpeg"}
INTRA_ONLY_CODECS = ("jpeg", "i420")


def sniff_keyframe(codec: str, payload: bytes) -> bool | None:
    """Keyframe flag read from the bitstream, for messages without a `keyframe` property.

    VP8: frame tag bit 0 is 0 on key frames (RFC 6386 §9.1). VP9: frame_type bit in the
    uncompressed header (VP9 spec §6.2). H.264: an IDR slice is present. None when unknown.
    """
    if codec in INTRA_ONLY_CODECS:
        return True
    if not payload:
        return None
    if codec == "vp8":
        return payload[0] & 0x01 == 0
    if codec == "vp9":
        bits = payload[0]
        if bits >> 6 != 0b10:  # frame_marker
            return None
        profile = ((bits >> 5) & 1) | (((bits >> 4) & 1) << 1)
        pos = 3 if profile < 3 else 2  # bit of show_existing_frame; profile 3 has a reserved bit first
        show_existing = (bits >> pos) & 1
        if show_existing:
            return False
        return ((bits >> (pos - 1)) & 1) == 0
    if codec == "h264":
        return is_idr(split_annexb(payload))
    return None


class VideoDecoder:
    """One decoder for one stream and codec."""

    def __init__(self, codec: str) -> None:
        if codec not in _DECODER_BY_CODEC and codec != "i420":
            raise BadInput("unknown_codec", f"codec {codec[:40]!r} is not one of vp8, vp9, h264, jpeg, i420")
        self.codec = codec
        self._ctx: av.VideoCodecContext | None = None
        if codec in _DECODER_BY_CODEC:
            self._ctx = ctx = cast(av.VideoCodecContext, av.CodecContext.create(_DECODER_BY_CODEC[codec], "r"))
            # Slice threads add no frame delay (frame threads would hold N frames back, docs/media-and-webtransport.md §5.1).
            ctx.thread_type = "SLICE"

    def decode(self, payload: bytes, *, width: int = 0, height: int = 0) -> list[av.VideoFrame]:
        if not payload:
            raise BadInput("empty_frame", "payload is empty")
        if self._ctx is None:
            return [self._i420_frame(payload, width, height)]
        try:
            return list(self._ctx.decode(av.Packet(payload)))
        except av.FFmpegError as exc:
            raise BadInput("decode_error", f"{self.codec}: {exc}") from None

    @staticmethod
    def _i420_frame(payload: bytes, width: int, height: int) -> av.VideoFrame:
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise BadInput("bad_header", f"i420 needs even positive width/height properties, got {width}x{height}")
        expected = width * height * 3 // 2
        if len(payload) != expected:
            raise BadInput("truncated_frame", f"i420 {width}x{height} needs {expected} bytes, got {len(payload)}")
        planes = np.frombuffer(payload, dtype=np.uint8).reshape(height * 3 // 2, width)
        return av.VideoFrame.from_ndarray(planes, format="yuv420p")
