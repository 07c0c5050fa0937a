"""Synthesis network: ws -> image, one block per resolution from 4x4 up to the output size."""
from __future__ import annotations

import copy
import math

import numpy as np
import torch

from sg2_container.models.networks.layers import (
    DEFAULT_RESAMPLE_FILTER,
    Conv2dLayer,
    FullyConnectedLayer,
    activation_memory_format,
    memory_format_for,
    modulated_conv2d,
    runs_in_half,
)
from sg2_container.options.choices import NOISE_MODES
from stylegan2_ops import WeightCache, bias_act, records_graph, setup_filter, upsample2d
from stylegan2_ops.bias_act import activation as lookup_activation

ARCHITECTURES = ("orig", "skip", "resnet")

# On a CPU at inference, blocks whose activations reach this many elements per sample (4 MiB in
# float32) run one sample at a time: one image's activations stay in the caches and its tensors
# are smaller fresh allocations, a batch's are neither. paper256 at batch 8, blocks from 64 px
# on per sample: 1.7x the all-batched images/s with glibc's default malloc, 1.09x with the
# kept-memory set-up of sg2's entry points (in-process A/Bs, docs/benchmarks.md). Lower blocks
# stay batched, where a batch makes the convs' GEMMs efficient.
PER_SAMPLE_MIN_ELEMENTS = 2**20


def check_resolution(resolution: int) -> int:
    """Resolutions are powers of two >= 4; returns log2(resolution)."""
    if not isinstance(resolution, int) or resolution < 4 or resolution & (resolution - 1):
        raise ValueError(f"img_resolution must be a power of two >= 4, got {resolution!r}")
    return int(math.log2(resolution))


def check_architecture(architecture: str) -> None:
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture {architecture!r} is not one of {', '.join(ARCHITECTURES)}")


def fp16_min_resolution(img_resolution: int, num_fp16_res: int) -> int:
    """The lowest resolution that runs in float16 (the top `num_fp16_res` ones do, never 4x4)."""
    return max(2 ** (check_resolution(img_resolution) + 1 - num_fp16_res), 8)


def default_fused_modconv(training: bool, dtype: torch.dtype, x: torch.Tensor,
                          weight: torch.Tensor, *, records: bool = False) -> bool:
    """Whether a modulated conv runs fused (per-sample weights, one grouped conv) by default.

    Training, or wherever autograd records (`records`: projection differentiates through the
    styles): never. The fused form's backward adds a weight-gradient conv for the per-sample
    weights; the unfused one gets the styles' gradient from the activations' gradient it
    computes anyway (paper256 synthesis forward+backward to ws at batch 1: 546 -> 444 ms).
    On a GPU at inference: in float32, or for a single sample. On a CPU at inference: for a
    single sample where its activations outnumber the weight (fused modulates the weight,
    unfused the activations: the smaller one is the cheaper one to scale; paper256 at batch 1:
    1.07x over fusing every layer; the upsampling layers too, now that the layer's weight cache
    keeps the shared weight in the transposed conv's [in, out] order: 1.05x); from batch 2 the
    shared-weight conv over the whole batch is faster (batch 8: 1.2x, bench/speed.py). Both
    forms give the same images to float rounding.
    """
    if training or records:
        return False
    if x.device.type == "cpu":
        return x.shape[0] == 1 and x[0].numel() >= weight.numel()
    return dtype == torch.float32 or x.shape[0] == 1


