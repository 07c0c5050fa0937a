"""The compiled kernels as PyTorch custom operators: schemas, fake impls, autograd, wrappers.

Schemas are defined here (the C++ extension only registers CUDA implementations), so the fake
implementations and autograd formulas exist whether or not the kernels load, and torch.compile
can trace the ops without running them. Ops, all in the `stylegan2_ops` namespace:

- upfirdn2d(x, f, up, down, padding, flip_filter, gain): f is a 2-D float32 filter;
- bias_act(x, b, dim, act, alpha, gain, clamp);
- bias_act_grad(dy, y, x, b, dim, act, alpha, gain, clamp, order): dy * gain * act^(order)(x + b),
  zero where |y| >= clamp; without x, the first derivative comes from y.
"""
from __future__ import annotations

import math

import torch

NAMESPACE = "stylegan2_ops"
_LIB = torch.library.Library(NAMESPACE, "DEF")  # the definitions live as long as the process
_LIB.define(
    "upfirdn2d(Tensor x, Tensor f, int[] up, int[] down, int[] padding, bool flip_filter, "
    "float gain) -> Tensor"
)
_LIB.define(
    "bias_act(Tensor x, Tensor? b, int dim, str act, float alpha, float gain, float? clamp) -> Tensor"
)
_LIB.define(
    "bias_act_grad(Tensor dy, Tensor y, Tensor? x, Tensor? b, int dim, str act, float alpha, "
    "float gain, float? clamp, int order) -> Tensor"
)

# Activations whose derivative can be read from the output y (given gain > 0, alpha >= 0), so
# backward keeps y (which the next layer keeps anyway) instead of the input.
_FROM_OUTPUT = frozenset({"linear", "relu", "lrelu"})


def _ops():
    return getattr(torch.ops, NAMESPACE)


# ---------------------------------------------------------------------------------------------
# upfirdn2d


def _channels_last_output(x: torch.Tensor) -> bool:
    """The output layout rule the C++ op applies too: channels_last only if x is only that."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _upfirdn2d_out_size(x, f, up, down, padding) -> tuple[int, int]:
    fh, fw = int(f.shape[0]), int(f.shape[1])
    out_w = (x.shape[3] * up[0] + padding[0] + padding[1] - fw + down[0]) // down[0]
    out_h = (x.shape[2] * up[1] + padding[2] + padding[3] - fh + down[1]) // down[1]
    return out_h, out_w


@torch.library.register_fake(f"{NAMESPACE}::upfirdn2d")
def _upfirdn2d_fake(x, f, up, down, padding, flip_filter, gain):
    torch._check(x.ndim == 4 and f.ndim == 2, lambda: "upfirdn2d: x must be 4-D and f 2-D")
    out_h, out_w = _upfirdn2d_out_size(x, f, up, down, padding)
    fmt = torch.channels_last if _channels_last_output(x) else torch.contiguous_format
    return torch.empty([x.shape[0], x.shape[1], out_h, out_w], dtype=x.dtype, device=x.device,
                       memory_format=fmt)


def _upfirdn2d_setup_context(ctx, inputs, output):
    x, f, up, down, padding, flip_filter, gain = inputs
    ctx.save_for_backward(f)
    ctx.in_hw = (x.shape[2], x.shape[3])
    ctx.out_hw = (output.shape[2], output.shape[3])
    ctx.args = (list(up), list(down), list(padding), flip_filter, gain)


def _upfirdn2d_backward(ctx, dy):
    """dx = upfirdn2d(dy) with up/down swapped, the flip negated and the transposed padding."""
    (f,) = ctx.saved_tensors
    up, down, (px0, _, py0, _), flip_filter, gain = ctx.args
    in_h, in_w = ctx.in_hw
    out_h, out_w = ctx.out_hw
    fh, fw = int(f.shape[0]), int(f.shape[1])
    padding = [
        fw - px0 - 1,
        in_w * up[0] - out_w * down[0] + px0 - up[0] + 1,
        fh - py0 - 1,
        in_h * up[1] - out_h * down[1] + py0 - up[1] + 1,
    ]
    dx = None
    if ctx.needs_input_grad[0]:
        dx = _ops().upfirdn2d(dy, f, down, up, padding, not flip_filter, gain)
    return dx, None, None, None, None, None, None


torch.library.register_autograd(
    f"{NAMESPACE}::upfirdn2d", _upfirdn2d_backward, setup_context=_upfirdn2d_setup_context
)


def upfirdn2d(x, f, up, down, padding, flip_filter, gain):
    """The kernel path of stylegan2_ops.upfirdn2d (arguments already parsed to (x, y) pairs).

    f: float32 [fh, fw], [taps] (separable: a pass along x, then along y, each with sqrt(gain))
    or None (identity).
    """
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    f = f.to(device=x.device)
    if f.ndim == 2:
        return _ops().upfirdn2d(x, f, list(up), list(down), list(padding), flip_filter, float(gain))
    px0, px1, py0, py1 = padding
    half_gain = math.sqrt(gain)
    x = _ops().upfirdn2d(x, f[None, :], [up[0], 1], [down[0], 1], [px0, px1, 0, 0], flip_filter,
                         half_gain)
    return _ops().upfirdn2d(x, f[:, None], [1, up[1]], [1, down[1]], [0, 0, py0, py1],
                            flip_filter, half_gain)


# ---------------------------------------------------------------------------------------------
# bias_act


def _reduce_except(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sums t over every dimension but `dim` (the bias gradient)."""
    dims = [d for d in range(t.ndim) if d != dim]
    return t.sum(dims) if dims else t


