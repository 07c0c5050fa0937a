"""Projection: finds the W vector whose rendering looks most like a given image.

The reference projector's method (facts sheet, section 10), in our own structure:
- W statistics: `w_avg_samples` latents from a fixed RandomState(123) go through the mapping;
  their mean is the start point, their spread (`w_std`) scales the exploration noise.
- One w [1, 1, w_dim] (broadcast to every layer) and every `noise_const` map of a private copy of
  G (re-drawn from the seed) are optimised with Adam (betas 0.9, 0.999).
- At progress t = step / num_steps: the learning rate ramps up over the first `lr_rampup_length`
  and down along a half cosine over the last `lr_rampdown_length`; Gaussian noise of
  `w_std * initial_noise_factor * max(0, 1 - t / noise_ramp_length)^2` is added to w.
- Loss: the LPIPS VGG16 distance between the rendering and the target (both in [0, 255],
  area-downsampled to 256 px when larger) plus `regularize_noise_weight` times the noise maps'
  squared autocorrelation at one-pixel shifts, summed over a pyramid of 2x2 average poolings
  down to 8 px. After each step every noise map is renormalised to zero mean, unit variance.

Outputs per target (the reference's names): target.png, proj.png (the final w rendered with the
model's own stored noise, so `projected_w.npz` alone reproduces it), projected_w.npz (key `w`,
[1, num_ws, w_dim]) and, on request, proj.mp4 (target and rendering side by side, one frame per
step). Randomness comes from `seed` alone (no global random state is touched): the same seed,
model, target and device give the same result.

Conditional models: the reference projects unconditional ones only. Here a conditional model
needs `class_idx`; the W statistics then come from that class, and the class is kept fixed.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import math
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sg2_container.errors import UserError
from sg2_container.inference.generate import check_stop, class_labels
from sg2_container.inference.latents import save_ws_file
from sg2_container.inference.lpips_vgg import REHEARSAL_WARNING, LpipsVgg16, load_distance_network
from sg2_container.inference.progress import EVERY_S
from sg2_container.inference.project_options import VIDEO_NAME, ProjectOptions
from sg2_container.inference.video import write_video
from sg2_container.io.atomic import commit, remove_stale_temp_files, temp_path
from sg2_container.io.images import to_uint8, write_png

__all__ = ["ProjectOptions", "Projection", "load_target", "project", "project_images"]

log = logging.getLogger(__name__)

W_STATS_SEED = 123  # the reference draws its W statistics from this fixed seed
W_STATS_BATCH = 1000  # latents mapped per forward pass while gathering the statistics
NOISE_PYRAMID_MIN = 8  # the noise regulariser pools each map down to this size


@dataclasses.dataclass
class Projection:
    """What one projection found: w after every step, and the distance at every step."""

    w_steps: torch.Tensor  # [num_steps, w_dim], float32, CPU
    distances: list[float]  # LPIPS distance of each step's rendering (before its update)
    w_avg: torch.Tensor  # [w_dim], the start point
    w_std: float
    num_ws: int

    def ws(self, step: int = -1) -> torch.Tensor:
        """[1, num_ws, w_dim]: the w of `step` (default: the last) on every layer."""
        return self.w_steps[step].reshape(1, 1, -1).repeat(1, self.num_ws, 1)


# ---- the schedule ----------------------------------------------------------------------------

def learning_rate(t: float, options: ProjectOptions) -> float:
    """Learning rate at progress t in [0, 1): linear warm-up, cosine cool-down."""
    down = min(1.0, (1.0 - t) / options.lr_rampdown_length)
    ramp = 0.5 - 0.5 * math.cos(math.pi * down)
    if options.lr_rampup_length > 0:
        ramp *= min(1.0, t / options.lr_rampup_length)
    return options.initial_learning_rate * ramp


def w_noise_scale(t: float, w_std: float, options: ProjectOptions) -> float:
    """Standard deviation of the exploration noise added to w at progress t."""
    fade = max(0.0, 1.0 - t / options.noise_ramp_length)
    return w_std * options.initial_noise_factor * fade ** 2


def noise_regularisation(noise_maps: list[torch.Tensor]) -> torch.Tensor:
    """Sum over maps and pyramid levels of the squared mean products with the map shifted by one
    pixel (wrapping) along x and along y: zero for white noise, large for structured maps."""
    total = noise_maps[0].new_zeros([]) if noise_maps else torch.zeros([])
    for noise in noise_maps:
        level = noise[None, None]
        while True:
            along_x = (level * torch.roll(level, shifts=1, dims=3)).mean()
            along_y = (level * torch.roll(level, shifts=1, dims=2)).mean()
            total = total + along_x.square() + along_y.square()
            if level.shape[2] <= NOISE_PYRAMID_MIN:
                break
            level = F.avg_pool2d(level, kernel_size=2)
    return total


# ---- the optimisation ------------------------------------------------------------------------

@torch.no_grad()
def w_statistics(G, samples: int, class_idx: int | None, device) -> tuple[torch.Tensor, float]:
    """(mean w [w_dim], spread) of `samples` mapped latents drawn from RandomState(123); the
    spread is the root mean squared distance of the w's from their mean."""
    z = np.random.RandomState(W_STATS_SEED).randn(samples, G.z_dim)
    ws = []
    for start in range(0, samples, W_STATS_BATCH):
        chunk = torch.from_numpy(z[start:start + W_STATS_BATCH]).to(device=device, dtype=torch.float32)
        c = class_labels(G, class_idx if G.c_dim else None, chunk.shape[0], device)
        ws.append(G.mapping(chunk, c, skip_w_avg_update=True)[:, 0].double().cpu())
    w = torch.cat(ws)
    w_avg = w.mean(dim=0)
    w_std = float(((w - w_avg).square().sum() / samples).sqrt())
    return w_avg.float(), w_std


