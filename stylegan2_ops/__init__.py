"""StyleGAN2 custom ops: upfirdn2d, bias_act, conv2d_resample, fma, and conv (a convolution
whose derivatives of every order run through the backend's own gradient routines), and
grid_sample (F.grid_sample's bilinear lookup, differentiable twice also where F.grid_sample
is not).

Each op has one dispatch point (stylegan2_ops._backend) that picks the compiled CUDA kernels
when they are available and usable, else the pure-PyTorch reference path. `SG2_OPS` or an
`impl=` argument forces a path. On a CPU, 3x3 convs may run by Winograd's F(4x4, 3x3)
(stylegan2_ops.winograd) where its compiled transforms were built: in the modulated conv at
inference and inside gradient computations; bias + activation runs in one pass there too
(stylegan2_ops.cpu_kernels: the compiled CPU kernels).
"""
from stylegan2_ops import cpu_kernels, winograd
from stylegan2_ops._backend import describe as describe_backend
from stylegan2_ops._backend import request_problem
from stylegan2_ops.bias_act import ACTIVATIONS, BiasAct, bias_act
from stylegan2_ops.conv2d_resample import conv2d_resample
from stylegan2_ops.convolution import ConvSpec, conv
from stylegan2_ops.fma import fma
from stylegan2_ops.graph import kernel_may_take, records_graph
from stylegan2_ops.grid_sample import grid_sample
from stylegan2_ops.upfirdn2d import (
    UpFirDn2d,
    downsample2d,
    filter2d,
    setup_filter,
    upfirdn2d,
    upsample2d,
)
from stylegan2_ops.weight_cache import WeightCache

__all__ = [
    "ACTIVATIONS",
    "BiasAct",
    "ConvSpec",
    "UpFirDn2d",
    "bias_act",
    "conv",
    "conv2d_resample",
    "cpu_kernels",
    "describe_backend",
    "downsample2d",
    "filter2d",
    "fma",
    "grid_sample",
    "kernel_may_take",
    "records_graph",
    "request_problem",
    "setup_filter",
    "upfirdn2d",
    "upsample2d",
    "WeightCache",
    "winograd",
]
