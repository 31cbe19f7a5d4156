"""H.264 bitstream helpers: Annex B splitting, AVCC conversion, avcC record, MSE codec string.

Pure functions on bytes (no PyAV), shared by transcode and chunk. Background:
docs/media-and-webtransport.md §4.2 (Annex B from WebCodecs/x264) and §5.4 (codec strings).
ISO/IEC 14496-15 §5.3.3 defines the avcC record; H.264 §7.3.1 the NAL unit header.
"""

from __future__ import annotations

NAL_SLICE = 1
NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9

# Parameter sets and delimiters live in avcC, not in `avc1` samples (ISO/IEC 14496-15 §5.3.2).
_OUT_OF_BAND = {NAL_SPS, NAL_PPS, NAL_AUD}


def split_annexb(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte string (3- or 4-byte start codes), without start codes.

    Bytes before the first start code are ignored; empty units are dropped.
    """
    nals: list[bytes] = []
    start = -1
    i = 0
    n = len(data)
    while True:
        j = data.find(b"\x00\x00\x01", i)
        if j < 0:
            break
        if start >= 0:
            nals.append(data[start:j])
        start = j + 3
        i = start
    if 0 <= start < n:
        nals.append(data[start:])
    # Zeros before a start code are a 4-byte start code or trailing_zero_8bits, never NAL payload
    # (a NAL unit ends with rbsp_trailing_bits, so its last byte is non-zero: H.264 §7.4.1).
    stripped = (nal.rstrip(b"\x00") for nal in nals)
    return [nal for nal in stripped if nal]


def nal_type(nal: bytes) -> int:
    return nal[0] & 0x1F


def is_idr(nals: list[bytes]) -> bool:
    return any(nal_type(n) == NAL_IDR for n in nals)


def parameter_sets(nals: list[bytes]) -> tuple[bytes | None, bytes | None]:
    """The first SPS and the first PPS among `nals` (None when absent)."""
    sps = next((n for n in nals if nal_type(n) == NAL_SPS), None)
    pps = next((n for n in nals if nal_type(n) == NAL_PPS), None)
    return sps, pps


def to_avcc_sample(nals: list[bytes]) -> bytes:
    """A sample for an `avc1` track: 4-byte big-endian length before each NAL, parameter sets removed."""
    return b"".join(len(n).to_bytes(4, "big") + n for n in nals if nal_type(n) not in _OUT_OF_BAND)


def codec_string(sps: bytes) -> str:
    """`avc1.PPCCLL` from the SPS bytes that follow the NAL header (docs/media-and-webtransport.md §5.4: never hard-code it)."""
    if len(sps) < 4 or nal_type(sps) != NAL_SPS:
        raise ValueError("not an SPS NAL unit (need type 7 and at least 4 bytes)")
    return f"avc1.{sps[1]:02x}{sps[2]:02x}{sps[3]:02x}"


def avcc_record(sps: bytes, pps: bytes) -> bytes:
    """AVCDecoderConfigurationRecord with one SPS and one PPS and 4-byte NAL lengths."""
    if len(sps) < 4 or nal_type(sps) != NAL_SPS:
        raise ValueError("avcC needs an SPS NAL unit")
    if not pps or nal_type(pps) != NAL_PPS:
        raise ValueError("avcC needs a PPS NAL unit")
    record = bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1])  # version, profile, compat, level, len-1=3, 1 SPS
    record += len(sps).to_bytes(2, "big") + sps
    record += bytes([1]) + len(pps).to_bytes(2, "big") + pps
    # profile_idc 100+ (High and up) needs chroma/bit-depth fields; x264 baseline/main do not.
    if sps[1] in (100, 110, 122, 144):
        record += bytes([0xFC | 1, 0xF8, 0xF8, 0])  # 4:2:0, 8-bit luma/chroma, no SPS extensions
    return record


class _BitReader:
    """MSB-first bit reader over an RBSP, with Exp-Golomb codes (H.264 §9.1)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def bit(self) -> int:
        byte = self._pos >> 3
        if byte >= len(self._data):
            raise ValueError("SPS ends early")
        value = (self._data[byte] >> (7 - (self._pos & 7))) & 1
        self._pos += 1
        return value

    def bits(self, n: int) -> int:
        value = 0
        for _ in range(n):
            value = (value << 1) | self.bit()
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("bad Exp-Golomb code in SPS")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def _rbsp(nal: bytes) -> bytes:
    """Drop emulation-prevention bytes (00 00 03 -> 00 00), H.264 §7.4.1."""
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


def sps_dimensions(sps: bytes) -> tuple[int, int]:
    """Display width and height in pixels from an SPS (H.264 §7.3.2.1.1 and §7.4.2.1.1 cropping)."""
    if len(sps) < 4 or nal_type(sps) != NAL_SPS:
        raise ValueError("not an SPS NAL unit")
    r = _BitReader(_rbsp(sps[1:]))
    profile_idc = r.bits(8)
    r.bits(16)  # constraint flags, level_idc
    r.ue()  # seq_parameter_set_id
    chroma_format_idc = 1
    if profile_idc in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
        chroma_format_idc = r.ue()
        if chroma_format_idc == 3:
            r.bit()  # separate_colour_plane_flag
        r.ue()  # bit_depth_luma_minus8
        r.ue()  # bit_depth_chroma_minus8
        r.bit()  # qpprime_y_zero_transform_bypass_flag
        if r.bit():  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format_idc != 3 else 12):
                if r.bit():  # scaling list present: skip its delta_scale values
                    last, nxt = 8, 8
                    for _ in range(16 if i < 6 else 64):
                        if nxt:
                            nxt = (last + r.se() + 256) % 256
                        last = nxt or last
    r.ue()  # log2_max_frame_num_minus4
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif poc_type == 1:
        r.bit()
        r.se()
        r.se()
        for _ in range(r.ue()):
            r.se()
    r.ue()  # max_num_ref_frames
    r.bit()  # gaps_in_frame_num_value_allowed_flag
    width_mbs = r.ue() + 1
    height_units = r.ue() + 1
    frame_mbs_only = r.bit()
    if not frame_mbs_only:
        r.bit()  # mb_adaptive_frame_field_flag
    r.bit()  # direct_8x8_inference_flag
    width = width_mbs * 16
    height = height_units * 16 * (2 - frame_mbs_only)
    if r.bit():  # frame_cropping_flag
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        crop_x = 2 if chroma_format_idc in (1, 2) else 1
        crop_y = (2 if chroma_format_idc == 1 else 1) * (2 - frame_mbs_only)
        width -= (left + right) * crop_x
        height -= (top + bottom) * crop_y
    return width, height