def _as_tensor_image(image: np.ndarray, device) -> torch.Tensor:
    """uint8 [H, W, C] -> float [1, C, H, W] in [0, 255]."""
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)[None].to(
        device=device, dtype=torch.float32)


def project(G, target: np.ndarray, distance: LpipsVgg16, *,
            options: ProjectOptions | None = None, device: torch.device | str = "cpu",
            stop: threading.Event | None = None,
            on_step: Callable[[int, float], None] | None = None,
            w_stats: tuple[torch.Tensor, float] | None = None) -> Projection:
    """Optimises w (and G's noise maps, on a private copy) so that G renders `target`.

    target: uint8 [R, R, C] at G's resolution and channel count. `on_step(step, distance)` is
    called after each step (1-based). Raises Stopped before a step when `stop` is set.
    """
    options = options if options is not None else ProjectOptions()
    device = torch.device(device)
    size = (G.img_resolution, G.img_resolution, G.img_channels)
    if tuple(target.shape) != size or target.dtype != np.uint8:
        raise ValueError(f"target must be uint8 {list(size)}, got {target.dtype} {list(target.shape)}")
    G = copy.deepcopy(G).eval().requires_grad_(False).to(device)
    # w_stats: w_statistics() for these options, computed once by callers with several targets.
    w_avg, w_std = w_stats or w_statistics(G, options.w_avg_samples, options.class_idx, device)

    generator = torch.Generator().manual_seed(options.seed)  # CPU draws: same on every device
    noise_maps = [buf for name, buf in G.synthesis.named_buffers() if name.endswith("noise_const")]
    with torch.no_grad():
        for buf in noise_maps:
            buf.copy_(torch.randn(buf.shape, generator=generator))
    for buf in noise_maps:
        buf.requires_grad_(True)

    with torch.no_grad():
        target_features = distance.features(_as_tensor_image(target, device))
    w_opt = w_avg.to(device).reshape(1, 1, -1).clone().requires_grad_(True)
    optimizer = torch.optim.Adam([w_opt, *noise_maps], betas=(0.9, 0.999),
                                 lr=options.initial_learning_rate)

    w_steps, distances = [], []
    for step in range(options.num_steps):
        check_stop(stop, f"projection stopped before step {step + 1} of {options.num_steps}")
        t = step / options.num_steps
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(t, options)
        w_noise = torch.randn(w_opt.shape, generator=generator).to(device)
        ws = (w_opt + w_noise * w_noise_scale(t, w_std, options)).repeat(1, G.num_ws, 1)
        synth = G.synthesis(ws, noise_mode="const")  # fp16 blocks: half on GPUs only
        synth = (synth + 1) * 127.5
        dist = (target_features - distance.features(synth)).square().sum()
        loss = dist + options.regularize_noise_weight * noise_regularisation(noise_maps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            for buf in noise_maps:
                buf.sub_(buf.mean())
                buf.mul_(buf.square().mean().rsqrt())
        w_steps.append(w_opt.detach()[0, 0].float().cpu())
        distances.append(float(dist.detach()))
        if on_step is not None:
            on_step(step + 1, distances[-1])
    return Projection(w_steps=torch.stack(w_steps), distances=distances, w_avg=w_avg,
                      w_std=w_std, num_ws=G.num_ws)


# ---- images in, folders out ------------------------------------------------------------------

def load_target(path: Path, resolution: int, channels: int) -> np.ndarray:
    """Any image Pillow opens -> uint8 [R, R, C]: EXIF orientation applied, converted to RGB
    (C=3) or grayscale (C=1) as `sg2 prepare` converts training images (transparency onto its
    default white background), the largest centred square cropped, Lanczos-resized to R."""
    import PIL.Image
    import PIL.ImageOps

    from sg2_container.data.convert import Skip, normalise_mode
    from sg2_container.data.options import NAMED_COLORS

    path = Path(path)
    if not path.is_file():
        raise UserError(f"target {path}: " + ("no such file" if not path.exists() else "not a file"))
    try:
        with PIL.Image.open(path) as opened:
            image = PIL.ImageOps.exif_transpose(opened)
            image.load()  # decoded here, while the file is open
            image = normalise_mode(image, channels, NAMED_COLORS["white"])
    except Skip as skip:
        raise UserError(f"target {path}: {skip.detail}") from None
    except PIL.Image.DecompressionBombError as error:
        raise UserError(f"target {path}: too many pixels to open safely ({error})") from None
    except (PIL.UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise UserError(f"target {path} is not an image Pillow can read "
                        f"(PNG, JPEG, WebP, BMP, TIFF, ...): {error}") from None
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    image = image.resize((resolution, resolution), PIL.Image.LANCZOS)
    array = np.array(image, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def folder_names(targets: list[Path]) -> list[str]:
    """One output folder name per target: its stem, with -2, -3, ... added to repeats."""
    names, seen = [], set()
    for target in targets:
        stem = Path(target).stem or "target"
        name, count = stem, 1
        while name in seen:
            count += 1
            name = f"{stem}-{count}"
        seen.add(name)
        names.append(name)
    return names


class _StepProgress:
    """A tqdm bar on an interactive stderr; a log line every 30 s otherwise (job logs keep every
    carriage-return redraw, so no bar there)."""

    def __init__(self, total: int, label: str, enabled: bool):
        self.total, self.label, self.enabled = total, label, enabled
        self.bar = None
        self.start = self.last = time.monotonic()
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=label, unit="step", file=sys.stderr, leave=True)

    def update(self, step: int, dist: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(distance=f"{dist:.4f}", refresh=False)
            return
        now = time.monotonic()
        if self.enabled and (now - self.last >= EVERY_S or step == self.total):
            self.last = now
            rate = step / max(now - self.start, 1e-9)
            log.info("%s: step %d/%d, distance %.4f (%.2f steps/s)", self.label, step, self.total,
                     dist, rate)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@torch.no_grad()
def _render(G, ws: torch.Tensor, device) -> np.ndarray:
    """uint8 [R, R, C] of ws [1, num_ws, w_dim], with the model's stored noise maps."""
    return to_uint8(G.synthesis(ws.to(device), noise_mode="const"))[0]


def _video_frames(G, target: np.ndarray, projection: Projection, device,
                  stop: threading.Event | None) -> Iterator[np.ndarray]:
    for step in range(len(projection.w_steps)):
        check_stop(stop, f"stopped while writing the video (frame {step + 1})")
        yield np.concatenate([target, _render(G, projection.ws(step), device)], axis=1)


def project_images(G, targets: list[Path], outdir: Path, options: ProjectOptions, *,
                   device, stop: threading.Event | None = None,
                   progress: bool = True, distance_network=None) -> list[dict]:
    """Projects each target into G's W space and writes outdir/<target stem>/ with target.png,
    proj.png, projected_w.npz (key 'w', [1, num_ws, w_dim]) and proj.mp4 if asked.

    Returns one dict per target: target, folder, files, distance (LPIPS of proj.png to
    target.png), start_distance (the same for the start point, w_avg), optimisation_distance
    (the last step's), steps, rehearsal. All targets are read before any work, so a bad one
    fails at once. A target's folder appears complete or not at all: Stopped (raised between
    steps when `stop` is set) leaves the finished targets' folders and nothing else.
    `distance_network`: what load_distance_network returned for these options, for callers
    that project several times (it is loaded here otherwise).
    """
    device = torch.device(device)
    outdir = Path(outdir)
    targets = [Path(t) for t in targets]
    if not targets:
        raise UserError("no target images to project: give at least one")
    if G.img_channels not in (1, 3):
        raise UserError(f"projection compares images through VGG16, which sees RGB: it works "
                        f"with 1- or 3-channel networks, and this one makes {G.img_channels}-"
                        "channel images")
    G = G.eval()
    class_labels(G, options.class_idx, 1, device)  # a conditional G without a class fails now
    images = [load_target(t, G.img_resolution, G.img_channels) for t in targets]
    distance, source = distance_network or load_distance_network(
        options.vgg16, allow_random=options.allow_random_vgg16, device=device)
    outdir.mkdir(parents=True, exist_ok=True)
    names = folder_names(targets)
    remove_stale_temp_files(outdir, destinations=names)  # what a killed run left for them
    w_stats = None  # the first projection's W statistics serve every target
    results = []
    for target, name, image in zip(targets, names, images):
        check_stop(stop, f"projection stopped before {target}; {len(results)} target(s) done")
        folder = outdir / name
        partial = temp_path(folder)
        partial.mkdir()
        bar = _StepProgress(options.num_steps, f"project {name}", progress)
        try:
            projection = project(G, image, distance, options=options, device=device, stop=stop,
                                 on_step=bar.update, w_stats=w_stats)
            w_stats = (projection.w_avg, projection.w_std)
            bar.close()
            final = _render(G, projection.ws(), device)
            start = _render(G, projection.w_avg.reshape(1, 1, -1).repeat(1, G.num_ws, 1), device)
            write_png(image, partial / "target.png")
            write_png(final, partial / "proj.png")
            save_ws_file(partial / "projected_w.npz", projection.ws())
            names = ["target.png", "proj.png", "projected_w.npz"]
            if options.save_video:
                write_video(_video_frames(G, image, projection, device, stop),
                            partial / VIDEO_NAME, fps=options.video_fps)
                names.append(VIDEO_NAME)
            with torch.no_grad():
                target_t = _as_tensor_image(image, device)
                final_distance = float(distance.distance(_as_tensor_image(final, device), target_t))
                start_distance = float(distance.distance(_as_tensor_image(start, device), target_t))
            if folder.exists():
                shutil.rmtree(folder)
            commit(partial, folder)
        finally:
            bar.close()
            shutil.rmtree(partial, ignore_errors=True)
        result = {
            "target": str(target), "folder": str(folder),
            "files": [str(folder / n) for n in names],
            "distance": final_distance, "start_distance": start_distance,
            "optimisation_distance": projection.distances[-1], "steps": options.num_steps,
            "rehearsal": source.rehearsal, "distance_network": source.describe(),
        }
        if source.rehearsal:
            result["note"] = REHEARSAL_WARNING
        log.info("projected %s -> %s: distance %.4f (start %.4f)%s", target, folder,
                 final_distance, start_distance, " [rehearsal]" if source.rehearsal else "")
        results.append(result)
    return results
