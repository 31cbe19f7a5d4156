"""A capture time burned into a picture and read back after coding and scaling (sans-I/O, numpy).

`wtpulsar publish --test-pattern` draws the frame's capture time (ms since the epoch, 48 bits) as
two rows of 24 black/white blocks across the top of the luma plane; tests of HLS, DVR and `wtpulsar
record` read it back from the decoded frames to check that the picture played is the moment asked
for. Blocks are big (1/24 of the width, 1/16 of the height) so lossy H.264 and a downscale to 360p
keep them readable; each block is sampled in its middle half, away from blurred edges.
"""

from __future__ import annotations

import numpy as np

BITS = 48
PER_ROW = 24
ROWS = BITS // PER_ROW
ROW_HEIGHT_DIV = 16  # a block is height/16 tall
BLACK, WHITE = 16, 235  # video-range luma


def burn(luma: np.ndarray, capture_ms: int) -> None:
    """Draw ``capture_ms`` (0 <= value < 2**48) into the top of ``luma`` (H x W uint8), in place."""
    if not 0 <= capture_ms < 1 << BITS:
        raise ValueError(f"capture time {capture_ms} ms does not fit in {BITS} bits")
    height, width = luma.shape
    block_w, block_h = width / PER_ROW, height / ROW_HEIGHT_DIV
    for bit in range(BITS):
        row, col = divmod(bit, PER_ROW)
        y0, y1 = round(row * block_h), round((row + 1) * block_h)
        x0, x1 = round(col * block_w), round((col + 1) * block_w)
        luma[y0:y1, x0:x1] = WHITE if (capture_ms >> bit) & 1 else BLACK


def read(luma: np.ndarray) -> int:
    """The capture time ``burn`` drew, from a decoded luma plane of any size."""
    height, width = luma.shape
    block_w, block_h = width / PER_ROW, height / ROW_HEIGHT_DIV
    value = 0
    for bit in range(BITS):
        row, col = divmod(bit, PER_ROW)
        y0, y1 = int((row + 0.25) * block_h), int((row + 0.75) * block_h)
        x0, x1 = int((col + 0.25) * block_w), int((col + 0.75) * block_w)
        if luma[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)].mean() > (BLACK + WHITE) / 2:
            value |= 1 << bit
    return value
