"""Bias + activation + gain + clamp in one op.

Every layer of the networks ends this way; one op lets a compiled kernel do it in a single pass
over memory: on a GPU the CUDA kernel (stylegan2_ops._kernels, chosen by stylegan2_ops._backend),
on a CPU where autograd records nothing the compiled CPU kernel (stylegan2_ops.cpu_kernels;
linear and leaky ReLU, the networks' activations), which gives the PyTorch path's bytes. The
reference path (stylegan2_ops._reference) is built from differentiable PyTorch functions, so
first and second derivatives (R1, path length) come from autograd.
"""
from __future__ import annotations

import torch

from stylegan2_ops import _backend, _kernels, cpu_kernels
from stylegan2_ops._reference import ACTIVATIONS, Activation, activation, bias_act_reference
from stylegan2_ops.graph import kernel_may_take

__all__ = ["ACTIVATIONS", "Activation", "BiasAct", "activation", "bias_act"]


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
    impl: str | None = None,
    overwrite: bool = False,
) -> torch.Tensor:
    """`clamp(act(x + b, alpha) * gain, -clamp, clamp)`, b broadcast along `dim`.

    alpha/gain None take the activation's defaults (lrelu: 0.2 and sqrt(2)). overwrite=True
    lets the PyTorch path compute into x when no gradient is needed: for callers whose x is a
    fresh tensor of their own (the networks' layers at inference).
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
    if clamp is not None and not clamp >= 0:  # (NaN too)
        raise ValueError(f"clamp must be >= 0 or None, got {clamp}")
    alpha = spec.default_alpha if alpha is None else float(alpha)
    gain = spec.default_gain if gain is None else float(gain)
    if _backend.resolve(x, impl) == "cuda":
        return _kernels.bias_act(x, b, dim, act, alpha, gain, clamp)
    if impl in (None, "auto") and _cpu_kernel_fits(x, b, dim, spec, (alpha, gain, clamp), overwrite):
        if spec is ACTIVATIONS["linear"] and b is None and gain == 1 and clamp is None:
            return x
        out = x if overwrite else torch.empty_like(x)
        cpu_kernels.status().module.bias_act(x, b, dim, spec is ACTIVATIONS["lrelu"], alpha, gain,
                                             clamp, out)
        if overwrite and not out.is_inference():
            torch.autograd.graph.increment_version(out)  # as an in-place op of PyTorch's would
        return out
    return bias_act_reference(x, b, dim, spec, alpha, gain, clamp, overwrite)


_FLOAT32_MAX = float(torch.finfo(torch.float32).max)


def _cpu_kernel_fits(x: torch.Tensor, b: torch.Tensor | None, dim: int, spec: Activation,
                     scalars: tuple, overwrite: bool) -> bool:
    """CPU float32, nothing PyTorch must see (kernel_may_take), an activation the kernel has, a
    layout it walks (contiguous, or channels_last with the channels at dim 1), scalars a float
    holds (PyTorch refuses others), and the kernel built. Writing into x: not into an inference
    tensor outside inference mode, nor with b in x's memory (PyTorch refuses both)."""
    if x.device.type != "cpu" or x.dtype != torch.float32:
        return False
    if any(s is not None and not abs(s) <= _FLOAT32_MAX for s in scalars):
        return False
    if overwrite and ((x.is_inference() and not torch.is_inference_mode_enabled())
                      or (b is not None and b.untyped_storage().data_ptr()
                          == x.untyped_storage().data_ptr())):
        return False
    if spec not in (ACTIVATIONS["linear"], ACTIVATIONS["lrelu"]):
        return False
    if b is not None and (b.device.type != "cpu" or b.dtype != torch.float32 or not b.is_contiguous()):
        return False
    if not (x.is_contiguous()
            or (x.ndim == 4 and dim == 1 and x.is_contiguous(memory_format=torch.channels_last))):
        return False
    return kernel_may_take(x, b) and cpu_kernels.status().available


class BiasAct(torch.nn.Module):
    """Module form of bias_act with a learnable bias of `num_channels`."""

    def __init__(self, num_channels: int, act: str = "linear", alpha=None, gain=None, clamp=None):
        super().__init__()
        activation(act)
        self.bias = torch.nn.Parameter(torch.zeros(num_channels))
        self.act, self.alpha, self.gain, self.clamp = act, alpha, gain, clamp

    def forward(self, x):
        return bias_act(x, self.bias, 1, self.act, self.alpha, self.gain, self.clamp)
