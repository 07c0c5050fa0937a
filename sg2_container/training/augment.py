"""Adaptive discriminator augmentation (ADA): a differentiable augment pipe and its p controller.

Every image shown to D (reals, fakes, R1 reals) goes through the same pipe, so D cannot learn the
augmentations as long as p stays below the point where they leak. Everything is differentiable
(R1 needs second derivatives through the geometric resampling), and the random draws come from
torch's generator on the images' device, so seeding torch makes a run repeatable.
"""
from __future__ import annotations

import logging
import math
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from sg2_container.errors import UserError
from sg2_container.options.choices import AUGPIPE_PRESETS, COLOR, GEOMETRIC
from stylegan2_ops import ConvSpec, conv, downsample2d, grid_sample, setup_filter, upsample2d

log = logging.getLogger(__name__)

# Daubechies symlet decomposition low-pass filters.
SYM2 = (-0.12940952255092145, 0.22414386804185735, 0.836516303737469, 0.48296291314469025)
SYM6 = (
    0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
    0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
    -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148,
)
# Expected power of each filter-bank band in natural images, used to keep the overall gain at 1.
_BAND_POWER = (10 / 13, 1 / 13, 1 / 13, 1 / 13)

def build_augment_pipe(name: str) -> "AugmentPipe":
    """The pipe for an `--augpipe` preset name; a UserError lists the allowed names."""
    if name not in AUGPIPE_PRESETS:
        raise UserError(
            f"unknown augpipe preset {name!r}; allowed: {', '.join(AUGPIPE_PRESETS)}"
        )
    log.info("augment pipe %s: %s", name, ", ".join(AUGPIPE_PRESETS[name]))
    return AugmentPipe(**AUGPIPE_PRESETS[name])


def make_filter_bank(lowpass: Sequence[float] = SYM2, num_bands: int = 4) -> np.ndarray:
    """[num_bands, taps]: octave bands of a 1-D signal, summing to a unit impulse."""
    lo = np.asarray(lowpass, dtype=np.float64)
    hi = lo * (-1.0) ** np.arange(lo.size)
    lo2 = np.convolve(lo, lo[::-1]) / 2
    hi2 = np.convolve(hi, hi[::-1]) / 2
    bank = np.zeros([num_bands, 1])
    bank[0, 0] = 1
    for band in range(1, num_bands):
        # Stretch every band 2x (zero after each tap, last dropped), low-pass, add the new band.
        stretched = np.zeros([num_bands, bank.shape[1] * 2 - 1])
        stretched[:, ::2] = bank
        bank = np.stack([np.convolve(row, lo2) for row in stretched])
        start = (bank.shape[1] - hi2.size) // 2
        bank[band, start : start + hi2.size] += hi2
    return bank


def _entry(value, like: torch.Tensor) -> torch.Tensor:
    """A per-image tensor or a Python number as a tensor shaped like `like`. A number is filled
    in on the device: building it from Python data would be a blocking host-to-device copy on a
    GPU, and the pipe makes about a hundred of them per call."""
    if isinstance(value, torch.Tensor):
        return value.to(like.dtype).expand(like.shape)
    return torch.full_like(like, value)


# Batched homogeneous 2-D matrices [N, 3, 3] from per-image tensors [N] (or scalars).
def _affine2d(a, b, c, d, e, f, like: torch.Tensor) -> torch.Tensor:
    rows = [[a, b, c], [d, e, f], [0, 0, 1]]
    items = [_entry(v, like) for row in rows for v in row]
    return torch.stack(items, dim=-1).reshape(*like.shape, 3, 3)


def _translate2d(tx, ty, like):
    return _affine2d(1, 0, tx, 0, 1, ty, like)


def _scale2d(sx, sy, like):
    return _affine2d(sx, 0, 0, 0, sy, 0, like)


def _rotate2d(theta, like):
    theta = _entry(theta, like)
    return _affine2d(theta.cos(), -theta.sin(), 0, theta.sin(), theta.cos(), 0, like)


