"""Upsample, pad, FIR-filter and downsample a batch of images in one op.

The networks resample with a small low-pass FIR filter ([1,3,3,1]) around every resolution
change; expressing all of it as one op lets a compiled kernel fuse the steps (stylegan2_ops._kernels,
chosen by stylegan2_ops._backend). The reference path (stylegan2_ops._reference) is plain PyTorch,
differentiable to any order.
"""
from __future__ import annotations

from typing import Sequence, Union

import torch

from stylegan2_ops import _backend, _kernels
from stylegan2_ops._reference import upfirdn2d_reference

# The kernel indexes with 32-bit integers; larger tensors (e.g. batch 64 of 32 channels at
# 1025 x 1025) take the reference path, which has no such limit.
KERNEL_MAX_NUMEL = 2**31 - 1

Scaling = Union[int, Sequence[int]]
Padding = Union[int, Sequence[int]]


def parse_scaling(scaling: Scaling) -> tuple[int, int]:
    """`up`/`down` as (x, y) factors, each an int >= 1."""
    if isinstance(scaling, int):
        scaling = [scaling, scaling]
    valid = (
        isinstance(scaling, (list, tuple))
        and len(scaling) == 2
        and all(isinstance(s, int) and s >= 1 for s in scaling)
    )
    if not valid:
        raise ValueError(f"resampling factor must be an int >= 1 or [x, y] of them, got {scaling!r}")
    sx, sy = scaling
    return sx, sy


def parse_padding(padding: Padding) -> tuple[int, int, int, int]:
    """Padding as (x_before, x_after, y_before, y_after); negative values crop."""
    if isinstance(padding, int):
        padding = [padding, padding]
    padding = [int(p) for p in padding]
    if len(padding) == 2:
        px, py = padding
        return px, px, py, py
    if len(padding) == 4:
        return tuple(padding)  # type: ignore[return-value]
    raise ValueError(f"padding must be an int, [x, y] or [x0, x1, y0, y1], got {padding!r}")


def filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    """(width, height) of a filter; a 1-D filter is separable, so both equal its length."""
    if f is None:
        return 1, 1
    if f.ndim == 2:
        return int(f.shape[1]), int(f.shape[0])
    if f.ndim == 1:
        return int(f.shape[0]), int(f.shape[0])
    raise ValueError(f"filter must be 1-D or 2-D, got shape {list(f.shape)}")


