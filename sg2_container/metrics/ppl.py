"""Perceptual path length: how far (by the LPIPS VGG16 distance) the image moves for a tiny
step eps along an interpolation path between two latents, divided by eps squared.

Each sample draws two latents and a position t on the path between them (uniform in [0, 1)
for `full`, the start t = 0 for `end`), renders the images at t and t + eps with constant
noise inputs, and compares them; formulas.path_length turns the per-sample values into the
metric. Paths in Z follow the great circle (the mapping ignores z's norm), paths in W the
straight line, applied to every layer's w. The samples depend only on the seed, so a value
does not change with the batch size or the number of processes.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from sg2_container.errors import UserError
from sg2_container.inference.interpolate import slerp_rows
from sg2_container.metrics.features import Workers, progress_bar
from sg2_container.options.metric_specs import PPL_NAMES, VGG16_CHANNEL, PathLength

PURPOSE = f"perceptual path length ({', '.join(PPL_NAMES)})"
DISTANCE_SIDE = 256  # images are box-downsampled by resolution // 256 before the distance
MIN_COMPARED_SIDE = 16  # VGG16's four poolings leave 1 px for its last stage
OTHER_WAYS = (f"the hyperparameter 'vgg16' (training), a training job input channel named "
              f"'{VGG16_CHANNEL}'")


def load_distance(vgg16: str | None, device, *, allow_random: bool = False,
                  rehearsal_flag: str | None = None):
    """The LPIPS VGG16 network for PPL and a record of where its weights came from (the file's
    name, or 'random (rehearsal)'); a UserError naming --vgg16 and $SG2_VGG16_WEIGHTS when
    there are no weights and no rehearsal was asked for."""
    from sg2_container.inference.lpips_vgg import load_distance_network

    net, source = load_distance_network(
        vgg16, allow_random=allow_random, device=device, purpose=PURPOSE,
        rehearsal_flag=rehearsal_flag, other_ways=OTHER_WAYS)
    return net, (source.path.name if source.path else "random (rehearsal)")


def locate_vgg16(vgg16: str | None) -> None:
    """PPL's VGG16 file is given and there (not read): the errors load_distance gives."""
    from sg2_container.inference.lpips_vgg import (
        check_weights_file,
        missing_weights_message,
        resolve_weights_path,
    )

    missing = missing_weights_message(PURPOSE, None, OTHER_WAYS)
    path = resolve_weights_path(vgg16)
    if path is None:
        raise UserError(missing)
    check_weights_file(path, missing)


def compared_side(resolution: int, path: PathLength) -> int:
    """Side in px of what the distance sees: the centre crop (legacy) or the whole image,
    box-downsampled by the same factor as the whole image."""
    side = resolution // 2 if path.crop else resolution
    return side // max(1, resolution // DISTANCE_SIDE)


def check_resolution(name: str, path: PathLength, resolution: int) -> None:
    side = compared_side(resolution, path)
    if side < MIN_COMPARED_SIDE:
        what = "centre crop" if path.crop else "image"
        raise UserError(f"{name} compares the {what} of each image, {side} x {side} px for this "
                        f"{resolution} px network; the LPIPS VGG16 distance needs at least "
                        f"{MIN_COMPARED_SIDE} px" + (" (use ppl2_wend, which compares the whole "
                                                    "image)" if path.crop else ""))


def sample_paths(G, count: int, seed: int, path: PathLength,
                 labels: Callable[[np.random.RandomState, int], np.ndarray] | None = None):
    """z pairs [count, 2, z_dim], positions t [count] and labels c [count, c_dim], from `seed`
    alone."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn([count, 2, G.z_dim], generator=gen)
    t = torch.rand([count], generator=gen)
    if path.sampling == "end":
        t = torch.zeros([count])
    if G.c_dim and labels is not None:
        c = torch.from_numpy(labels(np.random.RandomState(seed), count)).float()
    else:
        c = torch.zeros([count, G.c_dim])
    return z, t, c


def step_latents(G, z: torch.Tensor, t: torch.Tensor, c: torch.Tensor,
                 path: PathLength) -> torch.Tensor:
    """ws [2n, num_ws, w_dim]: the n path positions t, then the n positions t + eps."""
    ends = torch.stack([t, t + path.epsilon])  # [2, n]
    if path.space == "z":
        points = slerp_rows(z[:, 0], z[:, 1], ends.unsqueeze(-1))  # [2, n, z_dim]
        return G.mapping(points.flatten(0, 1), torch.cat([c, c]), skip_w_avg_update=True)
    ws = G.mapping(z.transpose(0, 1).flatten(0, 1), torch.cat([c, c]), skip_w_avg_update=True)
    start, end = ws.unflatten(0, (2, -1))  # each [n, num_ws, w_dim]
    along = ends.view(2, -1, 1, 1)
    return torch.lerp(start.unsqueeze(0), end.unsqueeze(0), along).flatten(0, 1)


def distance_images(images: torch.Tensor, path: PathLength) -> torch.Tensor:
    """Generator output ([-1, 1]) -> what the distance compares: centre crop for the legacy
    metrics (rows 3/8..7/8, columns 2/8..6/8 of the side), box-downsampled by resolution // 256,
    values in [0, 255] (not rounded: eps-sized changes must survive)."""
    side = images.shape[-1]
    if path.crop:
        eighth = side // 8
        images = images[:, :, 3 * eighth:7 * eighth, 2 * eighth:6 * eighth]
    factor = side // DISTANCE_SIDE
    if factor > 1:
        images = F.avg_pool2d(images, kernel_size=factor, stride=factor)
    return (images + 1) * 127.5


def path_lengths(G, distance, path: PathLength, *, count: int, batch: int, seed: int,
                 labels=None, workers: Workers = Workers(), progress: bool = False) -> np.ndarray:
    """Per-sample distance / eps^2 (float64) for `count` samples, gathered from every process
    (in rank order: the formula does not depend on the order). `batch`: images per pass, so
    batch // 2 samples."""
    z, t, c = sample_paths(G, count, seed, path, labels)
    device = next(G.parameters()).device
    pairs = max(1, batch // 2)
    values = []
    total = len(workers.share(count))
    with torch.no_grad(), progress_bar(total, "path lengths", progress, unit="pair") as bar:
        for part in workers.batches(count, pairs):
            if not len(part):
                continue
            idx = torch.from_numpy(part)
            ws = step_latents(G, z[idx].to(device), t[idx].to(device), c[idx].to(device), path)
            images = G.synthesis(ws, noise_mode="const", force_fp32=True)
            features = distance.features(distance_images(images.float(), path))
            here, there = features.unflatten(0, (2, -1))
            step = (here - there).square().sum(dim=1) / path.epsilon ** 2
            values.append(step.double().cpu().numpy())
            bar.update(len(idx))
    local = {"ppl": np.concatenate(values) if values else np.zeros([0], np.float64)}
    return workers.combine(local)["ppl"]
