"""A procedural training set (coloured shapes on gradients) for demos and tests: no downloads.

Each image is a pure function of (seed, index), so the set is identical on every machine.
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from sg2_container.options.schema import fail
from sg2_container.options.sizes import MAX_RESOLUTION
from sg2_container.options.training import MIN_TRAINING_RESOLUTION

SHAPES = ("circle", "square", "triangle")
MIN_RESOLUTION = 4


def check_resolution(resolution: int, layout: str) -> None:
    """--resolution of `sg2 dataset synthetic`: uploads may have any size up to the largest
    training image side; a training zip only a size training reads (a power of two)."""
    if layout == "zip":
        power_of_two = resolution > 0 and not resolution & (resolution - 1)
        if not (power_of_two and MIN_TRAINING_RESOLUTION <= resolution <= MAX_RESOLUTION):
            raise fail("resolution", resolution,
                       f"with --format zip, a power of two from {MIN_TRAINING_RESOLUTION} to "
                       f"{MAX_RESOLUTION}, a size training reads")
    elif not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise fail("resolution", resolution,
                   f"an integer from {MIN_RESOLUTION} to {MAX_RESOLUTION}")


def synthetic_image(index: int, resolution: int, seed: int = 0) -> tuple[Image.Image, int]:
    """One RGB image and its class (the shape drawn)."""
    rnd = np.random.RandomState([seed, index])
    y, x = np.mgrid[0:resolution, 0:resolution] / max(resolution - 1, 1)
    top, bottom = rnd.randint(0, 256, size=(2, 3))
    background = (top[None, None] * (1 - y[..., None]) + bottom[None, None] * y[..., None])
    image = Image.fromarray(background.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    label = int(rnd.randint(len(SHAPES)))
    size = rnd.uniform(0.3, 0.7) * resolution
    cx, cy = rnd.uniform(size / 2, resolution - size / 2, size=2)
    box = [cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2]
    colour = tuple(int(v) for v in rnd.randint(0, 256, size=3))
    if SHAPES[label] == "circle":
        draw.ellipse(box, fill=colour)
    elif SHAPES[label] == "square":
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon([(cx, box[1]), (box[0], box[3]), (box[2], box[3])], fill=colour)
    return image, label


def write_synthetic_dataset(path: Path, count: int, resolution: int, seed: int = 0,
                            labels: bool = True) -> Path:
    """Writes the training zip layout (PNG files in numbered folders + dataset.json)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = []
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for idx in range(count):
            image, label = synthetic_image(idx, resolution, seed)
            name = f"{idx // 1000:05d}/img{idx:08d}.png"
            buffer = io.BytesIO()
            image.save(buffer, format="png", compress_level=0)
            archive.writestr(name, buffer.getvalue())
            entries.append([name, label])
        archive.writestr("dataset.json", json.dumps({"labels": entries if labels else None}))
    return path


def write_synthetic_folder(path: Path, count: int, resolution: int, seed: int = 0) -> Path:
    """Raw images for `sg2 prepare`: JPEGs in one sub-folder per shape (class labels from
    folder names), sizes varying around `resolution` as uploads do."""
    path = Path(path)
    for idx in range(count):
        rnd = np.random.RandomState([seed, idx, 1])
        size = int(resolution * rnd.uniform(1.0, 2.0))
        image, label = synthetic_image(idx, size, seed)
        folder = path / SHAPES[label]
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"upload{idx:05d}.jpg", quality=92)
    return path