def _rotate3d(axis: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """[N, 4, 4] rotations by theta [N] about a unit axis (Rodrigues' formula)."""
    x, y, z = axis[0], axis[1], axis[2]
    s, c = theta.sin(), theta.cos()
    cc = 1 - c
    zero, one = torch.zeros_like(theta), torch.ones_like(theta)
    rows = [
        [x * x * cc + c, x * y * cc - z * s, x * z * cc + y * s, zero],
        [y * x * cc + z * s, y * y * cc + c, y * z * cc - x * s, zero],
        [z * x * cc - y * s, z * y * cc + x * s, z * z * cc + c, zero],
        [zero, zero, zero, one],
    ]
    return torch.stack([v.expand_as(theta) for row in rows for v in row], dim=-1).reshape(-1, 4, 4)


class _Draws:
    """Per-image parameters: random and gated by a probability, or fixed by debug_percentile."""

    def __init__(self, batch, q, dtype, device, generator):
        self.batch, self.q = batch, q
        self.kw = dict(dtype=dtype, device=device, generator=generator)

    def rand(self, *shape):
        return torch.rand([self.batch, *shape], **self.kw)

    def randn(self, *shape):
        return torch.randn([self.batch, *shape], **self.kw)

    def pick(self, value, prob, neutral, fixed):
        if self.q is not None:
            return torch.full_like(value, fixed)
        gate = self.rand(*value.shape[1:]) < prob
        return torch.where(gate, value, torch.full_like(value, neutral))

    def _quantile(self, q):
        """erfinv(2q - 1), so that `quantile * std` is the q-quantile of N(0, std^2 / 2)."""
        return torch.erfinv(torch.tensor(2 * q - 1, dtype=self.kw["dtype"])).item()

    def choice(self, n, prob, *shape):
        """Integer in [0, n), 0 when not applied."""
        fixed = math.floor(self.q * n) if self.q is not None else 0
        return self.pick(torch.floor(self.rand(*shape) * n), prob, 0, fixed)

    def uniform(self, scale, prob, *shape, debug=True):
        """U(-scale, scale), 0 when not applied; `debug=False` pins it to 0 in debug mode."""
        fixed = (2 * self.q - 1) * scale if self.q is not None and debug else 0
        return self.pick((self.rand(*shape) * 2 - 1) * scale, prob, 0, fixed)

    def normal(self, std, prob, *shape):
        """N(0, std^2), 0 when not applied."""
        fixed = self._quantile(self.q) * std if self.q is not None else 0
        return self.pick(self.randn(*shape) * std, prob, 0, fixed)

    def abs_normal(self, std, prob, *shape):
        """|N(0, std^2)|, 0 when not applied; erfinv(q) * std in debug mode."""
        fixed = torch.erfinv(torch.tensor(self.q, dtype=self.kw["dtype"])).item() * std \
            if self.q is not None else 0
        return self.pick(self.randn(*shape).abs() * std, prob, 0, fixed)

    def log2_normal(self, std, prob, *shape):
        """2^N(0, std^2), 1 when not applied."""
        fixed = 2 ** (self._quantile(self.q) * std) if self.q is not None else 1
        return self.pick(torch.exp2(self.randn(*shape) * std), prob, 1, fixed)


class AugmentPipe(torch.nn.Module):
    """The ADA pipeline: each stage is applied per image with probability `multiplier * p`.

    Images [N, C, H, W] in, same shape and dtype out. Geometric stages resample once through
    one combined matrix; colour stages apply one combined 4x4 matrix (C = 1 or 3).
    """

    def __init__(
        self,
        xflip=0, rotate90=0, xint=0, xint_max=0.125,
        scale=0, rotate=0, aniso=0, xfrac=0, scale_std=0.2, rotate_max=1, aniso_std=0.2,
        xfrac_std=0.125,
        brightness=0, contrast=0, lumaflip=0, hue=0, saturation=0, brightness_std=0.2,
        contrast_std=0.5, hue_max=1, saturation_std=1,
        imgfilter=0, imgfilter_bands=(1, 1, 1, 1), imgfilter_std=1,
        noise=0, cutout=0, noise_std=0.1, cutout_size=0.5,
    ):
        settings = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        super().__init__()
        for name, value in settings.items():
            values = value if name == "imgfilter_bands" else [value]
            if not all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 for v in values):
                raise ValueError(f"AugmentPipe {name} must be finite and >= 0, got {value!r}")
            setattr(self, name, [float(v) for v in values] if name == "imgfilter_bands"
                    else float(value))
        self.register_buffer("p", torch.ones([]))
        self.register_buffer("Hz_geom", setup_filter(list(SYM6)))
        self.register_buffer("Hz_fbank", torch.as_tensor(make_filter_bank(), dtype=torch.float32))
        self._constants: dict[tuple, torch.Tensor] = {}
        if len(self.imgfilter_bands) != self.Hz_fbank.shape[0]:
            raise ValueError(f"imgfilter_bands needs {self.Hz_fbank.shape[0]} entries, "
                             f"got {len(self.imgfilter_bands)}")

    def extra_repr(self) -> str:
        names = GEOMETRIC + COLOR + ("imgfilter", "noise", "cutout")
        return ", ".join(f"{n}={getattr(self, n):g}" for n in names if getattr(self, n) > 0)

    def _constant(self, values: tuple, like: torch.Tensor) -> torch.Tensor:
        """`values` as a tensor on `like`'s device and dtype, made once: each construction from
        Python data is a host-to-device copy that waits for the GPU to drain its queue."""
        key = (values, like.dtype, like.device)
        tensor = self._constants.get(key)
        if tensor is None:
            tensor = self._constants[key] = torch.tensor(values, dtype=like.dtype,
                                                         device=like.device)
        return tensor

    def forward(self, images: torch.Tensor, debug_percentile: float | None = None, *,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Augments [N, C, H, W]; `debug_percentile` in [0, 1] applies every stage, fixed by it."""
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            raise ValueError(f"images must be [N, C, H, W], got {getattr(images, 'shape', images)}")
        q = debug_percentile
        if q is not None and not 0 <= q <= 1:
            raise ValueError(f"debug_percentile must be in [0, 1], got {q}")
        channels = images.shape[1]
        if any(getattr(self, n) > 0 for n in COLOR) and channels not in (1, 3):
            raise UserError(f"colour augmentations need 1 (L) or 3 (RGB) image channels, got "
                            f"{channels}; choose an augpipe without colour (e.g. 'bg')")
        dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
        draws = _Draws(images.shape[0], q, dtype, images.device, generator)
        p = self.p.to(dtype)
        if any(getattr(self, n) > 0 for n in GEOMETRIC):
            images = self._resample(images, self._geometric_matrix(draws, p, images.shape))
        if any(getattr(self, n) > 0 for n in COLOR):
            images = self._apply_color(images, self._color_matrix(draws, p, channels))
        if self.imgfilter > 0:
            images = self._filter(images, draws, p)
        if self.noise > 0:
            sigma = draws.abs_normal(self.noise_std, self.noise * p, 1, 1, 1)
            noise = torch.randn(images.shape, dtype=images.dtype, device=images.device,
                                generator=generator)
            images = images + noise * sigma.to(images.dtype)
        if self.cutout > 0:
            images = self._cutout(images, draws, p)
        return images

    def _geometric_matrix(self, draws: _Draws, p: torch.Tensor, shape) -> torch.Tensor:
        """Inverse transform [N, 3, 3], output pixel -> input pixel, origin at the image centre."""
        height, width = shape[2], shape[3]
        one = torch.ones([shape[0]], dtype=p.dtype, device=p.device)
        G_inv = _scale2d(1, 1, one)
        if self.xflip > 0:
            k = draws.choice(2, self.xflip * p)
            G_inv = G_inv @ _scale2d(1 / (1 - 2 * k), 1, one)
        if self.rotate90 > 0:
            k = draws.choice(4, self.rotate90 * p)
            G_inv = G_inv @ _rotate2d(math.pi / 2 * k, one)
        if self.xint > 0:
            t = draws.uniform(self.xint_max, self.xint * p, 2)
            tx, ty = torch.round(t[:, 0] * width), torch.round(t[:, 1] * height)
            G_inv = G_inv @ _translate2d(-tx, -ty, one)
        if self.scale > 0:
            s = draws.log2_normal(self.scale_std, self.scale * p)
            G_inv = G_inv @ _scale2d(1 / s, 1 / s, one)
        # Two rotations around the anisotropic scaling, each with p_rot: P(any) = rotate * p.
        p_rot = 1 - torch.sqrt((1 - self.rotate * p).clamp(0, 1))
        if self.rotate > 0:
            theta = draws.uniform(math.pi * self.rotate_max, p_rot)
            G_inv = G_inv @ _rotate2d(theta, one)
        if self.aniso > 0:
            s = draws.log2_normal(self.aniso_std, self.aniso * p)
            G_inv = G_inv @ _scale2d(1 / s, s, one)
        if self.rotate > 0:
            theta = draws.uniform(math.pi * self.rotate_max, p_rot, debug=False)
            G_inv = G_inv @ _rotate2d(theta, one)
        if self.xfrac > 0:
            t = draws.normal(self.xfrac_std, self.xfrac * p, 2)
            G_inv = G_inv @ _translate2d(-t[:, 0] * width, -t[:, 1] * height, one)
        return G_inv

    def _resample(self, images: torch.Tensor, G_inv: torch.Tensor) -> torch.Tensor:
        """Applies G_inv to every image: reflect pad, 2x up, bilinear lookup, 2x down."""
        batch, channels, height, width = images.shape
        one = G_inv.new_ones([batch])
        pad = self.Hz_geom.shape[0] // 4
        # Pad just enough (same for the whole batch) that the transformed image never samples
        # outside the reflected border, plus room for the filters.
        cx, cy = (width - 1) / 2, (height - 1) / 2
        corners = self._constant(((-cx, -cy, 1), (cx, -cy, 1), (cx, cy, 1), (-cx, cy, 1)), G_inv)
        corners = (G_inv @ corners.t())[:, :2, :].permute(1, 0, 2).flatten(1)  # [xy, N * 4]
        margin = torch.cat([-corners, corners]).amax(dim=1)  # [x0, y0, x1, y1]
        margin = margin + self._constant((2 * pad - cx, 2 * pad - cy) * 2, G_inv)
        margin = margin.clamp(min=0).minimum(self._constant((width - 1, height - 1) * 2, G_inv))
        # The call's one wait for the GPU: the padding depends on the drawn transforms.
        mx0, my0, mx1, my1 = (int(m) for m in margin.ceil().tolist())
        images = F.pad(images, [mx0, mx1, my0, my1], mode="reflect")
        G_inv = _translate2d((mx0 - mx1) / 2, (my0 - my1) / 2, one) @ G_inv

        # Work at twice the resolution so that the bilinear lookup does not alias.
        images = upsample2d(images, self.Hz_geom, up=2)
        G_inv = _scale2d(2, 2, one) @ G_inv @ _scale2d(1 / 2, 1 / 2, one)
        G_inv = _translate2d(-0.5, -0.5, one) @ G_inv @ _translate2d(0.5, 0.5, one)

        # Pixel units -> the [-1, 1] coordinates of affine_grid (input and output canvas).
        out_shape = [batch, channels, (height + 2 * pad) * 2, (width + 2 * pad) * 2]
        G_inv = (_scale2d(2 / images.shape[3], 2 / images.shape[2], one) @ G_inv
                 @ _scale2d(out_shape[3] / 2, out_shape[2] / 2, one))
        grid = F.affine_grid(G_inv[:, :2, :].to(images.dtype), out_shape, align_corners=False)
        # Bilinear with zero padding; R1 differentiates through it twice, which F.grid_sample
        # allows only in recent PyTorch releases.
        images = grid_sample(images, grid)
        return downsample2d(images, self.Hz_geom, down=2, padding=-2 * pad, flip_filter=True)

    def _color_matrix(self, draws: _Draws, p: torch.Tensor, channels: int) -> torch.Tensor:
        """[N, 4, 4] acting on homogeneous [r, g, b, 1] columns."""
        eye = torch.eye(4, dtype=p.dtype, device=p.device)
        C = eye.expand(draws.batch, 4, 4)
        luma = self._constant((1, 1, 1, 0), p) / math.sqrt(3)
        luma_proj = torch.outer(luma, luma)
        if self.brightness > 0:
            b = draws.normal(self.brightness_std, self.brightness * p)
            C = _translate3d(b) @ C
        if self.contrast > 0:
            c = draws.log2_normal(self.contrast_std, self.contrast * p)
            C = torch.diag_embed(torch.stack([c, c, c, torch.ones_like(c)], dim=-1)) @ C
        if self.lumaflip > 0:
            k = draws.choice(2, self.lumaflip * p, 1, 1)
            C = (eye - 2 * luma_proj * k) @ C
        if self.hue > 0 and channels > 1:
            theta = draws.uniform(math.pi * self.hue_max, self.hue * p)
            C = _rotate3d(luma, theta) @ C
        if self.saturation > 0 and channels > 1:
            s = draws.log2_normal(self.saturation_std, self.saturation * p, 1, 1)
            C = (luma_proj + (eye - luma_proj) * s) @ C
        return C

    @staticmethod
    def _apply_color(images: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = images.shape
        C = C.to(images.dtype)
        flat = images.reshape(batch, channels, height * width)
        if channels == 3:
            flat = C[:, :3, :3] @ flat + C[:, :3, 3:]
        else:  # luminance: the average of the three output rows
            m = C[:, :3, :].mean(dim=1, keepdim=True)
            flat = flat * m[:, :, :3].sum(dim=2, keepdim=True) + m[:, :, 3:]
        return flat.reshape(batch, channels, height, width)

    def _filter(self, images: torch.Tensor, draws: _Draws, p: torch.Tensor) -> torch.Tensor:
        """Random per-band amplification with the filter bank, applied separably."""
        batch, channels, height, width = images.shape
        fbank = self.Hz_fbank.to(p.dtype)
        num_bands, taps = fbank.shape
        pad = taps // 2
        if min(height, width) <= pad:
            raise UserError(f"the imgfilter augmentation needs images larger than {pad} pixels, "
                            f"got {height}x{width}; choose an augpipe without 'f'")
        power = self._constant(_BAND_POWER, p)
        gain = p.new_ones([batch, num_bands])
        for band, strength in enumerate(self.imgfilter_bands):
            t_band = draws.log2_normal(self.imgfilter_std, self.imgfilter * p * strength)
            if draws.q is not None and strength == 0:
                t_band = torch.ones_like(t_band)
            t = p.new_ones([batch, num_bands])
            t[:, band] = t_band
            gain = gain * t / (power * t.square()).sum(dim=-1, keepdim=True).sqrt()
        kernel = (gain @ fbank).to(images.dtype)  # [N, taps]
        kernel = kernel.repeat_interleave(channels, dim=0)  # [N * C, taps]
        x = F.pad(images.reshape(1, batch * channels, height, width), [pad] * 4, mode="reflect")
        # stylegan2_ops.conv: R1 differentiates twice through these per-image filters.
        depthwise = ConvSpec(groups=batch * channels)
        x = conv(x, kernel[:, None, None, :], depthwise)
        x = conv(x, kernel[:, None, :, None], depthwise)
        return x.reshape(batch, channels, height, width)

    def _cutout(self, images: torch.Tensor, draws: _Draws, p: torch.Tensor) -> torch.Tensor:
        """Zeroes a square of side cutout_size (fraction of W and H) at a uniform random centre."""
        batch, _, height, width = images.shape
        size = draws.pick(p.new_full([batch, 1], self.cutout_size), self.cutout * p, 0,
                           self.cutout_size)
        centre = draws.rand(2)
        if draws.q is not None:
            centre = torch.full_like(centre, draws.q)
        xs = (torch.arange(width, dtype=p.dtype, device=p.device) + 0.5) / width
        ys = (torch.arange(height, dtype=p.dtype, device=p.device) + 0.5) / height
        keep_x = (xs[None, :] - centre[:, 0:1]).abs() >= size / 2  # [N, W]
        keep_y = (ys[None, :] - centre[:, 1:2]).abs() >= size / 2  # [N, H]
        keep = keep_x[:, None, None, :] | keep_y[:, None, :, None]
        return images * keep.to(images.dtype)


def _translate3d(b: torch.Tensor) -> torch.Tensor:
    """[N, 4, 4] adding b [N] to all three colour channels."""
    M = torch.eye(4, dtype=b.dtype, device=b.device).repeat(b.shape[0], 1, 1)
    M[:, :3, 3] = b[:, None]
    return M


class AdaController:
    """Adjusts the pipe's p from the sign of D's real logits, as ADA does.

    Call `accumulate(real_logits)` for every D pass on reals and `step()` once per training step;
    every `interval` steps p moves by `sign(r_t - target) * batch_size * interval / (kimg * 1000)`
    (never below 0, no upper bound). Sums stay on the device until an update needs them.
    """

    def __init__(self, pipe: AugmentPipe, target: float, batch_size: int, interval: int = 4,
                 kimg: float = 500):
        if not 0 <= target <= 1:
            raise UserError(f"ADA target must be in [0, 1], got {target}")
        if interval < 1 or kimg <= 0 or batch_size < 1:
            raise ValueError(f"need interval >= 1, kimg > 0, batch_size >= 1; got {interval}, "
                             f"{kimg}, {batch_size}")
        self.pipe, self.target, self.batch_size = pipe, float(target), int(batch_size)
        self.interval, self.kimg = int(interval), float(kimg)
        self._stats = torch.zeros([2], dtype=torch.float64, device=pipe.p.device)  # [sum, count]
        self.num_steps = 0
        self.last_rt: float | None = None

    @property
    def adjust_step(self) -> float:
        """Size of one p update: images seen per interval over images for a full 0->1 sweep."""
        return self.batch_size * self.interval / (self.kimg * 1000)

    def accumulate(self, real_logits: torch.Tensor) -> None:
        """Adds sign(D(real)) of one D pass; no host sync (the sums follow the logits' device)."""
        signs = real_logits.detach().flatten().sign().to(torch.float64)
        if self._stats.device != signs.device:
            self._stats = self._stats.to(signs.device)
        self._stats[0] += signs.sum()
        self._stats[1] += signs.numel()  # a number, not a tensor made from it (a copy to the GPU)

    def step(self, reduce: Callable[[torch.Tensor], None] | None = None) -> float | None:
        """Counts one training step; on every `interval`-th, updates p and returns r_t.

        `reduce` (e.g. torch.distributed.all_reduce) sums the [sum, count] tensor across ranks
        in place before it is used.
        """
        self.num_steps += 1
        if self.num_steps % self.interval != 0:
            return None
        if reduce is not None:
            reduce(self._stats)
        total, count = self._stats.tolist()
        self._stats.zero_()
        if count == 0:
            return None
        rt = total / count
        adjust = float(np.sign(rt - self.target)) * self.adjust_step
        with torch.no_grad():
            self.pipe.p.copy_((self.pipe.p + adjust).clamp(min=0))
        self.last_rt = rt
        log.debug("ADA r_t %.4f -> p %.6f", rt, float(self.pipe.p))
        return rt

    def state_dict(self) -> dict:
        """Plain numbers for a checkpoint (p itself lives in the pipe's state_dict)."""
        total, count = self._stats.tolist()
        return {"sign_sum": total, "sign_count": count, "num_steps": self.num_steps,
                "last_rt": self.last_rt}

    def load_state_dict(self, state: Mapping) -> None:
        expected = {"sign_sum", "sign_count", "num_steps", "last_rt"}
        if set(state) != expected:
            raise ValueError(f"ADA controller state needs keys {sorted(expected)}, "
                             f"got {sorted(state)}")
        stats = [float(state["sign_sum"]), float(state["sign_count"])]
        self._stats.copy_(torch.tensor(stats, dtype=torch.float64))
        self.num_steps = int(state["num_steps"])
        self.last_rt = None if state["last_rt"] is None else float(state["last_rt"])
