"""2-D convolution whose gradients of every order are convolutions again.

Autograd's own second derivative of a convolution (R1 and path length differentiate through a
backward pass) computes the weight gradient by a generic formula: a convolution with the batch
and channel axes swapped, split per group for depthwise filters, and run even for filters that
need no gradient. Here each derivative is one call of the backend's own routine (oneDNN on a
CPU, cuDNN on a GPU), each itself differentiable the same way, and a gradient is only computed
when this backward pass will use it.

Values are those of torch's conv2d / conv_transpose2d; only the work to get them changes. On a
CPU, plain 3x3 convs with padding 1 large enough to pay for a per-call filter transform, their
input gradients (the same kind of conv) and their weight gradients run by Winograd's
F(4x4, 3x3) (stylegan2_ops.winograd): equal to about 1e-5 relative; strided convs' weight
gradients run as one matrix product over their windows (stylegan2_ops.window_product).
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from stylegan2_ops import window_product, winograd
from stylegan2_ops.graph import records_graph

__all__ = ["ConvSpec", "conv"]


@dataclasses.dataclass(frozen=True)
class ConvSpec:
    """One convolution's geometry. transpose=True: conv_transpose2d, weight [in, out/g, kh, kw]."""

    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    transpose: bool = False
    output_padding: tuple[int, int] = (0, 0)


def conv(x: torch.Tensor, w: torch.Tensor, spec: ConvSpec) -> torch.Tensor:
    """conv2d (or conv_transpose2d) of x with w; see the module docstring for the gradients."""
    if records_graph(x, w):
        return _recorded_conv(x, w, spec)
    return _forward(x, w, spec)


def _recorded_conv(x, w, spec: ConvSpec):
    return _Conv.apply(_behind_a_node(x), _behind_a_node(_in_layout_of(x, w)), spec)


def _in_layout_of(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """w in channels_last when x is: the backend wants the weight in its input's layout and
    converts it at every call otherwise (forward, input gradient, weight gradient and their
    own derivatives: 340 ms of weight copies in a 64 px G+D step, 115 ms with this); converted
    here, the copy is made once and saved for the backward passes."""
    channels_last = torch.channels_last
    if (x.ndim == 4 and w.ndim == 4 and x.is_contiguous(memory_format=channels_last)
            and not x.is_contiguous() and not w.is_contiguous(memory_format=channels_last)):
        return w.contiguous(memory_format=channels_last)
    return w


def _behind_a_node(t: torch.Tensor) -> torch.Tensor:
    """A leaf that needs a gradient, seen through a view: autograd can say whether it will run a
    view's node in this pass, but not a leaf's."""
    return t.view_as(t) if t.requires_grad and t.is_leaf else t


def _forward(x, w, spec: ConvSpec, in_autograd: bool = False):
    if in_autograd and _by_winograd(x, w, spec):
        return winograd.conv3x3(x, winograd.transform_filter(w), per_image=False)
    if spec.transpose:
        return F.conv_transpose2d(x, w, stride=spec.stride, padding=spec.padding,
                                  output_padding=spec.output_padding, groups=spec.groups)
    return F.conv2d(x, w, stride=spec.stride, padding=spec.padding, groups=spec.groups)


def _conv_of_a_derivative(x, w, spec: ConvSpec):
    """conv() for the convs a backward pass makes (recorded or not)."""
    if records_graph(x, w):
        return _recorded_conv(x, w, spec)
    return _forward(x, w, spec, in_autograd=True)


def _by_winograd(x, w, spec: ConvSpec) -> bool:
    """A plain 3x3 conv with padding 1 in a gradient computation (training: a step's weights
    change at every step), where the CPU Winograd path wins even with its filter transformed at
    every call. Counting the whole batch's tiles is fine here; inference goes through the
    modulated conv's own per-image rule (winograd.suits)."""
    return (spec == _PLAIN_3X3 and
            winograd.suits(x, w, spec.padding[0], per_image=False,
                           min_tiles=winograd.MIN_TILES_UNCACHED))


_PLAIN_3X3 = ConvSpec(padding=(1, 1))


def _will_use(ctx, index: int) -> bool:
    """Whether this backward pass needs the gradient of input `index` (autograd.grad with
    `inputs=` skips the others; a node that is not on the way is not run)."""
    if not ctx.needs_input_grad[index]:
        return False
    node = ctx.next_functions[index][0]
    if node is None:
        return False
    will_execute = getattr(torch._C, "_will_engine_execute_node", None)
    return will_execute is None or will_execute(node)  # unknown to this torch: compute it


def _backend_grads(grad, x, w, spec: ConvSpec, mask):
    """The backend's own backward routines: gradient w.r.t. input and/or weight (by mask)."""
    return torch.ops.aten.convolution_backward(
        grad, x, w, None, list(spec.stride), list(spec.padding), [1, 1], spec.transpose,
        list(spec.output_padding), spec.groups, mask)


def _input_grad(grad, w, x, spec: ConvSpec):
    # x only lends its shape: no gradient flows back into it.
    return _InputGrad.apply(_behind_a_node(grad), _behind_a_node(w), x.detach(), spec)


def _weight_grad(x, grad, w, spec: ConvSpec):
    # w only lends its shape: no gradient flows back into it.
    return _WeightGrad.apply(_behind_a_node(x), _behind_a_node(grad), w.detach(), spec)


class _Conv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, spec):
        ctx.spec = spec
        ctx.save_for_backward(x, w)
        return _forward(x, w, spec, in_autograd=True)

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        spec = ctx.spec
        grad_x = grad_w = None
        if _will_use(ctx, 0):
            grad_x = _input_grad(grad, w, x, spec)
        if _will_use(ctx, 1):
            grad_w = _weight_grad(x, grad, w, spec)
        return grad_x, grad_w, None


