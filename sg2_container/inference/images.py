"""Network output <-> image files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] in about [-1, 1] -> uint8 [N, H, W, C], the reference's mapping (x*127.5+128)."""
    images = (images.detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return images.permute(0, 2, 3, 1).cpu().numpy()


def save_image(array: np.ndarray, path: Path) -> None:
    """Writes one uint8 [H, W, C] image as PNG; 1 channel as grayscale, 3 as RGB."""
    import PIL.Image

    channels = array.shape[2]
    if channels == 1:
        image = PIL.Image.fromarray(array[:, :, 0], "L")
    elif channels == 3:
        image = PIL.Image.fromarray(array, "RGB")
    else:
        raise ValueError(f"cannot save an image with {channels} channels as PNG (1 or 3 allowed)")
    image.save(path)


def image_grid(arrays: np.ndarray, columns: int) -> np.ndarray:
    """uint8 [N, H, W, C] -> one [rows*H, columns*W, C] grid, row-major, black padding."""
    count, height, width, channels = arrays.shape
    rows = -(-count // columns)
    grid = np.zeros([rows * height, columns * width, channels], dtype=np.uint8)
    for idx, array in enumerate(arrays):
        row, col = divmod(idx, columns)
        grid[row * height:(row + 1) * height, col * width:(col + 1) * width] = array
    return grid
