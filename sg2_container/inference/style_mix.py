"""Style mixing grids: each row seed rendered with the column seed's ws at the chosen layers
(the reference's style-mixing tool, with the same file names and grid layout)."""
from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import torch

from sg2_container.inference.generate import batch_size_for, seed_ws, synthesize
from sg2_container.inference.latents import mix_styles
from sg2_container.inference.options import StyleMixOptions
from sg2_container.io.images import write_png

log = logging.getLogger(__name__)


def style_mix_images(G, options: StyleMixOptions, device, stop: threading.Event | None = None,
                     ) -> dict[tuple[int, int], np.ndarray]:
    """{(row seed, col seed): uint8 image}; (s, s) is seed s alone, for every row and column seed."""
    rows, cols = options.row_seeds, options.col_seeds
    seeds = list(dict.fromkeys(rows + cols))
    ws = seed_ws(G, seeds, truncation_psi=options.truncation_psi, class_idx=options.class_idx,
                 device=device)
    by_seed = dict(zip(seeds, ws))
    row_ws = torch.stack([by_seed[s] for s in rows])
    col_ws = torch.stack([by_seed[s] for s in cols])
    mixed = mix_styles(row_ws, col_ws, options.style_layers)  # [R, C, num_ws, w_dim]
    keys = [(s, s) for s in seeds] + [(r, c) for r in rows for c in cols]
    all_ws = torch.cat([ws, mixed.reshape(-1, *mixed.shape[2:])])
    batch_size = batch_size_for(options, device)
    images = synthesize(G, all_ws, noise_mode=options.noise_mode, batch_size=batch_size, stop=stop)
    return dict(zip(keys, images))


def style_mix_grid(images: dict[tuple[int, int], np.ndarray], rows: list[int],
                   cols: list[int]) -> np.ndarray:
    """(rows + 1) x (cols + 1) cells: black top-left corner, the column seeds along the top,
    the row seeds down the left, each mix at (row, col)."""
    height, width, channels = next(iter(images.values())).shape
    grid = np.zeros([height * (len(rows) + 1), width * (len(cols) + 1), channels], np.uint8)

    def put(i: int, j: int, image: np.ndarray) -> None:
        grid[i * height:(i + 1) * height, j * width:(j + 1) * width] = image

    for j, col in enumerate(cols):
        put(0, j + 1, images[(col, col)])
    for i, row in enumerate(rows):
        put(i + 1, 0, images[(row, row)])
        for j, col in enumerate(cols):
            put(i + 1, j + 1, images[(row, col)])
    return grid


def style_mix_to_folder(G, options: StyleMixOptions, outdir: Path, device, *,
                        stop: threading.Event | None = None) -> list[Path]:
    """Writes {row}-{col}.png for every pair and every seed alone, and grid.png."""
    images = style_mix_images(G, options, device, stop=stop)
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for (row, col), image in images.items():
        path = outdir / f"{row}-{col}.png"
        write_png(image, path)
        written.append(path)
    grid_path = outdir / "grid.png"
    write_png(style_mix_grid(images, options.row_seeds, options.col_seeds), grid_path)
    written.append(grid_path)
    log.info("wrote %d cell(s) and grid.png to %s", len(images), outdir)
    return written