class SynthesisLayer(torch.nn.Module):
    """Modulated 3x3 conv + per-pixel noise + bias + lrelu; optionally upsamples 2x first."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int,
                 kernel_size: int = 3, up: int = 1, use_noise: bool = True,
                 activation: str = "lrelu", resample_filter=DEFAULT_RESAMPLE_FILTER,
                 conv_clamp: float | None = None, channels_last: bool = False):
        super().__init__()
        self.resolution, self.up, self.use_noise = resolution, up, use_noise
        self.activation, self.conv_clamp = activation, conv_clamp
        self.act_gain = lookup_activation(activation).default_gain
        self.padding = kernel_size // 2
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size])
        self.weight = torch.nn.Parameter(weight.to(memory_format=memory_format_for(channels_last)))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = torch.nn.Parameter(torch.zeros([]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.weight_cache = WeightCache()  # what inference derives from the weight alone

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random",
                fused_modconv: bool | None = None, gain: float = 1) -> torch.Tensor:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode {noise_mode!r} is not one of {', '.join(NOISE_MODES)}")
        styles = self.affine(w)
        if fused_modconv is None:
            fused_modconv = default_fused_modconv(self.training, x.dtype, x, self.weight,
                                                  records=records_graph(x, self.weight, styles))
        noise = None
        if self.use_noise and noise_mode == "random":
            shape = [x.shape[0], 1, self.resolution, self.resolution]
            noise = torch.randn(shape, device=x.device) * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        x = modulated_conv2d(x, self.weight, styles, noise=noise, up=self.up, padding=self.padding,
                             resample_filter=self.resample_filter, flip_weight=(self.up == 1),
                             fused_modconv=fused_modconv, weight_cache=self.weight_cache)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias.to(x.dtype), act=self.activation, gain=self.act_gain * gain,
                        clamp=clamp, overwrite=True)


class ToRGBLayer(torch.nn.Module):
    """Modulated 1x1 conv (no demodulation, no noise) from features to image channels."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1,
                 conv_clamp: float | None = None, channels_last: bool = False):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size])
        self.weight = torch.nn.Parameter(weight.to(memory_format=memory_format_for(channels_last)))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)

    def forward(self, x: torch.Tensor, w: torch.Tensor,
                fused_modconv: bool | None = None) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        if fused_modconv is None:
            fused_modconv = default_fused_modconv(self.training, x.dtype, x, self.weight,
                                                  records=records_graph(x, self.weight, styles))
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp, overwrite=True)


