"""Images from a generator for a list of seeds (the reference's generate tool, batched)."""
from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from sg2_container.errors import UserError
from sg2_container.io.images import to_uint8, write_png
from sg2_container.inference.latents import z_for_seeds

log = logging.getLogger(__name__)

NOISE_MODES = ("const", "random", "none")
# float32: the reference's numbers. bfloat16 (opt-in): convs and matmuls under bf16 autocast,
# about 1.8x the images/s on a CPU with AVX512-BF16 (paper256, batch 1), at a measured cost of
# 0.04 mean / 0.2 max absolute difference on images of range +-5 (docs/benchmarks.md).
PRECISIONS = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True, kw_only=True)
class GenerateOptions:
    """What to generate; validated here, once."""

    seeds: tuple[int, ...]
    truncation_psi: float = 1.0
    noise_mode: str = "const"
    class_idx: int | None = None
    batch_size: int = 8
    precision: str = "float32"

    def __post_init__(self):
        if not self.seeds:
            raise UserError("seeds: at least one seed is needed")
        psi = self.truncation_psi
        if isinstance(psi, bool) or not isinstance(psi, (int, float)) or not math.isfinite(psi):
            raise UserError(f"truncation_psi (--trunc) must be a finite number, got {psi!r}")
        if self.noise_mode not in NOISE_MODES:
            raise UserError(f"noise_mode {self.noise_mode!r} is not one of {', '.join(NOISE_MODES)}")
        if self.batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.precision not in PRECISIONS:
            raise UserError(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")


def class_labels(G, class_idx: int | None, count: int, device) -> torch.Tensor:
    """One-hot labels for a conditional G; a clear error when the class is missing or wrong."""
    labels = torch.zeros([count, G.c_dim], device=device)
    if G.c_dim == 0:
        if class_idx is not None:
            log.warning("--class=%d ignored: the network is unconditional", class_idx)
        return labels
    if class_idx is None:
        raise UserError(f"the network is conditional ({G.c_dim} classes): pass --class 0..{G.c_dim - 1}")
    if not 0 <= class_idx < G.c_dim:
        raise UserError(f"--class={class_idx} is out of range: the network has classes 0..{G.c_dim - 1}")
    labels[:, class_idx] = 1
    return labels


@torch.inference_mode()  # no autograd bookkeeping at all: generation never needs gradients
def generate(G, options: GenerateOptions, device) -> Iterator[tuple[int, np.ndarray]]:
    """Yields (seed, uint8 [H, W, C]) in seed order, rendering `batch_size` seeds at a time."""
    seeds = list(options.seeds)
    for start in range(0, len(seeds), options.batch_size):
        batch_seeds = seeds[start:start + options.batch_size]
        z = z_for_seeds(batch_seeds, G.z_dim)
        z = torch.from_numpy(z).to(device=device, dtype=torch.float32)
        c = class_labels(G, options.class_idx, len(batch_seeds), device)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16,
                            enabled=options.precision == "bfloat16"):
            images = G(z, c, truncation_psi=options.truncation_psi, noise_mode=options.noise_mode)
        yield from zip(batch_seeds, to_uint8(images.float()))


def generate_to_folder(G, options: GenerateOptions, outdir: Path, device) -> list[Path]:
    """Writes seed{seed:04d}.png files (the reference's names); returns their paths."""
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for seed, image in generate(G, options, device):
        path = outdir / f"seed{seed:04d}.png"
        write_png(image, path)
        written.append(path)
        log.info("wrote %s", path)
    return written
