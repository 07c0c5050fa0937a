"""Building blocks shared by the generator and the discriminator.

Weights are stored unscaled and multiplied by a constant gain at run time ("equalized learning
rate"), so that Adam sees every layer at the same scale. Names and shapes of parameters follow
the reference implementation, so published weights load without a mapping table.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from stylegan2_ops import (
    WeightCache,
    bias_act,
    conv2d_resample,
    fma,
    kernel_may_take,
    records_graph,
    setup_filter,
    winograd,
)
from stylegan2_ops.bias_act import activation as lookup_activation

DEFAULT_RESAMPLE_FILTER = (1, 3, 3, 1)


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scales each sample to unit root-mean-square along `dim`."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def memory_format_for(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


def runs_in_half(use_fp16: bool, force_fp32: bool, device: torch.device) -> bool:
    """Whether a block marked fp16 computes in float16 here: on GPUs only. Half precision is the
    reference's GPU speed-up; on a CPU it is slower than float32 (paper256 generation at batch 1
    2x, a conv's backward far more, where oneDNN has no half kernel) and less exact (~1e-2),
    so CPU runs compute those blocks in float32, as if force_fp32 were given (clamps kept)."""
    return use_fp16 and not force_fp32 and device.type == "cuda"


def activation_memory_format(channels_last: bool, device: torch.device, activations: int,
                             weights: int) -> torch.memory_format:
    """The layout a block's activations run in.

    channels_last where the block asks for it (fp16 blocks with fp16_channels_last), and on a
    CPU where the activations matter: whenever autograd records (G+D step at 64 px, batch 8:
    1.05x) and at inference where a block's activations outnumber its conv weight (paper256
    generation at batch 1: 1.15x; lower blocks are bound by their weights, and their layout
    changes cost more than they give). In channels_last oneDNN reads and writes activations as
    they are; in the plain layout it reorders them around every call, the transposed convs'
    outputs worst of all. Values are the same to float rounding.
    """
    if channels_last:
        return torch.channels_last
    if device.type == "cpu" and (torch.is_grad_enabled() or activations >= weights):
        return torch.channels_last
    return torch.contiguous_format


class FullyConnectedLayer(torch.nn.Module):
    """Dense layer with equalized learning rate; `lr_multiplier` slows the mapping network."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 activation: str = "linear", lr_multiplier: float = 1, bias_init: float = 0):
        super().__init__()
        lookup_activation(activation)
        self.in_features, self.out_features = in_features, out_features
        self.activation = activation
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = (
            torch.nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        )
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier
        self.weight_cache = WeightCache()  # the scaled weight, kept between inference calls

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if records_graph(self.weight):
            w = self._scaled_weight(self.weight, x.dtype)
        else:  # the endpoint calls each layer once per row: 20 [512, 512] products per image
            w = self.weight_cache.get(self.weight, f"scaled as {x.dtype}",
                                      lambda weight: self._scaled_weight(weight, x.dtype))
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)

    def _scaled_weight(self, weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return weight.to(dtype) * self.weight_gain

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, activation={self.activation}"


class Conv2dLayer(torch.nn.Module):
    """Convolution with equalized learning rate, optional FIR up/down-sampling, bias, activation.

    `trainable=False` (Freeze-D) keeps weight and bias as buffers under the same names.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "linear", up: int = 1, down: int = 1,
                 resample_filter=DEFAULT_RESAMPLE_FILTER, conv_clamp: float | None = None,
                 channels_last: bool = False, trainable: bool = True):
        super().__init__()
        self.activation = activation
        self.act_gain = lookup_activation(activation).default_gain
        self.up, self.down = up, down
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size])
        weight = weight.to(memory_format=memory_format_for(channels_last))
        bias_tensor = torch.zeros([out_channels]) if bias else None
        if trainable:
            self.weight = torch.nn.Parameter(weight)
            self.bias = torch.nn.Parameter(bias_tensor) if bias else None
        else:
            self.register_buffer("weight", weight)
            self.register_buffer("bias", bias_tensor)

    def forward(self, x: torch.Tensor, gain: float = 1) -> torch.Tensor:
        w = self.weight * self.weight_gain
        x = conv2d_resample(x, w.to(x.dtype), self.resample_filter, up=self.up, down=self.down,
                            padding=self.padding, flip_weight=(self.up == 1))
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        b = self.bias.to(x.dtype) if self.bias is not None else None
        return bias_act(x, b, act=self.activation, gain=self.act_gain * gain, clamp=clamp)

    def extra_repr(self) -> str:
        out_ch, in_ch, k, _ = self.weight.shape
        return f"in={in_ch}, out={out_ch}, kernel={k}, up={self.up}, down={self.down}, act={self.activation}"


def modulated_conv2d(
    x: torch.Tensor,  # [N, in, H, W]
    weight: torch.Tensor,  # [out, in, kh, kw]
    styles: torch.Tensor,  # [N, in]
    noise: torch.Tensor | None = None,  # broadcastable to [N, out, H', W']
    up: int = 1,
    down: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    flip_weight: bool = True,
    fused_modconv: bool = True,
    weight_cache: WeightCache | None = None,
) -> torch.Tensor:
    """StyleGAN2's style-modulated convolution, with optional demodulation.

    Fused: one grouped conv with a per-sample weight (fast at inference). Unfused: scale the
    activations instead, convolve with the shared weight, then demodulate (cheaper to train).
    weight_cache: the layer's store of what inference derives from its weight alone (the
    squared tap sums of the demodulation, the CPU Winograd filter, the transposed conv's weight
    order); used only where autograd records nothing. A 3x3 conv without resampling then takes
    the CPU Winograd path where it wins (styles, demodulation and noise ride in its
    transforms), whichever form was asked for.
    """
    batch_size = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape

    cache = weight_cache if weight_cache is not None and not records_graph(weight) else None
    # In half precision, pre-normalise so that the per-sample weights cannot overflow; the
    # scale cancels out through demodulation.
    if x.dtype == torch.float16 and demodulate:
        cache = None  # the weight below is a new tensor at every call
        weight = weight * (
            1 / np.sqrt(in_channels * kh * kw)
            / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True)
        )
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    # Demodulation: the norm of each output filter after modulation. sum_{i,k} (w[o,i,k] s[i])^2
    # is one [N, in*k*k] x [in*k*k, out] product of the squared styles (each repeated k*k times)
    # with the squared weight: no [N, out, in, k, k] tensor, and no reduction over the k*k taps
    # (torch reduces such short rows at a third of a matrix product's speed). With a cache
    # (inference), the weight's part is summed over the taps once; on a CPU each sample's
    # coefficients are then a [1, in] x [in, out] product of their own: a product over 4 or
    # more rows gives a row other bits than it gets alone (MKL), and the endpoint promises a
    # request the bytes it would get alone, whatever else is in its batch. (On a GPU the
    # endpoint runs one fixed batch shape, which keeps its bytes without this.)
    dcoefs = None
    if demodulate and cache is not None:
        tap_sums = cache.get(weight, "squared tap sums", _squared_tap_sums)  # [in, out]
        styles_sq = styles.square()
        if x.device.type == "cpu":
            dcoefs = torch.cat([styles_sq[i:i + 1] @ tap_sums for i in range(batch_size)])
        else:
            dcoefs = styles_sq @ tap_sums
        dcoefs = (dcoefs + 1e-8).rsqrt()  # [N, out]
    elif demodulate:
        styles_sq = styles.square().repeat_interleave(kh * kw, dim=1)  # [N, in*k*k]
        weight_sq = weight.square().reshape(out_channels, -1)  # [out, in*k*k]
        dcoefs = (styles_sq @ weight_sq.t() + 1e-8).rsqrt()  # [N, out]

    if (cache is not None and up == 1 and down == 1 and flip_weight
            and winograd.suits(x, weight, padding, noise)  # (x, weight, noise: may take)
            and kernel_may_take(styles, dcoefs)):
        transformed = cache.get(weight, "winograd filter", winograd.transform_filter)
        return winograd.conv3x3(x, transformed, styles, dcoefs, noise)

    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(batch_size, -1, 1, 1)
        shared = weight.to(x.dtype)
        if cache is not None and up > 1 and shared is weight:
            # The transposed conv wants [in, out] memory order: kept in it, not copied per call.
            shared = cache.get(weight, "in-out order", _in_out_order)
        x = conv2d_resample(x, shared, resample_filter, up=up, down=down,
                            padding=padding, flip_weight=flip_weight)
        if demodulate and noise is not None:
            dcoefs, noise = dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1), noise.to(x.dtype)
            if records_graph(x, dcoefs, noise):
                return fma(x, dcoefs, noise)
            return torch.addcmul(noise, x, dcoefs, out=x)  # the same op, written into x
        if demodulate:
            x = scale_fresh(x, dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1))
        return add_to_fresh(x, noise)

    # Fused: fold the batch into the channels and run one grouped convolution with per-sample
    # weights, modulated and demodulated by one product.
    scale = styles.reshape(batch_size, 1, -1)  # [N, 1, in]
    if demodulate:
        scale = scale * dcoefs.reshape(batch_size, -1, 1)  # [N, out, in]
    w = _modulated_weight(weight, scale, transposed=(up > 1))  # [N, out, in, kh, kw]
    if batch_size > 1:
        # (One sample is left as it is: reshaping a channels_last [1, C, H, W] gives it a
        # batch stride that oneDNN takes for a foreign layout, and reorders.)
        x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_channels, kh, kw)
    x = conv2d_resample(x, w.to(x.dtype), resample_filter, up=up, down=down, padding=padding,
                        groups=batch_size, flip_weight=flip_weight)
    if batch_size > 1:
        x = x.reshape(batch_size, -1, *x.shape[2:])
    return add_to_fresh(x, noise)


def _squared_tap_sums(weight: torch.Tensor) -> torch.Tensor:
    """sum over the filter taps of weight^2, as [in, out]."""
    return weight.square().sum(dim=[2, 3]).t().contiguous()


def _in_out_order(weight: torch.Tensor) -> torch.Tensor:
    """weight [out, in, kh, kw] with the values in [in, out, kh, kw] memory order."""
    return weight.transpose(0, 1).contiguous().transpose(0, 1)


def _modulated_weight(weight: torch.Tensor, scale: torch.Tensor, transposed: bool) -> torch.Tensor:
    """weight [out, in, kh, kw] times scale [N, out or 1, in], as [N, out, in, kh, kw].

    transposed: the conv runs as a transposed conv, whose weight torch wants in [in, out, kh, kw]
    memory order; for one sample without autograd the product is written in that order (torch
    would otherwise copy it there: 1.2-2.7 ms per 512-channel layer).
    """
    scale = scale.unsqueeze(-1).unsqueeze(-1)
    if not transposed or scale.shape[0] != 1 or records_graph(weight, scale):
        return weight.unsqueeze(0) * scale
    out_channels, in_channels, kh, kw = weight.shape
    w = torch.empty([in_channels, out_channels, kh, kw], dtype=torch.result_type(weight, scale),
                    device=weight.device)
    torch.mul(weight.transpose(0, 1), scale[0].transpose(0, 1), out=w)
    return w.transpose(0, 1).unsqueeze(0)


def add_to_fresh(x: torch.Tensor, other: torch.Tensor | None) -> torch.Tensor:
    """x + other for an x the caller made and gives up: in place where autograd records
    nothing. A new tensor of a 256 px layer's size lands in memory no cache holds."""
    if other is None:
        return x
    other = other.to(x.dtype)
    return x + other if records_graph(x, other) else x.add_(other)


def scale_fresh(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """x * factor for an x the caller made and gives up (as add_to_fresh)."""
    return x * factor if records_graph(x, factor) else x.mul_(factor)
