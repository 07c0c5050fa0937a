"""A minimal PNG writer for the training zip: 8-bit gray or RGB, stored (uncompressed) deflate.

Like Pillow's compress_level=0 but without per-row filters, which cost milliseconds per image
to choose and buy nothing when nothing is compressed; unfiltered rows also decode faster when
training reads them. Output depends only on the pixels.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPES = {1: 0, 3: 2}  # channels -> PNG colour type (0 gray, 2 RGB)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(pixels: np.ndarray) -> bytes:
    """[H, W] or [H, W, C] uint8 (C 1 or 3) -> PNG bytes."""
    if pixels.dtype != np.uint8:
        raise ValueError(f"encode_png: dtype {pixels.dtype}, expected uint8")
    if pixels.ndim == 2:
        pixels = pixels[:, :, np.newaxis]
    height, width, channels = pixels.shape
    if channels not in _COLOR_TYPES:
        raise ValueError(f"encode_png: {channels} channels, expected 1 or 3")
    rows = np.empty((height, 1 + width * channels), dtype=np.uint8)
    rows[:, 0] = 0  # filter type None
    rows[:, 1:] = pixels.reshape(height, width * channels)
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOR_TYPES[channels], 0, 0, 0)
    return b"".join(
        [
            _SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(rows.tobytes(), 0)),
            _chunk(b"IEND", b""),
        ]
    )
