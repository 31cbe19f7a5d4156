"""Opus -> AAC-LC for one audio stream, as ADTS frames (used when userConfig `audio_output: aac`).

Browsers send Opus (docs/media-and-webtransport.md §4.2: WebCodecs AudioEncoder has no AAC). Opus
packets carry 20 ms (960 samples at 48 kHz) and AAC frames 1024 samples, so outputs do not line
up with inputs: samples wait in an `AudioFifo` until a full AAC frame is there, and the caller
acks an input once the output holding its last samples is published. ADTS framing
(ISO/IEC 13818-7 §6.2 / 14496-3 §1.A.2) makes each frame self-describing, which is what a
WebCodecs AudioDecoder configured without `description` expects for `mp4a.40.2`.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
from media_envelope import BadInput

SAMPLE_RATE = 48_000  # Opus always decodes at 48 kHz
_ADTS_RATE_INDEX = {96000: 0, 88200: 1, 64000: 2, 48000: 3, 44100: 4, 32000: 5, 24000: 6, 22050: 7, 16000: 8}
AAC_LC_OBJECT_TYPE = 2


def adts_header(payload_len: int, *, sample_rate: int, channels: int) -> bytes:
    """7-byte ADTS header (no CRC) for one raw AAC-LC frame of `payload_len` bytes."""
    frame_len = payload_len + 7
    if frame_len >= 1 << 13:
        raise ValueError(f"AAC frame of {payload_len} bytes does not fit ADTS")
    rate = _ADTS_RATE_INDEX[sample_rate]
    profile = AAC_LC_OBJECT_TYPE - 1
    return bytes([
        0xFF,
        0xF1,  # sync, MPEG-4, layer 0, no CRC
        (profile << 6) | (rate << 2) | (channels >> 2),
        ((channels & 3) << 6) | (frame_len >> 11),
        (frame_len >> 3) & 0xFF,
        ((frame_len & 7) << 5) | 0x1F,  # buffer fullness 0x7FF (VBR)
        0xFC,  # ...fullness, one raw data block
    ])


def opus_channels(packet: bytes) -> int:
    """Channel count from the Opus TOC byte's stereo flag (RFC 6716 §3.1)."""
    return 2 if packet and packet[0] & 0x04 else 1


@dataclass(frozen=True)
class AacFrame:
    data: bytes  # ADTS header + raw AAC
    pts: int  # µs, start of the frame on the stream's timeline


class OpusToAac:
    """Stateful per-stream transcoder; `push()` returns the AAC frames completed so far."""

    def __init__(self, first_packet: bytes, first_pts_us: int, bitrate: int) -> None:
        self.channels = opus_channels(first_packet)
        layout = "stereo" if self.channels == 2 else "mono"
        self._decoder = av.CodecContext.create("opus", "r")
        self._resampler = av.AudioResampler(format="fltp", layout=layout, rate=SAMPLE_RATE)
        encoder = av.CodecContext.create("aac", "w")
        encoder.sample_rate, encoder.layout, encoder.format = SAMPLE_RATE, layout, "fltp"
        encoder.bit_rate = bitrate
        encoder.time_base = Fraction(1, SAMPLE_RATE)
        encoder.open()
        self._encoder = encoder
        self._fifo = av.AudioFifo()
        self._base_pts_us = first_pts_us
        self._samples_in = 0
        self.samples_decoded = 0  # input samples so far (the end of the newest input on the timeline)
        self.samples_covered = 0  # input samples inside AAC frames already returned

    def push(self, packet: bytes) -> list[AacFrame]:
        if not packet:
            raise BadInput("empty_frame", "payload is empty")
        try:
            decoded = self._decoder.decode(av.Packet(packet))
        except av.FFmpegError as exc:
            raise BadInput("decode_error", f"opus: {exc}") from None
        out: list[AacFrame] = []
        for frame in decoded:
            self.samples_decoded += frame.samples
            for resampled in self._resampler.resample(frame):
                resampled.pts = None  # the FIFO keeps its own sample count
                self._fifo.write(resampled)
        while self._fifo.samples >= self._encoder.frame_size:
            block = self._fifo.read(self._encoder.frame_size)
            assert block is not None  # the FIFO holds at least frame_size samples
            block.pts = self._samples_in
            block.time_base = self._encoder.time_base
            self._samples_in += block.samples
            out.extend(self._packets(self._encoder.encode(block)))
        return out

    def flush(self) -> list[AacFrame]:
        """Encode what is left (padded by the encoder) and drain it; the transcoder is done after."""
        out: list[AacFrame] = []
        frame = self._fifo.read() if self._fifo.samples else None
        if frame is not None:
            frame.pts = self._samples_in
            frame.time_base = self._encoder.time_base
            out.extend(self._packets(self._encoder.encode(frame)))
        out.extend(self._packets(self._encoder.encode(None)))
        return out

    def _packets(self, packets: list[av.Packet[Any]]) -> list[AacFrame]:
        frames = []
        for packet in packets:
            raw = bytes(packet)
            pts_samples = packet.pts if packet.pts is not None else 0
            pts_us = self._base_pts_us + pts_samples * 1_000_000 // SAMPLE_RATE
            header = adts_header(len(raw), sample_rate=SAMPLE_RATE, channels=self.channels)
            # packet pts counts the encoder's priming samples as negative time: pts + duration is
            # where this frame's content ends on the input timeline
            self.samples_covered = max(self.samples_covered, pts_samples + (packet.duration or 1024))
            frames.append(AacFrame(header + raw, pts_us))
        return frames


