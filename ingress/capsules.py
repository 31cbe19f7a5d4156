"""HTTP capsules on the WebTransport CONNECT stream (docs/media-and-webtransport.md §1.7).

aioquic has no capsule codec. We need CLOSE_WEBTRANSPORT_SESSION (0x2843: u32 code + UTF-8 reason,
<= 1024 bytes) both ways, and must skip unknown types (Chrome sends a GREASE capsule on connect).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

CLOSE_WEBTRANSPORT_SESSION = 0x2843
MAX_CLOSE_REASON = 1024  # bytes
# WT application error codes live inside the HTTP/3 code space (docs/media-and-webtransport.md §1.7)
WT_ERROR_FIRST = 0x52E4A40FA8DB
WT_SESSION_GONE = 0x170D7B68


def wt_error_code(app_code: int) -> int:
    """Map a WebTransport application error code (0..2^32-1) to the HTTP/3 code on the wire."""
    return WT_ERROR_FIRST + app_code + app_code // 0x1E


def encode_varint(value: int) -> bytes:
    """QUIC variable-length integer (RFC 9000 §16)."""
    if value < 0x40:
        return bytes((value,))
    if value < 0x4000:
        return struct.pack(">H", value | 0x4000)
    if value < 0x40000000:
        return struct.pack(">I", value | 0x80000000)
    if value < 0x4000000000000000:
        return struct.pack(">Q", value | 0xC000000000000000)
    raise ValueError(f"varint {value} too large")


def decode_varint(buf: bytes | bytearray, pos: int) -> tuple[int, int] | None:
    """Return (value, new position), or None when ``buf`` ends inside the integer."""
    if pos >= len(buf):
        return None
    first = buf[pos]
    size = 1 << (first >> 6)
    if pos + size > len(buf):
        return None
    value = first & 0x3F
    for b in buf[pos + 1:pos + size]:
        value = (value << 8) | b
    return value, pos + size


def close_capsule(code: int, reason: str) -> bytes:
    raw = reason.encode("utf-8")[:MAX_CLOSE_REASON]
    # never cut a UTF-8 sequence in half
    raw = raw.decode("utf-8", errors="ignore").encode("utf-8")
    value = struct.pack(">I", code) + raw
    return encode_varint(CLOSE_WEBTRANSPORT_SESSION) + encode_varint(len(value)) + value


@dataclass(frozen=True, slots=True)
class SessionClosed:
    code: int
    reason: str


class CapsuleReader:
    """Reassembles capsules from CONNECT-stream data; yields only the ones we understand."""

    def __init__(self, max_capsule: int = 64 * 1024) -> None:
        self._buf = bytearray()
        self._max = max_capsule

    def feed(self, data: bytes) -> list[SessionClosed]:
        self._buf += data
        out: list[SessionClosed] = []
        while True:
            head = decode_varint(self._buf, 0)
            if head is None:
                break
            ctype, pos = head
            length_info = decode_varint(self._buf, pos)
            if length_info is None:
                break
            length, pos = length_info
            if length > self._max:
                raise ValueError(f"capsule of {length} bytes exceeds {self._max}")
            if len(self._buf) - pos < length:
                break
            value = bytes(self._buf[pos:pos + length])
            del self._buf[:pos + length]
            if ctype == CLOSE_WEBTRANSPORT_SESSION and len(value) >= 4:
                (code,) = struct.unpack(">I", value[:4])
                out.append(SessionClosed(code, value[4:].decode("utf-8", errors="replace")))
            # anything else (GREASE, DRAIN_WEBTRANSPORT_SESSION, ...) is ignored
        return out
