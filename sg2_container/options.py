"""Configuration presets (the reference's --cfg values) and the network kwargs they imply.

Presets are instances of one frozen dataclass rather than dicts of strings, so a typo fails at
import and every field is typed.
"""
from __future__ import annotations

import dataclasses
import difflib

from sg2_container.errors import UserError


@dataclasses.dataclass(frozen=True, kw_only=True)
class Preset:
    """Base hyperparameters of one --cfg (facts: the reference's preset table)."""

    name: str
    ref_gpus: int
    kimg: int
    batch: int
    mbstd_group: int
    fmaps: float
    lrate: float
    gamma: float
    ema_kimg: float
    ema_rampup: float | None
    map_layers: int
    pl_weight: float = 2.0
    style_mixing_prob: float = 0.9
    d_architecture: str = "resnet"

    @property
    def channel_base(self) -> int:
        return int(self.fmaps * 32768)

    @property
    def batch_gpu(self) -> int:
        """Per-GPU batch: relative to ref_gpus, not the GPUs actually used (as the reference)."""
        return self.batch // self.ref_gpus


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(name="stylegan2", ref_gpus=8, kimg=25000, batch=32, mbstd_group=4, fmaps=1,
               lrate=0.002, gamma=10, ema_kimg=10, ema_rampup=None, map_layers=8),
        Preset(name="paper256", ref_gpus=8, kimg=25000, batch=64, mbstd_group=8, fmaps=0.5,
               lrate=0.0025, gamma=1, ema_kimg=20, ema_rampup=None, map_layers=8),
        Preset(name="paper512", ref_gpus=8, kimg=25000, batch=64, mbstd_group=8, fmaps=1,
               lrate=0.0025, gamma=0.5, ema_kimg=20, ema_rampup=None, map_layers=8),
        Preset(name="paper1024", ref_gpus=8, kimg=25000, batch=32, mbstd_group=4, fmaps=1,
               lrate=0.002, gamma=2, ema_kimg=10, ema_rampup=None, map_layers=8),
        Preset(name="cifar", ref_gpus=2, kimg=100000, batch=64, mbstd_group=32, fmaps=1,
               lrate=0.0025, gamma=0.01, ema_kimg=500, ema_rampup=0.05, map_layers=2,
               pl_weight=0, style_mixing_prob=0, d_architecture="orig"),
    )
}
CFG_NAMES = ("auto", *PRESETS)


def closest(value: str, allowed) -> str:
    """' (did you mean X?)' when a close name exists, else ''."""
    match = difflib.get_close_matches(str(value), list(allowed), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def resolve_preset(cfg: str, resolution: int, gpus: int = 1) -> Preset:
    """The preset for `cfg`; 'auto' derives its values from resolution and GPU count."""
    if cfg == "auto":
        batch = max(min(gpus * min(4096 // resolution, 32), 64), gpus)
        return Preset(
            name="auto", ref_gpus=gpus, kimg=25000, batch=batch,
            mbstd_group=min(batch // gpus, 4), fmaps=1 if resolution >= 512 else 0.5,
            lrate=0.002 if resolution >= 1024 else 0.0025,
            gamma=0.0002 * resolution**2 / batch, ema_kimg=batch * 10 / 32, ema_rampup=0.05,
            map_layers=2,
        )
    if cfg not in PRESETS:
        raise UserError(f"cfg {cfg!r} is not a preset; allowed: {', '.join(CFG_NAMES)}"
                        f"{closest(cfg, CFG_NAMES)}")
    return PRESETS[cfg]


def network_kwargs(preset: Preset, resolution: int, img_channels: int = 3, c_dim: int = 0,
                   fp32: bool = False, channel_base: int | None = None,
                   channel_max: int = 512, map_layers: int | None = None) -> tuple[dict, dict]:
    """(G_kwargs, D_kwargs) as the reference's train.py derives them for a preset.

    channel_base / channel_max / map_layers override the preset (small experiments, tests).
    """
    base = preset.channel_base if channel_base is None else channel_base
    num_fp16_res = 0 if fp32 else 4
    conv_clamp = None if fp32 else 256
    G_kwargs = dict(
        z_dim=512, w_dim=512, c_dim=c_dim, img_resolution=resolution, img_channels=img_channels,
        mapping_kwargs=dict(num_layers=preset.map_layers if map_layers is None else map_layers),
        synthesis_kwargs=dict(channel_base=base, channel_max=channel_max,
                              num_fp16_res=num_fp16_res, conv_clamp=conv_clamp),
    )
    D_kwargs = dict(
        c_dim=c_dim, img_resolution=resolution, img_channels=img_channels, channel_base=base,
        channel_max=channel_max, num_fp16_res=num_fp16_res, conv_clamp=conv_clamp,
        block_kwargs={}, mapping_kwargs={}, epilogue_kwargs=dict(mbstd_group_size=preset.mbstd_group),
    )
    if preset.d_architecture != "resnet":
        D_kwargs["architecture"] = preset.d_architecture
    return G_kwargs, D_kwargs
