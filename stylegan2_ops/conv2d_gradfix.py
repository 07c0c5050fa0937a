"""conv2d / conv_transpose2d that can skip weight gradients inside regularisers.

R1 and path-length regularisation take a gradient w.r.t. the images (or ws) with
`create_graph=True` and then differentiate that again. `torch.autograd.grad(..., inputs=x)`
already skips weight gradients on its own (the training loss relies on that); this context is
for code that runs `.backward()` for such an inner gradient: convs created inside it, and
backward passes run inside it, compute no weight gradients, while an outer backward outside
still reaches the weights through the input gradient, whose formula depends on them.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

import torch
import torch.nn.functional as F

_weight_gradients_disabled = contextvars.ContextVar("sg2_weight_gradients_disabled", default=False)


@contextlib.contextmanager
def no_weight_gradients(disable: bool = True) -> Iterator[None]:
    """Backward passes run inside the block compute no gradient for conv weights and biases."""
    token = _weight_gradients_disabled.set(bool(disable))
    try:
        yield
    finally:
        _weight_gradients_disabled.reset(token)


def _pair(value) -> list[int]:
    return [int(value), int(value)] if isinstance(value, int) else [int(v) for v in value]


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Same as torch.nn.functional.conv2d, honouring no_weight_gradients()."""
    if _weight_gradients_disabled.get() and torch.is_grad_enabled():
        params = (_pair(stride), _pair(padding), _pair(dilation), False, [0, 0], groups)
        return _ConvInputGradOnly.apply(x, weight, bias, params)
    return F.conv2d(x, weight, bias, stride, padding, dilation, groups)


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Same as torch.nn.functional.conv_transpose2d, honouring no_weight_gradients()."""
    if _weight_gradients_disabled.get() and torch.is_grad_enabled():
        params = (_pair(stride), _pair(padding), _pair(dilation), True, _pair(output_padding), groups)
        return _ConvInputGradOnly.apply(x, weight, bias, params)
    return F.conv_transpose2d(x, weight, bias, stride, padding, output_padding, groups, dilation)


class _ConvInputGradOnly(torch.autograd.Function):
    """A conv whose backward computes only the input gradient, itself differentiable."""

    @staticmethod
    def forward(ctx, x, weight, bias, params):
        stride, padding, dilation, transposed, output_padding, groups = params
        ctx.save_for_backward(x, weight)
        ctx.params = params
        ctx.bias_shape = None if bias is None else list(bias.shape)
        return torch.ops.aten.convolution(
            x, weight, bias, stride, padding, dilation, transposed, output_padding, groups
        )

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        stride, padding, dilation, transposed, output_padding, groups = ctx.params
        # Checked when the backward runs: the regulariser's inner gradient (inside the block)
        # skips weights, the outer backward (outside it) still gets them. Where the flag is not
        # visible (autograd's device threads) the gradient is simply computed: correct, slower.
        want_params = not _weight_gradients_disabled.get()
        mask = [
            ctx.needs_input_grad[0],
            ctx.needs_input_grad[1] and want_params,
            ctx.needs_input_grad[2] and want_params,
        ]
        if not any(mask):
            return None, None, None, None
        # aten's convolution_backward has its own derivative formula, so these stay
        # differentiable for the regularisers' second backward.
        grad_x, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad_out, x, weight, ctx.bias_shape, stride, padding, dilation, transposed,
            output_padding, groups, mask,
        )
        return grad_x, grad_w, grad_b, None
