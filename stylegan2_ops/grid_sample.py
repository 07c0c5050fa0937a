"""Bilinear grid sampling that can be differentiated twice with respect to its input.

The augmentation's geometric transforms resample the real images with a grid, and the R1
penalty differentiates the discriminator's gradient with respect to those images once more.
PyTorch's grid_sample has that second derivative only in recent releases (2.9 refuses:
"derivative for aten::grid_sampler_2d_backward is not implemented"). Sampling is linear in the
input, so its gradient is the sampling's adjoint (each output gradient spread back onto the
input pixels it read), and the adjoint's own derivative is the sampling again: two functions
that are each other's backward give derivatives of every order. The calls are PyTorch's own
kernels, so values and first gradients are those of F.grid_sample. The grid is a constant
(the augmentation draws it): no gradient flows to it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# aten's enums for grid_sampler_2d_backward: interpolation and padding modes.
_BILINEAR = 0
_ZEROS = 0


def grid_sample(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """F.grid_sample(x, grid, mode='bilinear', padding_mode='zeros', align_corners=False),
    differentiable to any order in `x`; `grid` must not need a gradient."""
    if grid.requires_grad:
        raise ValueError("grid_sample: the grid must be a constant (requires_grad=False)")
    return _Sample.apply(x, grid)


class _Sample(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(grid)
        ctx.x_shape = x.shape
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):
        (grid,) = ctx.saved_tensors
        grad_x = _Spread.apply(grad_y, grid, ctx.x_shape) if ctx.needs_input_grad[0] else None
        return grad_x, None


class _Spread(torch.autograd.Function):
    """The sampling's adjoint, as a function of the output gradient."""

    @staticmethod
    def forward(ctx, grad_y: torch.Tensor, grid: torch.Tensor, x_shape) -> torch.Tensor:
        ctx.save_for_backward(grid)
        shape_only = grad_y.new_empty(x_shape)  # the kernel reads its shape, not its values
        grad_x, _ = torch.ops.aten.grid_sampler_2d_backward(
            grad_y, shape_only, grid, _BILINEAR, _ZEROS, False, [True, False])
        return grad_x

    @staticmethod
    def backward(ctx, grad_grad_x: torch.Tensor):
        (grid,) = ctx.saved_tensors
        return _Sample.apply(grad_grad_x, grid), None, None
