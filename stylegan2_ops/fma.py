"""Fused multiply-add used by the unfused modulated convolution (demodulate + add noise)."""
import torch


def fma(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """`a * b + c` with broadcasting; autograd sums each gradient back to its input's shape."""
    return torch.addcmul(c, a, b)
