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


def bias_act_reference(x, b, dim, spec, alpha, gain, clamp):
    """Bias, activation, gain and clamp from differentiable PyTorch functions (any order)."""
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or (b is not None and b.requires_grad))
    if not needs_grad and spec.func_ is not None:
        return _bias_act_inplace(x, b, dim, spec, alpha, gain, clamp)
    if b is not None:
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)]).to(x.dtype)
    x = spec.func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def _bias_act_inplace(x, b, dim, spec, alpha, gain, clamp):
    """The same values, computed in one new tensor (inference: no graph to keep)."""
    if b is not None:
        y = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)]).to(x.dtype)
    elif spec is not ACTIVATIONS["linear"] or gain != 1 or clamp is not None:
        y = x.clone()
    else:
        return x
    y = spec.func_(y, alpha)
    if gain != 1:
        y.mul_(gain)
    if clamp is not None:
        y.clamp_(-clamp, clamp)
    return y


def upfirdn2d_reference(x, f, up, down, pads, flip_filter, gain):
    """Zero insertion, pad, depthwise conv, strided slice: differentiable to any order."""
    upx, upy = up
    downx, downy = down
    px0, px1, py0, py1 = pads
    batch, channels, height, width = x.shape
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)

    if upx > 1 or upy > 1:
        x = x.reshape(batch, channels, height, 1, width, 1)
        x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
        x = x.reshape(batch, channels, height * upy, width * upx)

    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]

    # Scale in float32 before the cast, as the filters are defined in float32.
    f = (f * (gain ** (f.ndim / 2))).to(x.dtype)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))  # conv2d correlates; flipping makes it a convolution
    if f.ndim == 2:
        x = F.conv2d(x, f[None, None].expand(channels, 1, *f.shape), groups=channels)
    else:
        x = F.conv2d(x, f[None, None, None, :].expand(channels, 1, 1, -1), groups=channels)
        x = F.conv2d(x, f[None, None, :, None].expand(channels, 1, -1, 1), groups=channels)

    if downx > 1 or downy > 1:
        x = x[:, :, ::downy, ::downx]
    return x