class SynthesisBlock(torch.nn.Module):
    """One resolution: (const | conv0 up 2x) -> conv1 -> torgb, by architecture."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int,
                 img_channels: int, is_last: bool, architecture: str = "skip",
                 resample_filter=DEFAULT_RESAMPLE_FILTER, conv_clamp: float | None = None,
                 use_fp16: bool = False, fp16_channels_last: bool = False, **layer_kwargs):
        super().__init__()
        check_architecture(architecture)
        self.in_channels, self.resolution, self.is_last = in_channels, resolution, is_last
        self.architecture, self.use_fp16 = architecture, use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0

        if in_channels == 0:
            self.const = torch.nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2,
                                        resample_filter=resample_filter, conv_clamp=conv_clamp,
                                        channels_last=self.channels_last, **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution,
                                    conv_clamp=conv_clamp, channels_last=self.channels_last,
                                    **layer_kwargs)
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp,
                                    channels_last=self.channels_last)
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2,
                                    resample_filter=resample_filter,
                                    channels_last=self.channels_last)

    def forward(self, x, img, ws, force_fp32: bool = False, fused_modconv: bool | None = None,
                **layer_kwargs):
        """ws: [N, num_conv + num_torgb, w_dim]; returns (features, image so far)."""
        w_iter = iter(ws.unbind(dim=1))
        half = runs_in_half(self.use_fp16, force_fp32, ws.device)
        dtype = torch.float16 if half else torch.float32
        memory_format = activation_memory_format(
            self.channels_last and half, ws.device,
            activations=ws.shape[0] * self.conv1.weight.shape[0] * self.resolution**2,
            weights=self.conv1.weight.numel())

        if self.in_channels == 0:
            x = self.const.to(dtype=dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = x.contiguous(memory_format=memory_format)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
        elif self.architecture == "resnet":
            x = x.to(dtype=dtype, memory_format=memory_format)
            y = self.skip(x, gain=np.sqrt(0.5))
            x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, gain=np.sqrt(0.5),
                           **layer_kwargs)
            x = y + x
        else:
            x = x.to(dtype=dtype, memory_format=memory_format)
            x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)

        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv)
            y = y.to(dtype=torch.float32, memory_format=torch.contiguous_format)
            img = img + y if img is not None else y
        return x, img


class SynthesisNetwork(torch.nn.Module):
    """Blocks b4 ... b{img_resolution}; consumes ws [N, num_ws, w_dim]."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int,
                 channel_base: int = 32768, channel_max: int = 512, num_fp16_res: int = 0,
                 **block_kwargs):
        super().__init__()
        self.init_kwargs = copy.deepcopy(dict(
            w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
            channel_base=channel_base, channel_max=channel_max, num_fp16_res=num_fp16_res,
            **block_kwargs))
        log2_res = check_resolution(img_resolution)
        if img_channels < 1:
            raise ValueError(f"img_channels must be >= 1, got {img_channels}")
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.block_resolutions = [2**i for i in range(2, log2_res + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        if min(channels.values()) < 1:
            raise ValueError(f"channel_base={channel_base} gives blocks with no channels at "
                             f"{img_resolution}px; raise channel_base")
        fp16_resolution = fp16_min_resolution(img_resolution, num_fp16_res)

        self.num_ws = 0
        for res in self.block_resolutions:
            is_last = res == img_resolution
            block = SynthesisBlock(channels[res // 2] if res > 4 else 0, channels[res], w_dim, res,
                                   img_channels, is_last, use_fp16=res >= fp16_resolution,
                                   **block_kwargs)
            self.num_ws += block.num_conv + (block.num_torgb if is_last else 0)
            setattr(self, f"b{res}", block)

    def blocks(self) -> list[SynthesisBlock]:
        return [getattr(self, f"b{res}") for res in self.block_resolutions]

    def forward(self, ws: torch.Tensor, keep: int | None = None, **block_kwargs) -> torch.Tensor:
        """ws [N, num_ws, w_dim] -> images [N, img_channels, R, R], float32, nominally [-1, 1].

        keep: only the first `keep` images are wanted, the other rows pad the batch to a shape
        (the endpoint's renderer pads a lone request to two rows): blocks that run one sample
        at a time skip them, and `keep` images come back. The kept images' bytes are those of
        the whole forward.
        """
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must have shape [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        if keep is None:
            keep = ws.shape[0]
        if not min(1, ws.shape[0]) <= keep <= ws.shape[0]:
            raise ValueError(f"keep must be between 1 and the batch size {ws.shape[0]}, got {keep}")
        ws = ws.to(torch.float32)
        # Each block's torgb shares its w with the next block's first conv.
        block_ws, w_idx = [], 0
        for block in self.blocks():
            block_ws.append(ws.narrow(1, w_idx, block.num_conv + block.num_torgb))
            w_idx += block.num_conv
        blocks = list(zip(self.blocks(), block_ws))
        split = self.first_per_sample_block(ws, block_kwargs.get("noise_mode", "random"))
        x = img = None
        for block, cur_ws in blocks[:split]:
            x, img = block(x, img, cur_ws, **block_kwargs)
        if split == len(blocks):
            return img[:keep]
        images = []
        for i in range(keep):
            xi = None if x is None else x[i:i + 1]
            imgi = None if img is None else img[i:i + 1]
            for block, cur_ws in blocks[split:]:
                xi, imgi = block(xi, imgi, cur_ws[i:i + 1], **block_kwargs)
            images.append(imgi)
        return torch.cat(images)

    def first_per_sample_block(self, ws: torch.Tensor, noise_mode: str) -> int:
        """Index of the first block to run one sample at a time; len(blocks) for none.

        Only on a CPU, without autograd, for a batch, and not with random noise: that noise is
        drawn per layer for the whole batch, so splitting would hand other numbers to each image.
        """
        blocks = self.blocks()
        if (ws.device.type != "cpu" or self.training or torch.is_grad_enabled()
                or ws.shape[0] < 2 or noise_mode == "random"):
            return len(blocks)
        for index, block in enumerate(blocks):
            channels = block.conv1.weight.shape[0]
            if channels * block.resolution**2 >= PER_SAMPLE_MIN_ELEMENTS:
                return index
        return len(blocks)

    def extra_repr(self) -> str:
        return f"w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}"
