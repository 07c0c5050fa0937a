"""The pure-PyTorch reference paths of the ops: always correct, differentiable to any order.

They live below the dispatch (`_backend`) and the public ops, because the kernel self-check
(`_selfcheck`, run by `_backend` before the kernels are first used) compares against them:
public op -> _backend -> _selfcheck -> _reference, with no way back up.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import torch
import torch.nn.functional as F

from stylegan2_ops.convolution import ConvSpec, conv
from stylegan2_ops.graph import records_graph


@dataclasses.dataclass(frozen=True)
class Activation:
    """An activation with the defaults the networks rely on."""

    func: Callable[[torch.Tensor, float], torch.Tensor]
    default_alpha: float
    default_gain: float
    has_second_grad: bool  # False where the 2nd derivative w.r.t. x is zero (piecewise linear)
    # Overwrites its (freshly made) input when no gradient is needed: a third of the memory
    # traffic on the reference path's inference. None: the activation has no in-place form.
    func_: Callable[[torch.Tensor, float], torch.Tensor] | None = None


ACTIVATIONS: dict[str, Activation] = {
    "linear": Activation(lambda x, alpha: x, 0.0, 1.0, False, lambda x, alpha: x),
    "relu": Activation(lambda x, alpha: F.relu(x), 0.0, math.sqrt(2), False,
                       lambda x, alpha: F.relu(x, inplace=True)),
    "lrelu": Activation(lambda x, alpha: F.leaky_relu(x, alpha), 0.2, math.sqrt(2), False,
                        lambda x, alpha: F.leaky_relu(x, alpha, inplace=True)),
    "tanh": Activation(lambda x, alpha: torch.tanh(x), 0.0, 1.0, True, lambda x, alpha: x.tanh_()),
    "sigmoid": Activation(lambda x, alpha: torch.sigmoid(x), 0.0, 1.0, True,
                          lambda x, alpha: x.sigmoid_()),
    "elu": Activation(lambda x, alpha: F.elu(x), 0.0, 1.0, True,
                      lambda x, alpha: F.elu(x, inplace=True)),
    "selu": Activation(lambda x, alpha: F.selu(x), 0.0, 1.0, True,
                       lambda x, alpha: F.selu(x, inplace=True)),
    "softplus": Activation(lambda x, alpha: F.softplus(x), 0.0, 1.0, True),
    "swish": Activation(lambda x, alpha: torch.sigmoid(x) * x, 0.0, math.sqrt(2), True),
}


def activation(act: str) -> Activation:
    """Looks up an activation by name, naming the allowed ones on error."""
    try:
        return ACTIVATIONS[act]
    except KeyError:
        raise ValueError(f"unknown activation {act!r}; allowed: {', '.join(ACTIVATIONS)}") from None


def bias_act_reference(x, b, dim, spec, alpha, gain, clamp, overwrite=False):
    """Bias, activation, gain and clamp from differentiable PyTorch functions (any order).

    overwrite=True: x is the caller's own fresh tensor, computed into when no gradient is needed.
    """
    if not records_graph(x, b) and spec.func_ is not None:
        return _bias_act_inplace(x, b, dim, spec, alpha, gain, clamp, overwrite)
    if b is not None:
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)]).to(x.dtype)
    x = spec.func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def _bias_act_inplace(x, b, dim, spec, alpha, gain, clamp, overwrite):
    """The same values, computed in one new tensor, or in x itself where the caller gives it up
    (inference: no graph to keep). A new tensor of a generator's size is written to memory the
    caches do not hold; at 256 px that made the bias add 8x slower than the activation."""
    if spec is ACTIVATIONS["linear"] and b is None and gain == 1 and clamp is None:
        return x
    y = x if overwrite else None
    if b is not None:
        b = b.reshape([-1 if i == dim else 1 for i in range(x.ndim)]).to(x.dtype)
        y = x + b if y is None else y.add_(b)
    elif y is None:
        y = x.clone()
    y = spec.func_(y, alpha)
    if gain != 1:
        y.mul_(gain)
    if clamp is not None:
        y.clamp_(-clamp, clamp)
    return y


def upfirdn2d_reference(x, f, up, down, pads, flip_filter, gain):
    """Plain PyTorch, differentiable to any order, without materialising the zero-inserted or
    the full-rate intermediate: upsampling is a transposed depthwise conv with stride `up`,
    downsampling a depthwise conv with stride `down`, and padding that a conv can do itself
    is not done as a separate copy."""
    upx, upy = up
    downx, downy = down
    px0, px1, py0, py1 = pads
    if f is None:
        # Identity filter: only padding (negative: cropping), gain and subsampling remain.
        if upx > 1 or upy > 1:
            x = _zero_insert(x, upx, upy)
        if any(pads):
            x = F.pad(x, [px0, px1, py0, py1])
        if gain != 1:
            x = x * gain
        return x[:, :, ::downy, ::downx] if downx > 1 or downy > 1 else x

    # Scale in float32 before the cast, as the filters are defined in float32. A true
    # convolution with f is a correlation with f flipped; flip_filter asks for the correlation.
    f = (f * (gain ** (f.ndim / 2))).to(x.dtype)
    if f.ndim == 1:
        # Separable: a horizontal pass, then a vertical one; padding, up and down split by axis.
        x = _fir_pass(x, f[None, :], (upx, 1), (downx, 1), (px0, px1, 0, 0), flip_filter)
        return _fir_pass(x, f[:, None], (1, upy), (1, downy), (0, 0, py0, py1), flip_filter)
    return _fir_pass(x, f, up, down, pads, flip_filter)


def _zero_insert(x, upx, upy):
    """Each sample followed by up - 1 zeros along each axis."""
    batch, channels, height, width = x.shape
    x = x.reshape(batch, channels, height, 1, width, 1)
    x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
    return x.reshape(batch, channels, height * upy, width * upx)


def _fir_pass(x, f, up, down, pads, flip_filter):
    """One depthwise FIR pass with a 2-D kernel f [kh, kw] (a 1-D pass has kh or kw 1)."""
    upx, upy = up
    downx, downy = down
    px0, px1, py0, py1 = pads
    channels = x.shape[1]
    kh, kw = f.shape
    if upx > 1 or upy > 1:
        # Zero insertion, padding and a true convolution with f are one transposed conv with
        # stride `up` and kernel f (it scatters each sample through the whole kernel), whose
        # full output then starts k - 1 - pad_before samples early and ends
        # up + pad_after - k samples short: crop (or pad) that difference.
        kernel = f.flip([0, 1]) if flip_filter else f
        pads = [px0 - kw + 1, upx + px1 - kw, py0 - kh + 1, upy + py1 - kh]
        crop_x = max(0, min(-pads[0], -pads[1]))
        crop_y = max(0, min(-pads[2], -pads[3]))
        x = conv(x, kernel[None, None].expand(channels, 1, kh, kw),
                 ConvSpec(stride=(upy, upx), padding=(crop_y, crop_x), groups=channels,
                          transpose=True))
        px0, px1, py0, py1 = pads[0] + crop_x, pads[1] + crop_x, pads[2] + crop_y, pads[3] + crop_y
        if any((px0, px1, py0, py1)):
            x = F.pad(x, [px0, px1, py0, py1])
        if downx > 1 or downy > 1:
            x = x[:, :, ::downy, ::downx]
        return x
    # conv2d pads symmetrically by itself; anything else (or cropping) is a separate pad.
    conv_pad = (0, 0)
    if px0 == px1 >= 0 and py0 == py1 >= 0:
        conv_pad = (py0, px0)
    elif any(pads):
        x = F.pad(x, [px0, px1, py0, py1])
    kernel = f if flip_filter else f.flip([0, 1])  # conv2d correlates
    return conv(x, kernel[None, None].expand(channels, 1, kh, kw),
                ConvSpec(stride=(downy, downx), padding=conv_pad, groups=channels))