def setup_filter(
    f,
    device: torch.device | str | None = None,
    normalize: bool = True,
    flip_filter: bool = False,
    gain: float = 1,
    separable: bool | None = None,
) -> torch.Tensor:
    """Turns a list/array of taps into the float32 filter tensor the ops expect.

    A 1-D list becomes the 2-D outer product unless it is long enough (>= 8 taps) to be cheaper
    applied separably, or `separable` says otherwise.
    """
    if f is None:
        f = 1
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.ndim == 0:
        f = f[None]
    if f.ndim not in (1, 2) or f.numel() == 0:
        raise ValueError(f"filter must be a non-empty 1-D or 2-D list of taps, got shape {list(f.shape)}")
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f if device is None else f.to(device=device)


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: Scaling = 1,
    down: Scaling = 1,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str | None = None,
) -> torch.Tensor:
    """Zero-insert upsample by `up`, pad, convolve with `f`, keep every `down`-th sample.

    x: [N, C, H, W]; f: float32 [fh, fw], [taps] (separable) or None (identity).
    Output width: (W * up_x + px0 + px1 - fw + down_x) // down_x, likewise for height.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"x must be a 4-D tensor [N, C, H, W], got {getattr(x, 'shape', type(x))}")
    if f is not None and (f.dtype != torch.float32 or f.ndim not in (1, 2)):
        raise ValueError(f"filter must be a float32 1-D or 2-D tensor, got {f.dtype} {list(f.shape)}")
    upx, upy = parse_scaling(up)
    downx, downy = parse_scaling(down)
    pads = parse_padding(padding)
    fw, fh = filter_size(f)
    out_w = (x.shape[3] * upx + pads[0] + pads[1] - fw + downx) // downx
    out_h = (x.shape[2] * upy + pads[2] + pads[3] - fh + downy) // downy
    if out_w < 1 or out_h < 1:
        raise ValueError(
            f"upfirdn2d output would be empty ({out_h}x{out_w}) for input {list(x.shape)}, "
            f"filter {fh}x{fw}, up {up}, down {down}, padding {list(pads)}"
        )
    if _backend.resolve(x, impl) == "cuda":
        largest = max(x.numel(), x.shape[0] * x.shape[1] * out_h * out_w)
        if largest <= KERNEL_MAX_NUMEL:
            return _kernels.upfirdn2d(x, f, (upx, upy), (downx, downy), pads, flip_filter, gain)
        if impl == "cuda":  # forced: no silent fallback (resolve's rule)
            raise RuntimeError(f"impl 'cuda' was forced but the kernel indexes at most "
                               f"{KERNEL_MAX_NUMEL} elements; this call has {largest}")
    return upfirdn2d_reference(x, f, (upx, upy), (downx, downy), pads, flip_filter, gain)


def resample_padding(f: torch.Tensor | None, up: Scaling = 1, down: Scaling = 1,
                     padding: Padding = 0) -> list[int]:
    """`padding` plus what the filter f needs to stay centred when resampling by `up` (before
    filtering) and by `down` (after): [x0, x1, y0, y1]. A factor of 1 adds nothing."""
    fw, fh = filter_size(f)
    upx, upy = parse_scaling(up)
    downx, downy = parse_scaling(down)
    pads = list(parse_padding(padding))
    for axis, taps, up_factor, down_factor in ((0, fw, upx, downx), (1, fh, upy, downy)):
        for factor, upsampling in ((up_factor, True), (down_factor, False)):
            if factor > 1:
                before, after = centring_padding(taps, factor, upsampling)
                pads[2 * axis] += before
                pads[2 * axis + 1] += after
    return pads


def centring_padding(taps: int, factor: int, upsampling: bool) -> tuple[int, int]:
    """(before, after) padding for a `taps`-long filter applied around a change of rate by
    `factor`, so that the output grid stays centred on the input's.

    The filter consumes taps - 1 samples and the rate change factor - 1 of them, leaving
    `taps - factor` to pad, split with the larger half before. When upsampling, the zeros that
    follow each sample put the signal's centre (factor - 1) / 2 samples early, so the first
    sample gets factor - 1 more before it. factor=1 gives the same-size padding of filter2d.
    """
    excess = taps - factor
    after = excess // 2
    before = excess - after + (factor - 1 if upsampling else 0)
    return before, after


def filter2d(x, f, padding: Padding = 0, flip_filter=False, gain=1, impl=None):
    """Filters without changing the size (plus `padding` on each side)."""
    fw, fh = filter_size(f)
    px0, px1, py0, py1 = parse_padding(padding)
    (bx, ax), (by, ay) = centring_padding(fw, 1, False), centring_padding(fh, 1, False)
    pads = [px0 + bx, px1 + ax, py0 + by, py1 + ay]
    return upfirdn2d(x, f, padding=pads, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(x, f, up: Scaling = 2, padding: Padding = 0, flip_filter=False, gain=1, impl=None):
    """Upsamples by `up` keeping the signal's energy (gain multiplied by up_x * up_y)."""
    upx, upy = parse_scaling(up)
    pads = resample_padding(f, up=(upx, upy), padding=padding)
    return upfirdn2d(
        x, f, up=(upx, upy), padding=pads, flip_filter=flip_filter, gain=gain * upx * upy, impl=impl
    )


def downsample2d(x, f, down: Scaling = 2, padding: Padding = 0, flip_filter=False, gain=1, impl=None):
    """Low-pass filters, then keeps every `down`-th sample."""
    pads = resample_padding(f, down=down, padding=padding)
    return upfirdn2d(x, f, down=down, padding=pads, flip_filter=flip_filter, gain=gain, impl=impl)


class UpFirDn2d(torch.nn.Module):
    """Module form of upfirdn2d with the filter held as a buffer."""

    def __init__(self, f, up: Scaling = 1, down: Scaling = 1, padding: Padding = 0, gain: float = 1):
        super().__init__()
        self.register_buffer("filter", setup_filter(f))
        self.up, self.down, self.padding, self.gain = up, down, padding, gain

    def forward(self, x):
        return upfirdn2d(x, self.filter, self.up, self.down, self.padding, gain=self.gain)