class _InputGrad(torch.autograd.Function):
    """dL/dx of conv(x, w) given dL/dy: linear in dL/dy and in w, so its own gradients are a
    forward conv of the incoming gradient and a weight gradient."""

    @staticmethod
    def forward(ctx, grad, w, x, spec):
        ctx.spec = spec
        ctx.save_for_backward(grad, w)
        if _by_winograd(grad, w, spec):
            # For a plain 3x3 conv with padding 1, dL/dx is the same conv of dL/dy with the
            # filter turned around and its channel axes swapped.
            return winograd.conv3x3(grad, winograd.transform_filter(w.transpose(0, 1).flip([2, 3])),
                                    per_image=False)
        return _backend_grads(grad, x, w, spec, [True, False, False])[0]

    @staticmethod
    def backward(ctx, grad_grad_x):
        grad, w = ctx.saved_tensors
        spec = ctx.spec
        grad_grad = grad_w = None
        if _will_use(ctx, 0):
            grad_grad = _conv_of_a_derivative(grad_grad_x, w, spec)
        if _will_use(ctx, 1):
            grad_w = _weight_grad(grad_grad_x, grad, w, spec)
        return grad_grad, grad_w, None, None


class _WeightGrad(torch.autograd.Function):
    """dL/dw of conv(x, w) given dL/dy: bilinear in (x, dL/dy), so its own gradients are an
    input gradient and a forward conv, with the incoming gradient as the weight."""

    @staticmethod
    def forward(ctx, x, grad, w, spec):
        ctx.spec = spec
        ctx.save_for_backward(x, grad)
        if _by_winograd(x, w, spec) and _by_winograd(grad, w, spec):  # the kernel reads both
            grad_w = winograd.weight_grad(x, grad)
        elif window_product.suits(x, grad, w, spec.stride, spec.padding, spec.groups,
                                  spec.output_padding):
            grad_w = window_product.weight_grad(x, grad, tuple(w.shape[2:]), spec.stride,
                                                spec.transpose)
        else:
            return _backend_grads(grad, x, w, spec, [False, True, False])[1]
        return torch.empty_like(w).copy_(grad_w)  # the weight's layout, as the backend gives

    @staticmethod
    def backward(ctx, grad_grad_w):
        x, grad = ctx.saved_tensors
        spec = ctx.spec
        grad_x = grad_grad = None
        if _will_use(ctx, 0):
            grad_x = _input_grad(grad, grad_grad_w, x, spec)
        if _will_use(ctx, 1):
            grad_grad = _conv_of_a_derivative(x, grad_grad_w, spec)
        return grad_x, grad_grad, None, None
