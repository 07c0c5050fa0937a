"""Walks through W between key points (seeds and projected W vectors), written as a video and a
contact sheet: the "show me how this face turns into that one" designers ask for."""
from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import torch

from sg2_container.inference.generate import batch_size_for, seed_ws, synthesize
from sg2_container.inference.latents import load_ws_file
from sg2_container.inference.options import InterpolateOptions
from sg2_container.inference.video import write_video
from sg2_container.io.images import write_grid

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


def walk(keys: torch.Tensor, frames: int, kind: str, loop: bool) -> torch.Tensor:
    """ws for every frame [T, num_ws, w_dim] from key points [K, num_ws, w_dim].

    Each segment has `frames` frames starting at its first key; without `loop` the last key
    ends the walk (K-1 segments + 1 frame), with `loop` a segment back to the first key closes
    it (K segments), so the video repeats seamlessly.
    """
    ends = torch.cat([keys[1:], keys[:1]]) if loop else keys[1:]
    t = torch.arange(frames, dtype=keys.dtype) / frames
    parts = []
    for a, b in zip(keys, ends):
        if kind == "slerp":
            parts.append(slerp(a, b, t))
        else:
            parts.append(a[None] + (b - a)[None] * t.reshape(-1, 1, 1))
    if not loop:
        parts.append(keys[-1:])
    return torch.cat(parts)


def key_points(G, options: InterpolateOptions, device, base: Path | None = None) -> torch.Tensor:
    """[K, num_ws, w_dim]: the seeds' ws (truncated), then every W vector of each W file
    (relative file names are taken from `base` when given)."""
    parts = []
    if options.seeds:
        parts.append(seed_ws(G, options.seed_values, truncation_psi=options.truncation_psi,
                             class_idx=options.class_idx, device=device).cpu())
    for name in options.projected_w:
        path = Path(name) if base is None else base / name
        parts.append(torch.from_numpy(load_ws_file(path, G.num_ws, G.w_dim)))
    keys = torch.cat(parts).float()
    if len(keys) < 2:
        from sg2_container.errors import UserError

        raise UserError(f"interpolate: {len(keys)} key point; a walk needs at least 2 (seeds "
                        "and/or W vectors)")
    return keys


def sheet_indices(total: int, count: int) -> list[int]:
    """`count` frame indices spread evenly from the first frame to the last."""
    count = min(count, total)
    if count == 1:
        return [0]
    return sorted({round(i * (total - 1) / (count - 1)) for i in range(count)})


def interpolate_to_folder(G, options: InterpolateOptions, outdir: Path, device, *,
                          stop: threading.Event | None = None, base: Path | None = None,
                          name: str = "walk") -> list[Path]:
    """Writes walk.mp4 and/or walk.gif and walk-sheet.png; returns their paths."""
    keys = key_points(G, options, device, base)
    ws = walk(keys, options.frames, options.kind, options.loop)
    log.info("interpolate: %d key points, %d frames (%s%s)", len(keys), len(ws), options.kind,
             ", loop" if options.loop else "")
    batch_size = batch_size_for(options, device)
    frames = list(synthesize(G, ws, noise_mode=options.noise_mode, batch_size=batch_size,
                             stop=stop))
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in dict.fromkeys(options.formats):
        written.append(write_video(frames, outdir / f"{name}.{fmt}", fps=options.fps))
    chosen = np.stack([frames[i] for i in sheet_indices(len(frames), options.sheet_frames)])
    sheet = outdir / f"{name}-sheet.png"
    write_grid(chosen, sheet)
    written.append(sheet)
    log.info("wrote %s", ", ".join(str(p) for p in written))
    return written
