"""A numerical check of freshly loaded kernels against the reference path, before first use.

The kernels are compiled ahead of time for many GPU generations; a wrong result on one of them
would silently spoil a training run that costs days. A few small cases (forward and gradients)
take milliseconds at start-up; any mismatch keeps the reference path, with the reason logged.
"""
from __future__ import annotations

import math

import torch

from stylegan2_ops._reference import activation, bias_act_reference, upfirdn2d_reference

RTOL, ATOL = 1e-4, 1e-5


def _compare(name: str, got: torch.Tensor, want: torch.Tensor) -> str | None:
    if got.shape != want.shape:
        return f"{name}: shape {list(got.shape)} != reference {list(want.shape)}"
    if not torch.allclose(got, want, rtol=RTOL, atol=ATOL):
        error = (got - want).abs().max().item()
        return f"{name}: max difference {error:.3g} from the reference path"
    return None


def _upfirdn2d_cases(device):
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0], device=device) / 8  # the networks' filter
    f, f_sep = torch.outer(taps, taps), taps
    yield "upfirdn2d up2", f, (2, 2), (1, 1), (2, 1, 2, 1), 4.0
    yield "upfirdn2d down2", f, (1, 1), (2, 2), (1, 1, 1, 1), 1.0
    yield "upfirdn2d filter", f, (1, 1), (1, 1), (2, 1, 2, 1), 1.0
    yield "upfirdn2d separable up2 crop", f_sep, (2, 2), (1, 1), (1, 0, -1, 2), 4.0


def kernel_mismatch(device: torch.device, kernels=None) -> str | None:
    """None when the kernel ops match the reference path on `device`, else what differs.

    The first op call of a process runs this, often inside `no_grad` or `inference_mode`
    (generation, a training run's first snapshot grid), or autocast (bfloat16 generation), and
    the check needs gradients and float32 on both sides; cuDNN's TF32 convolutions in the
    reference path would differ by more than the tolerance.
    """
    cudnn = torch.backends.cudnn
    with torch.inference_mode(False), torch.enable_grad(), cudnn.flags(
            enabled=cudnn.enabled, benchmark=False, deterministic=cudnn.deterministic,
            allow_tf32=False), torch.autocast(device.type, enabled=False):
        return _mismatch(device, kernels)


def _mismatch(device: torch.device, kernels=None) -> str | None:
    from stylegan2_ops import _kernels as default_kernels

    kernels = kernels or default_kernels
    gen = torch.Generator().manual_seed(0)
    x = torch.randn([2, 3, 9, 10], generator=gen).to(device)
    for name, f, up, down, pads, gain in _upfirdn2d_cases(device):
        xr, xk = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        want = upfirdn2d_reference(xr, f, up, down, pads, False, gain)
        got = kernels.upfirdn2d(xk, f, up, down, pads, False, gain)
        problem = _compare(name, got, want)
        if problem:
            return problem
        dy = torch.randn(want.shape, generator=gen).to(device)
        (grad_want,) = torch.autograd.grad(want, xr, dy)
        (grad_got,) = torch.autograd.grad(got, xk, dy)
        problem = _compare(f"{name} gradient", grad_got, grad_want)
        if problem:
            return problem

    x = torch.randn([2, 6, 5, 7], generator=gen).to(device)
    b = torch.randn([6], generator=gen).to(device)
    for act, clamp in (("lrelu", 0.5), ("linear", None), ("tanh", 0.9)):
        spec = activation(act)
        gain = spec.default_gain * math.sqrt(0.5)
        xr, xk = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        br, bk = b.clone().requires_grad_(True), b.clone().requires_grad_(True)
        want = bias_act_reference(xr, br, 1, spec, spec.default_alpha, gain, clamp)
        got = kernels.bias_act(xk, bk, 1, act, spec.default_alpha, gain, clamp)
        problem = _compare(f"bias_act {act}", got, want)
        if problem:
            return problem
        dy = torch.randn(want.shape, generator=gen).to(device)
        grads_want = torch.autograd.grad(want, [xr, br], dy)
        grads_got = torch.autograd.grad(got, [xk, bk], dy)
        for part, g, w in zip(("x", "b"), grads_got, grads_want):
            problem = _compare(f"bias_act {act} gradient w.r.t. {part}", g, w)
            if problem:
                return problem
    return None
