"""A PNG grid of sample images, to eyeball a dataset before paying for training."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sg2_container.data.dataset import ImageFolderDataset
from sg2_container.io.images import write_grid


def sample_indices(num_images: int, num_samples: int) -> list[int]:
    """Evenly spread indices over the whole set (first and last included), deterministic."""
    count = min(num_images, num_samples)
    return sorted({int(i) for i in np.linspace(0, num_images - 1, count).round()})


def write_dataset_grid(dataset: ImageFolderDataset, path: Path, num_samples: int) -> int:
    """Tiles up to `num_samples` images of `dataset` into one PNG; returns how many."""
    indices = sample_indices(len(dataset), num_samples)
    images = np.stack([dataset[index][0].transpose(1, 2, 0) for index in indices])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_grid(images, path)
    return len(indices)
