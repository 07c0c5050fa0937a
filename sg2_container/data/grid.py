"""A PNG grid of sample images, to eyeball a dataset before paying for training."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from sg2_container.training.dataset import ImageFolderDataset


def sample_indices(num_images: int, num_samples: int) -> list[int]:
    """Evenly spread indices over the whole set (first and last included), deterministic."""
    count = min(num_images, num_samples)
    return sorted({int(i) for i in np.linspace(0, num_images - 1, count).round()})


def write_grid(dataset: ImageFolderDataset, path: Path, num_samples: int) -> int:
    """Tiles up to `num_samples` images of `dataset` into one PNG; returns how many."""
    indices = sample_indices(len(dataset), num_samples)
    channels, height, width = dataset.image_shape
    cols = math.ceil(math.sqrt(len(indices)))
    rows = math.ceil(len(indices) / cols)
    canvas = np.zeros([rows * height, cols * width, channels], dtype=np.uint8)
    for slot, index in enumerate(indices):
        image, _ = dataset[index]
        row, col = divmod(slot, cols)
        canvas[row * height : (row + 1) * height, col * width : (col + 1) * width] = (
            image.transpose(1, 2, 0)
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas[:, :, 0] if channels == 1 else canvas).save(path)
    return len(indices)
