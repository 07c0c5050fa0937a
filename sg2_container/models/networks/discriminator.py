"""Discriminator: image (+ label) -> realness logit, blocks from full resolution down to 4x4."""
from __future__ import annotations

import copy

import numpy as np
import torch

from sg2_container.models.networks.layers import (
    DEFAULT_RESAMPLE_FILTER,
    Conv2dLayer,
    FullyConnectedLayer,
    activation_memory_format,
    runs_in_half,
)
from sg2_container.models.networks.mapping import MappingNetwork, check_latents
from sg2_container.models.networks.synthesis import (
    check_architecture,
    check_resolution,
    fp16_min_resolution,
)
from stylegan2_ops import downsample2d, setup_filter


class DiscriminatorBlock(torch.nn.Module):
    """One resolution: (fromrgb) -> conv0 -> conv1 down 2x (+ 1x1 skip for resnet)."""

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, resolution: int,
                 img_channels: int, first_layer_idx: int, architecture: str = "resnet",
                 activation: str = "lrelu", resample_filter=DEFAULT_RESAMPLE_FILTER,
                 conv_clamp: float | None = None, use_fp16: bool = False,
                 fp16_channels_last: bool = False, freeze_layers: int = 0):
        super().__init__()
        check_architecture(architecture)
        self.in_channels, self.resolution = in_channels, resolution
        self.architecture, self.use_fp16 = architecture, use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_layers = 0

        def next_trainable() -> bool:
            # Freeze-D counts layers from the input side across blocks.
            layer_idx = first_layer_idx + self.num_layers
            self.num_layers += 1
            return layer_idx >= freeze_layers

        common = dict(activation=activation, conv_clamp=conv_clamp,
                      channels_last=self.channels_last)
        if in_channels == 0 or architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, kernel_size=1,
                                       trainable=next_trainable(), **common)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3,
                                 trainable=next_trainable(), **common)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, kernel_size=3, down=2,
                                 resample_filter=resample_filter, trainable=next_trainable(),
                                 **common)
        if architecture == "resnet":
            self.skip = Conv2dLayer(tmp_channels, out_channels, kernel_size=1, bias=False, down=2,
                                    resample_filter=resample_filter, trainable=next_trainable(),
                                    channels_last=self.channels_last)

    def forward(self, x, img, force_fp32: bool = False):
        like = x if x is not None else img
        half = runs_in_half(self.use_fp16, force_fp32, like.device)
        dtype = torch.float16 if half else torch.float32
        memory_format = activation_memory_format(
            self.channels_last and half, like.device,
            activations=like.shape[0] * self.conv0.weight.shape[0] * self.resolution**2,
            weights=self.conv0.weight.numel())
        if x is not None:
            x = x.to(dtype=dtype, memory_format=memory_format)
        if self.in_channels == 0 or self.architecture == "skip":
            img = img.to(dtype=dtype, memory_format=memory_format)
            y = self.fromrgb(img)
            x = x + y if x is not None else y
            img = downsample2d(img, self.resample_filter) if self.architecture == "skip" else None
        if self.architecture == "resnet":
            y = self.skip(x, gain=np.sqrt(0.5))
            x = self.conv0(x)
            x = self.conv1(x, gain=np.sqrt(0.5))
            x = y + x
        else:
            x = self.conv1(self.conv0(x))
        return x, img


