"""Style mixing grids: each row seed rendered with the column seed's ws at the chosen layers
(the reference's style-mixing tool, with the same file names and grid layout)."""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from sg2_container.inference.generate import batch_size_for, seed_ws, synthesize
from sg2_container.inference.latents import check_style_layers, mix_styles
from sg2_container.inference.options import StyleMixOptions
from sg2_container.io.images import output_folder, write_png

log = logging.getLogger(__name__)


def style_mix_images(G, options: StyleMixOptions, device, stop: threading.Event | None = None,
                     ) -> Iterator[tuple[tuple[int, int], np.ndarray]]:
    """((row seed, col seed), uint8 image) one at a time: first (s, s), seed s alone, for every
    row and column seed, then every pair row by row; ws are made a batch at a time."""
    rows, cols = options.row_seeds, options.col_seeds
    layers = options.style_layers(num_ws=G.num_ws)
    check_style_layers(layers, G.num_ws)  # before any image: a bad --styles writes nothing
    seeds = list(dict.fromkeys(rows + cols))
    ws = seed_ws(G, seeds, truncation_psi=options.truncation_psi, class_idx=options.class_idx,
                 device=device)
    by_seed = dict(zip(seeds, ws))
    col_ws = torch.stack([by_seed[s] for s in cols])
    batch_size = batch_size_for(options, device)
    render = dict(noise_mode=options.noise_mode, batch_size=batch_size, stop=stop)
    yield from zip([(s, s) for s in seeds], synthesize(G, ws, **render))
    for row in rows:
        mixed = mix_styles(by_seed[row][None], col_ws, layers)[0]  # [C, L, D]
        yield from zip([(row, c) for c in cols], synthesize(G, mixed, **render))


class _Grid:
    """The style-mixing grid, filled cell by cell as images arrive."""

    def __init__(self, rows: list[int], cols: list[int]):
        self.rows, self.cols, self.array = rows, cols, None

    def put(self, key: tuple[int, int], image: np.ndarray) -> None:
        height, width, channels = image.shape
        if self.array is None:
            self.array = np.zeros([height * (len(self.rows) + 1),
                                   width * (len(self.cols) + 1), channels], np.uint8)
        row, col = key
        places = []
        if row == col:  # a seed alone: its column header and/or its row header
            places += [(0, j + 1) for j, c in enumerate(self.cols) if c == row]
            places += [(i + 1, 0) for i, r in enumerate(self.rows) if r == row]
        if row in self.rows and col in self.cols:  # a pair (for row == col: the same image)
            places += [(i + 1, j + 1) for i, r in enumerate(self.rows) if r == row
                       for j, c in enumerate(self.cols) if c == col]
        for i, j in places:
            self.array[i * height:(i + 1) * height, j * width:(j + 1) * width] = image


def style_mix_to_folder(G, options: StyleMixOptions, outdir: Path, device, *,
                        stop: threading.Event | None = None) -> list[Path]:
    """Writes {row}-{col}.png for every pair and every seed alone, and grid.png; each image is
    written as it is rendered, so memory holds the grid, not every image besides."""
    output_folder(outdir)
    rows, cols = options.row_seeds, options.col_seeds
    grid = _Grid(rows, cols)
    written: list[Path] = []
    for (row, col), image in style_mix_images(G, options, device, stop=stop):
        path = outdir / f"{row}-{col}.png"
        write_png(image, path)
        written.append(path)
        grid.put((row, col), image)
    written = list(dict.fromkeys(written))  # a pair (s, s) is also seed s alone
    grid_path = outdir / "grid.png"
    write_png(grid.array, grid_path)
    written.append(grid_path)
    log.info("wrote %d cell(s) and grid.png to %s", len(written) - 1, outdir)
    return written
