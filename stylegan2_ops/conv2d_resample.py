"""2-D convolution fused with FIR-filtered up/down-sampling.

Defined as: upfirdn2d(x, f, up, padding, gain=up^2) -> conv (stride 1, no padding) ->
upfirdn2d(f, down), with `padding` applied once. The code picks cheaper equivalent orderings
(strided and transposed convs) that give the same result, since filters and convs commute.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from stylegan2_ops.convolution import ConvSpec, conv
from stylegan2_ops.upfirdn2d import Padding, resample_padding, upfirdn2d


def _conv(x, w, stride=1, padding=0, groups=1, transpose=False, flip_weight=True):
    """conv2d (flip_weight=True: correlation) or its true-convolution twin.

    conv_transpose2d is a true convolution natively, so the flip rule is inverted there.
    """
    if flip_weight == transpose:
        w = w.flip([2, 3])
    return conv(x, w, ConvSpec(stride=_pair(stride), padding=_pair(padding), groups=groups,
                               transpose=transpose))


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _transpose_weight(w: torch.Tensor, groups: int) -> torch.Tensor:
    """[out, in/g, kh, kw] -> conv_transpose2d's [in, out/g, kh, kw]."""
    out_channels, in_per_group, kh, kw = w.shape
    w = w.reshape(groups, out_channels // groups, in_per_group, kh, kw)
    return w.transpose(1, 2).reshape(groups * in_per_group, out_channels // groups, kh, kw)


def conv2d_resample(
    x: torch.Tensor,
    w: torch.Tensor,
    f: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: Padding = 0,
    groups: int = 1,
    flip_weight: bool = True,
    flip_filter: bool = False,
) -> torch.Tensor:
    """x: [N, C_in, H, W]; w: [C_out, C_in / groups, kh, kw]; f: resampling filter (float32).

    flip_weight=True computes a correlation (torch's conv2d); False a true convolution, which
    the networks' upsampling layers use.
    """
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"x and w must be 4-D, got {list(x.shape)} and {list(w.shape)}")
    if x.shape[1] != w.shape[1] * groups or w.shape[0] % groups:
        raise ValueError(
            f"channels do not match: x {list(x.shape)}, w {list(w.shape)}, groups {groups}"
        )
    if f is not None and (f.ndim not in (1, 2) or f.dtype != torch.float32):
        raise ValueError(f"f must be None or a float32 1-D/2-D filter, got {f.dtype} {list(f.shape)}")
    if not (isinstance(up, int) and isinstance(down, int) and up >= 1 and down >= 1):
        raise ValueError(f"up and down must be ints >= 1, got up={up!r} down={down!r}")
    kh, kw = int(w.shape[2]), int(w.shape[3])
    # The resampling filters need their own padding on top of the user's.
    pads = resample_padding(f, up=up, down=down, padding=padding)
    px0, px1, py0, py1 = pads

    # 1x1 conv is a per-pixel channel mix, so it commutes with the resampling.
    if kw == 1 and kh == 1 and down > 1 and up == 1:
        x = upfirdn2d(x, f, down=down, padding=pads, flip_filter=flip_filter)
        return _conv(x, w, groups=groups, flip_weight=flip_weight)
    if kw == 1 and kh == 1 and up > 1 and down == 1:
        x = _conv(x, w, groups=groups, flip_weight=flip_weight)
        return upfirdn2d(x, f, up=up, padding=pads, gain=up**2, flip_filter=flip_filter)

    # Downsampling: filter first, then a strided conv does conv + subsampling at once.
    if down > 1 and up == 1:
        x = upfirdn2d(x, f, padding=pads, flip_filter=flip_filter)
        return _conv(x, w, stride=down, groups=groups, flip_weight=flip_weight)

    # Upsampling: a strided transposed conv does zero insertion + conv; then filter.
    if up > 1:
        w = _transpose_weight(w, groups)
        px0 -= kw - 1
        px1 -= kw - up
        py0 -= kh - 1
        py1 -= kh - up
        crop_x = max(min(-px0, -px1), 0)
        crop_y = max(min(-py0, -py1), 0)
        x = _conv(x, w, stride=up, padding=[crop_y, crop_x], groups=groups, transpose=True,
                  flip_weight=flip_weight)
        x = upfirdn2d(x, f, padding=[px0 + crop_x, px1 + crop_x, py0 + crop_y, py1 + crop_y],
                      gain=up**2, flip_filter=flip_filter)
        if down > 1:
            x = upfirdn2d(x, f, down=down, flip_filter=flip_filter)
        return x

    # Plain conv: torch pads symmetrically itself.
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return _conv(x, w, padding=[py0, px0], groups=groups, flip_weight=flip_weight)

    x = upfirdn2d(x, None, padding=pads)
    return _conv(x, w, groups=groups, flip_weight=flip_weight)


def conv2d_resample_by_definition(x, w, f=None, up=1, down=1, padding=0, groups=1,
                                  flip_weight=True, flip_filter=False):
    """The op's literal definition, without the fast orderings: the oracle the tests hold
    conv2d_resample to, and the "straightforward implementation" baseline of the benchmarks."""
    px0, px1, py0, py1 = resample_padding(f, up=up, down=down, padding=padding)
    x = upfirdn2d(x, f if up > 1 else None, up=up, padding=[px0, px1, py0, py1], gain=up**2,
                  flip_filter=flip_filter)
    x = F.conv2d(x, w if flip_weight else w.flip([2, 3]), groups=groups)
    if down > 1:
        x = upfirdn2d(x, f, down=down, flip_filter=flip_filter)
    return x