class MinibatchStdLayer(torch.nn.Module):
    """Appends the std-dev over groups of samples as extra feature maps (diversity signal).

    Groups are strided: sample i shares a group with i + N/G, i + 2N/G, ...
    """

    def __init__(self, group_size: int | None, num_channels: int = 1):
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n) if self.group_size is not None else n
        f = self.num_channels
        if n % g or c % f:
            raise ValueError(f"minibatch-std needs the batch ({n}) divisible by the group size "
                             f"({g}) and channels ({c}) divisible by {f}")
        y = x.reshape(g, -1, f, c // f, h, w)  # [G, N/G, F, C/F, H, W]
        y = y - y.mean(dim=0)
        y = (y.square().mean(dim=0) + 1e-8).sqrt()  # [N/G, F, C/F, H, W]
        y = y.mean(dim=[2, 3, 4]).reshape(-1, f, 1, 1)  # [N/G, F, 1, 1]
        y = y.repeat(g, 1, h, w)  # [N, F, H, W]
        return torch.cat([x, y], dim=1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels}"


class DiscriminatorEpilogue(torch.nn.Module):
    """4x4 head: minibatch-std -> conv -> fc -> out (projected onto cmap when conditional)."""

    def __init__(self, in_channels: int, cmap_dim: int, resolution: int, img_channels: int,
                 architecture: str = "resnet", mbstd_group_size: int | None = 4,
                 mbstd_num_channels: int = 1, activation: str = "lrelu",
                 conv_clamp: float | None = None):
        super().__init__()
        check_architecture(architecture)
        self.cmap_dim, self.architecture = cmap_dim, architecture
        if architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1,
                                       activation=activation)
        self.mbstd = (MinibatchStdLayer(mbstd_group_size, mbstd_num_channels)
                      if mbstd_num_channels > 0 else None)
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, kernel_size=3,
                                activation=activation, conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * resolution**2, in_channels,
                                      activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x, img, cmap, force_fp32: bool = False):
        x = x.to(dtype=torch.float32, memory_format=torch.contiguous_format)
        if self.architecture == "skip":
            x = x + self.fromrgb(img.to(dtype=torch.float32, memory_format=torch.contiguous_format))
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        x = self.out(x)
        if self.cmap_dim > 0:
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / np.sqrt(self.cmap_dim))
        return x


class Discriminator(torch.nn.Module):
    """images [N, C, R, R] (+ c [N, c_dim]) -> logits [N, 1]."""

    def __init__(self, c_dim: int, img_resolution: int, img_channels: int,
                 architecture: str = "resnet", channel_base: int = 32768, channel_max: int = 512,
                 num_fp16_res: int = 0, conv_clamp: float | None = None,
                 cmap_dim: int | None = None, block_kwargs: dict | None = None,
                 mapping_kwargs: dict | None = None, epilogue_kwargs: dict | None = None):
        super().__init__()
        block_kwargs = dict(block_kwargs or {})
        mapping_kwargs = dict(mapping_kwargs or {})
        epilogue_kwargs = dict(epilogue_kwargs or {})
        self.init_kwargs = copy.deepcopy(dict(
            c_dim=c_dim, img_resolution=img_resolution, img_channels=img_channels,
            architecture=architecture, channel_base=channel_base, channel_max=channel_max,
            num_fp16_res=num_fp16_res, conv_clamp=conv_clamp, cmap_dim=cmap_dim,
            block_kwargs=block_kwargs, mapping_kwargs=mapping_kwargs,
            epilogue_kwargs=epilogue_kwargs))
        log2_res = check_resolution(img_resolution)
        check_architecture(architecture)
        self.c_dim, self.img_resolution, self.img_channels = c_dim, img_resolution, img_channels
        self.block_resolutions = [2**i for i in range(log2_res, 2, -1)]
        channels = {res: min(channel_base // res, channel_max)
                    for res in self.block_resolutions + [4]}
        if min(channels.values()) < 1:
            raise ValueError(f"channel_base={channel_base} gives blocks with no channels at "
                             f"{img_resolution}px; raise channel_base")
        fp16_resolution = fp16_min_resolution(img_resolution, num_fp16_res)
        if cmap_dim is None:
            cmap_dim = channels[4]
        if c_dim == 0:
            cmap_dim = 0
        self.cmap_dim = cmap_dim

        common = dict(img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp)
        layer_idx = 0
        for res in self.block_resolutions:
            in_channels = channels[res] if res < img_resolution else 0
            block = DiscriminatorBlock(in_channels, channels[res], channels[res // 2], res,
                                       first_layer_idx=layer_idx, use_fp16=res >= fp16_resolution,
                                       **block_kwargs, **common)
            setattr(self, f"b{res}", block)
            layer_idx += block.num_layers
        if c_dim > 0:
            self.mapping = MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None,
                                          w_avg_beta=None, **mapping_kwargs)
        self.b4 = DiscriminatorEpilogue(channels[4], cmap_dim=cmap_dim, resolution=4,
                                        **epilogue_kwargs, **common)

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None, **block_kwargs):
        expected = (self.img_channels, self.img_resolution, self.img_resolution)
        if img.ndim != 4 or tuple(img.shape[1:]) != expected:
            raise ValueError(f"images must have shape [N, {', '.join(map(str, expected))}], "
                             f"got {list(img.shape)}")
        check_latents("c", c, self.c_dim, batch=img.shape[0])
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f"b{res}")(x, img, **block_kwargs)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(x, img, cmap)
