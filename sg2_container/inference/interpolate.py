"""Walks through W between key points (seeds and projected W vectors), written as a video and a
contact sheet: the "show me how this face turns into that one" designers ask for."""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from sg2_container.errors import UserError
from sg2_container.inference.generate import batch_size_for, class_labels, seed_ws, synthesize
from sg2_container.inference.latents import load_ws_file
from sg2_container.inference.options import InterpolateOptions, check_walk_length
from sg2_container.inference.progress import EVERY_S, Progress
from sg2_container.inference.video import write_videos
from sg2_container.io.images import output_folder, write_grid

log = logging.getLogger(__name__)

# Below this angle (radians) slerp and lerp agree to float precision; lerp avoids 0/0.
_SLERP_MIN_ANGLE = 1e-4


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation along the last axis: the angle between a and b is covered at a
    constant rate and the norm goes linearly from |a| to |b|. t: [T] -> [T, *a.shape]."""
    return slerp_rows(a, b, t.reshape(-1, *([1] * a.ndim)))


def slerp_rows(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """slerp with t broadcast against a and b as given (e.g. a, b [N, D] and t [N, 1]: one
    position per row)."""
    norm_a, norm_b = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    unit_a, unit_b = a / norm_a.clamp_min(1e-12), b / norm_b.clamp_min(1e-12)
    cos = (unit_a * unit_b).sum(-1, keepdim=True).clamp(-1, 1)
    angle = torch.arccos(cos)
    sin = torch.sin(angle)
    small = angle < _SLERP_MIN_ANGLE
    safe_sin = torch.where(small, torch.ones_like(sin), sin)
    weight_a = torch.where(small, 1 - t, torch.sin((1 - t) * angle) / safe_sin)
    weight_b = torch.where(small, t, torch.sin(t * angle) / safe_sin)
    direction = weight_a * unit_a + weight_b * unit_b
    return direction * torch.lerp(norm_a, norm_b, t)


def walk_chunks(keys: Iterable[torch.Tensor], frames: int, kind: str, loop: bool,
                chunk: int = 64) -> Iterator[torch.Tensor]:
    """The walk's ws in order, at most `chunk` frames at a time, from key points
    [num_ws, w_dim] given one by one: memory stays that of a chunk however long the walk."""
    first = previous = None

    def segment(a: torch.Tensor, b: torch.Tensor) -> Iterator[torch.Tensor]:
        t_all = torch.arange(frames, dtype=a.dtype) / frames
        for begin in range(0, frames, chunk):
            t = t_all[begin:begin + chunk]
            if kind == "slerp":
                yield slerp(a, b, t)
            else:
                yield a[None] + (b - a)[None] * t.reshape(-1, 1, 1)

    for key in keys:
        if previous is None:
            first = key
        else:
            yield from segment(previous, key)
        previous = key
    if previous is None:
        return
    if loop:
        yield from segment(previous, first)
    else:
        yield previous[None]


def walk(keys: torch.Tensor, frames: int, kind: str, loop: bool) -> torch.Tensor:
    """ws for every frame [T, num_ws, w_dim] from key points [K, num_ws, w_dim].

    Each segment has `frames` frames starting at its first key; without `loop` the last key
    ends the walk (K-1 segments + 1 frame), with `loop` a segment back to the first key closes
    it (K segments), so the video repeats seamlessly.
    """
    return torch.cat(list(walk_chunks(iter(keys), frames, kind, loop)))


def key_points(G, options: InterpolateOptions, device, base: Path | None = None,
               chunk: int = 256) -> tuple[int, Iterator[torch.Tensor]]:
    """(K, the key points [num_ws, w_dim] one by one): the seeds' ws (truncated, mapped
    `chunk` seeds at a time), then every W vector of each W file (relative file names are taken
    from `base` when given). The files are read now, so a bad one fails before any rendering."""
    seeds = options.seed_values
    files = [torch.from_numpy(load_ws_file(Path(name) if base is None else base / name,
                                           G.num_ws, G.w_dim)) for name in options.projected_w]
    count = len(seeds) + sum(len(f) for f in files)
    if count < 2:
        raise UserError(f"interpolate: {count} key point; a walk needs at least 2 (seeds "
                        "and/or W vectors)")
    if seeds:
        class_labels(G, options.class_idx, 0, device)  # a missing class fails now

    def keys() -> Iterator[torch.Tensor]:
        for begin in range(0, len(seeds), chunk):
            yield from seed_ws(G, seeds[begin:begin + chunk],
                               truncation_psi=options.truncation_psi,
                               class_idx=options.class_idx, device=device).cpu().float()
        for ws in files:
            yield from ws.float()

    return count, keys()


def sheet_indices(total: int, count: int) -> list[int]:
    """`count` frame indices spread evenly from the first frame to the last."""
    count = min(count, total)
    if count == 1:
        return [0]
    return sorted({round(i * (total - 1) / (count - 1)) for i in range(count)})


def interpolate_to_folder(G, options: InterpolateOptions, outdir: Path, device, *,
                          stop: threading.Event | None = None, base: Path | None = None,
                          name: str = "walk", progress_every_s: float = EVERY_S) -> list[Path]:
    """Writes walk.mp4 and/or walk.gif and walk-sheet.png; returns their paths. A progress
    line is logged every `progress_every_s` seconds.

    The frames stream from the renderer to the writers: only the contact sheet's frames are
    kept (and, for a GIF, what its writer holds), so the walk's length does not set the memory.
    """
    count, keys = key_points(G, options, device, base)
    total = check_walk_length(count, options.frames, options.loop, "key points")
    log.info("interpolate: %d key points, %d frames (%s%s)", count, total, options.kind,
             ", loop" if options.loop else "")
    output_folder(outdir)
    batch_size = batch_size_for(options, device)
    on_sheet = set(sheet_indices(total, options.sheet_frames))
    sheet_frames: list[np.ndarray] = []
    formats = list(dict.fromkeys(options.formats))
    progress = Progress(total, "frame", f"interpolate -> {outdir}", progress_every_s)

    def frames() -> Iterator[np.ndarray]:
        index = 0
        for ws in walk_chunks(keys, options.frames, options.kind, options.loop):
            for frame in synthesize(G, ws, noise_mode=options.noise_mode, batch_size=batch_size,
                                    stop=stop):
                if index in on_sheet:
                    sheet_frames.append(frame)
                index += 1
                progress.update(index)
                yield frame

    written = write_videos(frames(), [outdir / f"{name}.{fmt}" for fmt in formats],
                           fps=options.fps)
    sheet = outdir / f"{name}-sheet.png"
    write_grid(np.stack(sheet_frames), sheet)
    written.append(sheet)
    log.info("wrote %s", ", ".join(str(p) for p in written))
    return written
