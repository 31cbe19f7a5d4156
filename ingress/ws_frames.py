"""Whole WebSocket frames built once and written as they are to many viewers' sockets.

RFC 6455 §5.2: a frame is FIN/opcode, then the payload length in 7 bits, or 126 and a 16-bit length,
or 127 and a 64-bit length (network order), then the payload. A server never masks (§5.1), so the
same bytes are valid on every connection as long as no extension (permessage-deflate, RFC 7692)
was negotiated on it: the egress's viewer sockets refuse compression for that reason.
"""

from __future__ import annotations

import struct

FIN_BINARY = 0x82  # FIN bit + opcode 2 (binary)


def binary_frame(payload: bytes) -> bytes:
    """One final, unmasked binary frame holding ``payload``."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", FIN_BINARY, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", FIN_BINARY, 126, size)
    else:
        header = struct.pack("!BBQ", FIN_BINARY, 127, size)
    return header + payload