_RATE_BY_ADTS_INDEX = {index: rate for rate, index in _ADTS_RATE_INDEX.items()}
_OPUS_SILK_MS = (10, 20, 40, 60)
_OPUS_CELT_MS = (2.5, 5, 10, 20)


def opus_packet_samples(packet: bytes) -> int:
    """Duration of an Opus packet in 48 kHz samples, from its TOC byte (RFC 6716 §3.1)."""
    if not packet:
        raise ValueError("empty Opus packet")
    config, code = packet[0] >> 3, packet[0] & 3
    frame_ms: float
    if config < 12:
        frame_ms = _OPUS_SILK_MS[config % 4]
    elif config < 16:
        frame_ms = (10, 20)[config % 2]
    else:
        frame_ms = _OPUS_CELT_MS[config % 4]
    if code == 0:
        frames = 1
    elif code in (1, 2):
        frames = 2
    else:
        if len(packet) < 2:
            raise ValueError("Opus code-3 packet without a frame count byte")
        frames = packet[1] & 0x3F
    samples = int(frame_ms * 48 * frames)
    if not 0 < samples <= 5760:  # at most 120 ms per packet
        raise ValueError(f"Opus packet of {frames} frames x {frame_ms} ms is not a valid duration")
    return samples


@dataclass(frozen=True)
class AdtsFrame:
    audio_specific_config: bytes  # 2 bytes, for esds
    sample_rate: int
    channels: int
    raw: bytes  # the AAC frame without its ADTS header


def parse_adts(data: bytes) -> AdtsFrame:
    """One ADTS frame -> AudioSpecificConfig and the raw frame (ISO/IEC 14496-3 §1.A.2.2, §1.6.2.1)."""
    if len(data) < 7 or data[0] != 0xFF or data[1] & 0xF6 != 0xF0:
        raise ValueError("not an ADTS frame (no 0xFFF sync word)")
    header_len = 7 if data[1] & 1 else 9  # protection_absent=0 adds a CRC
    object_type = (data[2] >> 6) + 1
    rate_index = (data[2] >> 2) & 0xF
    channels = ((data[2] & 1) << 2) | (data[3] >> 6)
    frame_len = ((data[3] & 3) << 11) | (data[4] << 3) | (data[5] >> 5)
    if rate_index not in _RATE_BY_ADTS_INDEX or not 1 <= channels <= 2:
        raise ValueError(f"unsupported ADTS rate index {rate_index} or channel configuration {channels}")
    if frame_len != len(data) or frame_len <= header_len:
        raise ValueError(f"ADTS frame_length {frame_len} does not match the {len(data)}-byte payload")
    config = (object_type << 11) | (rate_index << 7) | (channels << 3)
    return AdtsFrame(config.to_bytes(2, "big"), _RATE_BY_ADTS_INDEX[rate_index], channels, data[header_len:])
