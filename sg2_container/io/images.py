"""Image files: network output -> uint8 pixels, one PNG writer, the one image-grid writer.

Torch-free: `to_uint8` only calls tensor methods, so this module sits below models and data.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from sg2_container.io.atomic import write_atomically

_PIL_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def to_uint8(images) -> np.ndarray:
    """A [N, C, H, W] tensor in about [-1, 1] -> uint8 [N, H, W, C] (x * 127.5 + 128, clamped,
    truncated), the mapping the reference uses for its sample images."""
    scaled = (images.detach().float() * 127.5 + 128).clamp(0, 255)
    return scaled.permute(0, 2, 3, 1).cpu().numpy().astype(np.uint8)


def output_folder(path: str | os.PathLike) -> Path:
    """Creates an output folder (and its parents) before any work, so that one which cannot be
    made (no permission, a read-only or virtual file system) is a UserError naming it."""
    from sg2_container.errors import UserError

    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(f"no permission to write in {path}")
    except OSError as error:
        raise UserError(f"output folder {path}: cannot create or write in it "
                        f"({error.strerror or error})") from None
    return path


SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # Pillow's 16/32-bit gray modes


def sixteen_bit_to_8bit(image):
    """A 16-bit (or 32-bit integer) gray PIL image as 8-bit 'L', levels scaled by 255/65535 and
    rounded: Pillow's convert() would clip every value above 255 to white."""
    import PIL.Image

    samples = np.asarray(image).astype(np.int64).clip(0, 65535)
    return PIL.Image.fromarray(((samples * 255 + 32767) // 65535).astype(np.uint8))


def pil_image(array: np.ndarray):
    """One uint8 [H, W, C] image as a PIL image: C = 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA
    (every channel count a model may have, bounds.MAX_IMG_CHANNELS)."""
    import PIL.Image

    if array.ndim != 3 or array.shape[2] not in _PIL_MODES or array.dtype != np.uint8:
        raise ValueError(
            f"cannot save a {array.dtype} array of shape {list(array.shape)} as PNG "
            "(uint8 [H, W, C] with 1 to 4 channels allowed)"
        )
    channels = array.shape[2]
    pixels = array[:, :, 0] if channels == 1 else array
    return PIL.Image.fromarray(np.ascontiguousarray(pixels), _PIL_MODES[channels])


def png_bytes(array: np.ndarray) -> bytes:
    """One uint8 [H, W, C] image as PNG bytes, in the mode write_png writes."""
    import io

    buffer = io.BytesIO()
    pil_image(array).save(buffer, format="PNG")
    return buffer.getvalue()


def write_png(array: np.ndarray, path: str | os.PathLike) -> Path:
    """Writes one uint8 [H, W, C] image as a PNG (see pil_image), atomically; an OSError (a
    folder that cannot be written) is a UserError naming the file."""
    from sg2_container.errors import UserError

    image = pil_image(array)
    try:
        return write_atomically(path, lambda f: image.save(f, format="PNG"))
    except OSError as error:
        raise UserError(f"cannot write {path}: {error.strerror or error}") from None


def tile(arrays: np.ndarray, columns: int) -> np.ndarray:
    """uint8 [N, H, W, C] -> one [rows*H, columns*W, C] image, row-major, black padding."""
    if columns < 1:
        raise ValueError(f"columns: got {columns}; must be >= 1")
    count, height, width, channels = arrays.shape
    rows = -(-count // columns)
    grid = np.zeros([rows * height, columns * width, channels], dtype=np.uint8)
    for index, array in enumerate(arrays):
        row, col = divmod(index, columns)
        grid[row * height : (row + 1) * height, col * width : (col + 1) * width] = array
    return grid


def write_grid(arrays: np.ndarray, path: str | os.PathLike, columns: int | None = None) -> Path:
    """Tiles uint8 [N, H, W, C] images into one PNG at `path` (atomically); `columns` defaults
    to the smallest square that holds them all."""
    if columns is None:
        columns = max(math.ceil(math.sqrt(len(arrays))), 1)
    return write_png(tile(np.asarray(arrays), columns), path)
