"""Images from a generator for a list of seeds or W vectors (the reference's generate tool,
batched). Each image depends only on its own seed or W; with another --batch its pixels may move
by one uint8 level where float32 rounding lands on a boundary (BLAS picks its kernels by row
count). The endpoint, which promises a request the same bytes in any batch, pins that down
(docs/serving.md).
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from sg2_container.errors import Stopped, UserError
from sg2_container.inference.latents import load_ws_file, save_ws_file, ws_for_seeds
from sg2_container.inference.options import (  # noqa: F401 (NOISE_MODES: re-export)
    NOISE_MODES, GenerateOptions, check_grid_size)
from sg2_container.inference.progress import EVERY_S, Progress
from sg2_container.io.images import output_folder, to_uint8, write_grid, write_png

log = logging.getLogger(__name__)


def batch_size_for(options, device: torch.device) -> int:
    """options.batch_size, else 8, except 1 on a CPU with random noise (docs/benchmarks.md).

    On a CPU a batch with const or no noise runs its high-resolution blocks one sample at a
    time, so 8 is as fast or faster (paper256: 6.1 against 5.0-5.3 img/s) for little memory.
    Random noise is one draw for the whole batch, so the batch stays whole: at 1024 px batch 8
    was 1.4-1.6x slower per image than batch 1 and peaked at 5.7 GiB against 1.05 GiB.
    """
    if options.batch_size:
        return options.batch_size
    if torch.device(device).type == "cpu" and options.noise_mode == "random":
        return 1
    return 8


def class_labels(G, class_idx: int | None, count: int, device) -> torch.Tensor:
    """One-hot labels for a conditional G; a clear error when the class is missing or wrong."""
    labels = torch.zeros([count, G.c_dim], device=device)
    if G.c_dim == 0:
        if class_idx is not None:
            log.warning("--class=%d ignored: the network is unconditional", class_idx)
        return labels
    if class_idx is None:
        raise UserError(f"the network is conditional ({G.c_dim} classes): pass --class "
                        f"0..{G.c_dim - 1} (class_idx in a batch job's request)")
    if not 0 <= class_idx < G.c_dim:
        raise UserError(f"--class={class_idx} is out of range (class_idx in a batch job's "
                        f"request): the network has classes 0..{G.c_dim - 1}")
    labels[:, class_idx] = 1
    return labels


def check_stop(stop: threading.Event | None, done: str) -> None:
    if stop is not None and stop.is_set():
        raise Stopped(done)


def seed_ws(G, seeds: Sequence[int], *, truncation_psi: float, class_idx: int | None,
            device) -> torch.Tensor:
    """ws [N, num_ws, w_dim] for the seeds (labels for a conditional G)."""
    c = class_labels(G, class_idx, len(seeds), device)
    return ws_for_seeds(G, seeds, truncation_psi=truncation_psi, c=c, device=device)


@torch.inference_mode()  # no autograd bookkeeping at all: rendering never needs gradients
def synthesize(G, ws: torch.Tensor, *, noise_mode: str, batch_size: int,
               stop: threading.Event | None = None, precision: str = "float32",
               ) -> Iterator[np.ndarray]:
    """uint8 [H, W, C] images for ws [N, num_ws, w_dim], `batch_size` at a time; a set stop
    event ends it between batches (errors.Stopped). precision: see options.PRECISIONS."""
    device = next(G.parameters()).device
    for start in range(0, len(ws), batch_size):
        check_stop(stop, f"after {start} of {len(ws)} images")
        batch = ws[start:start + batch_size].to(device=device, dtype=torch.float32)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16"):
            images = G.synthesis(batch, noise_mode=noise_mode)
        yield from to_uint8(images.float())


@torch.no_grad()
def generate(G, options: GenerateOptions, device, stop: threading.Event | None = None,
             ) -> Iterator[tuple[int, np.ndarray, torch.Tensor]]:
    """Yields (seed, uint8 [H, W, C], ws [num_ws, w_dim]) in seed order."""
    seeds = options.seed_values
    batch_size = batch_size_for(options, device)
    for start in range(0, len(seeds), batch_size):
        check_stop(stop, f"after {start} of {len(seeds)} seeds")
        batch_seeds = seeds[start:start + batch_size]
        ws = seed_ws(G, batch_seeds, truncation_psi=options.truncation_psi,
                     class_idx=options.class_idx, device=device)
        images = synthesize(G, ws, noise_mode=options.noise_mode, batch_size=len(batch_seeds),
                            precision=options.precision)
        yield from zip(batch_seeds, images, ws)


def generate_to_folder(G, options: GenerateOptions, outdir: Path, device, *,
                       stop: threading.Event | None = None,
                       progress_every_s: float = EVERY_S) -> list[Path]:
    """Writes seed{seed:04d}.png (or proj{idx:02d}.png for --projected-w, the reference's
    names), plus seed{seed:04d}.npz with --save-w and grid.png with --grid; returns the paths.
    A progress line is logged every `progress_every_s` seconds."""
    output_folder(outdir)
    written: list[Path] = []
    images: list[np.ndarray] = []  # kept for grid.png only
    if options.projected_w is not None:
        ws = torch.from_numpy(load_ws_file(options.projected_w, G.num_ws, G.w_dim))
        check_grid_size(len(ws), options.grid, "W vectors")
        if options.class_idx is not None:
            log.warning("--class ignored with --projected-w: the W vectors already carry it")
        log.info("rendering the %d W vector(s) of %s (seeds ignored)", len(ws), options.projected_w)
        batch_size = batch_size_for(options, device)
        progress = Progress(len(ws), "image", f"generate -> {outdir}", progress_every_s)
        for idx, image in enumerate(synthesize(G, ws, noise_mode=options.noise_mode,
                                               batch_size=batch_size, stop=stop,
                                               precision=options.precision)):
            path = outdir / f"proj{idx:02d}.png"
            write_png(image, path)
            written.append(path)
            progress.update(idx + 1)
            if options.grid:
                images.append(image)
    else:
        progress = Progress(len(options.seed_values), "image", f"generate -> {outdir}",
                            progress_every_s)
        for count, (seed, image, ws) in enumerate(generate(G, options, device, stop=stop), 1):
            path = outdir / f"seed{seed:04d}.png"
            write_png(image, path)
            written.append(path)
            progress.update(count)
            if options.grid:
                images.append(image)
            if options.save_w:
                w_path = outdir / f"seed{seed:04d}.npz"
                save_ws_file(w_path, ws[None], seed=np.int64(seed))
                written.append(w_path)
    written = list(dict.fromkeys(written))  # a repeated seed writes the same file again
    log.info("wrote %d image(s) to %s", sum(p.suffix == ".png" for p in written), outdir)
    if options.grid:
        path = outdir / "grid.png"
        write_grid(np.stack(images), path)
        written.append(path)
    return written
