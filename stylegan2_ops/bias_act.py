"""Bias + activation + gain + clamp in one op.

Every layer of the networks ends this way; one op lets a compiled kernel do it in a single pass
over memory (stylegan2_ops._kernels, chosen by stylegan2_ops._backend). The reference path is
built from differentiable PyTorch functions, so first and second derivatives (R1, path length)
come from autograd.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import torch
import torch.nn.functional as F

from stylegan2_ops import _backend, _kernels


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


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
    impl: str | None = None,
) -> torch.Tensor:
    """`clamp(act(x + b, alpha) * gain, -clamp, clamp)`, b broadcast along `dim`.

    alpha/gain None take the activation's defaults (lrelu: 0.2 and sqrt(2)).
    """
    spec = activation(act)
    if not isinstance(x, torch.Tensor) or x.ndim == 0:
        raise ValueError("x must be a tensor with at least one dimension")
    if not -x.ndim <= dim < x.ndim:
        raise ValueError(f"dim={dim} is out of range for a {x.ndim}-D tensor")
    dim = dim % x.ndim
    if b is not None and (b.ndim != 1 or b.shape[0] != x.shape[dim]):
        raise ValueError(
            f"bias must be 1-D with {x.shape[dim]} entries (x.shape[{dim}]), got {list(b.shape)}"
        )
    if clamp is not None and clamp < 0:
        raise ValueError(f"clamp must be >= 0 or None, got {clamp}")
    alpha = spec.default_alpha if alpha is None else float(alpha)
    gain = spec.default_gain if gain is None else float(gain)
    if _backend.resolve(x, impl) == "cuda":
        return _kernels.bias_act(x, b, dim, act, alpha, gain, clamp)
    return _bias_act_reference(x, b, dim, spec, alpha, gain, clamp)


def _bias_act_reference(x, b, dim, spec, alpha, gain, clamp):
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


class BiasAct(torch.nn.Module):
    """Module form of bias_act with a learnable bias of `num_channels`."""

    def __init__(self, num_channels: int, act: str = "linear", alpha=None, gain=None, clamp=None):
        super().__init__()
        activation(act)
        self.bias = torch.nn.Parameter(torch.zeros(num_channels))
        self.act, self.alpha, self.gain, self.clamp = act, alpha, gain, clamp

    def forward(self, x):
        return bias_act(x, self.bias, 1, self.act, self.alpha, self.gain, self.clamp)