def _needs_input(act: str, alpha: float, gain: float) -> bool:
    """Whether backward needs x (and b); otherwise the output y suffices."""
    return act not in _FROM_OUTPUT or gain <= 0 or (act == "lrelu" and alpha < 0)


@torch.library.register_fake(f"{NAMESPACE}::bias_act")
def _bias_act_fake(x, b, dim, act, alpha, gain, clamp):
    return torch.empty_like(x)


@torch.library.register_fake(f"{NAMESPACE}::bias_act_grad")
def _bias_act_grad_fake(dy, y, x, b, dim, act, alpha, gain, clamp, order):
    return torch.empty_like(y)


def _bias_act_setup_context(ctx, inputs, output):
    x, b, dim, act, alpha, gain, clamp = inputs
    ctx.args = (dim, act, alpha, gain, clamp)
    if _needs_input(act, alpha, gain):
        ctx.save_for_backward(output, x, b)
    else:
        ctx.save_for_backward(output, None, None)


def _bias_act_backward(ctx, dy):
    y, x, b = ctx.saved_tensors
    dim = ctx.args[0]
    dx = _ops().bias_act_grad(dy, y, x, b, *ctx.args, 1)
    db = _reduce_except(dx, dim) if ctx.needs_input_grad[1] else None
    return (dx if ctx.needs_input_grad[0] else None), db, None, None, None, None, None


torch.library.register_autograd(
    f"{NAMESPACE}::bias_act", _bias_act_backward, setup_context=_bias_act_setup_context
)


def _bias_act_grad_setup_context(ctx, inputs, output):
    dy, y, x, b, dim, act, alpha, gain, clamp, order = inputs
    ctx.args = (dim, act, alpha, gain, clamp)
    ctx.order = order
    ctx.save_for_backward(dy, y, x, b)


def _bias_act_grad_backward(ctx, ddx):
    """Linear in dy (the same op again); w.r.t. x through the next derivative of act.

    y enters only through the clamp mask and piecewise-constant slopes: no gradient.
    """
    dy, y, x, b = ctx.saved_tensors
    dim, act = ctx.args[0], ctx.args[1]
    d_dy = d_x = d_b = None
    if ctx.needs_input_grad[0]:
        d_dy = _ops().bias_act_grad(ddx, y, x, b, *ctx.args, ctx.order)
    curved = act not in _FROM_OUTPUT  # piecewise-linear ones have zero higher derivatives
    if curved and x is not None and (ctx.needs_input_grad[2] or ctx.needs_input_grad[3]):
        if ctx.order != 1:
            raise NotImplementedError(
                f"bias_act ({act}): third and higher derivatives are not implemented in the CUDA "
                "kernels; use impl='reference'"
            )
        dz = _ops().bias_act_grad(ddx * dy, y, x, b, *ctx.args, 2)
        d_x = dz if ctx.needs_input_grad[2] else None
        d_b = _reduce_except(dz, dim) if ctx.needs_input_grad[3] else None
    return d_dy, None, d_x, d_b, None, None, None, None, None, None


torch.library.register_autograd(
    f"{NAMESPACE}::bias_act_grad", _bias_act_grad_backward, setup_context=_bias_act_grad_setup_context
)


def _dense(x: torch.Tensor) -> torch.Tensor:
    """Contiguous or channels_last as is; anything else made contiguous (flat indexing)."""
    if x.is_contiguous() or (x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last)):
        return x
    return x.contiguous()


def bias_act(x, b, dim, act, alpha, gain, clamp):
    """The kernel path of stylegan2_ops.bias_act (arguments already validated and defaulted)."""
    if b is not None:
        b = b.to(dtype=x.dtype, device=x.device)
    return _ops().bias_act(_dense(x), b, dim, act, float(alpha), float(gain),
                           None if clamp is None else float(clamp))
