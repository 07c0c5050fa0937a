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


AUG_MODES = ("ada", "noaug", "fixed")
AUGPIPE_NAMES = ("blit", "geom", "color", "filter", "noise", "cutout", "bg", "bgc", "bgcf",
                 "bgcfn", "bgcfnc")
FILTER_AUGPIPES = ("filter", "bgcf", "bgcfn", "bgcfnc")
NO_RESUME = ("", "none", "null", "noresume")
METRIC_NAMES = ("none",)
PUBLISHED_RESUME = {
    "ffhq256": "ffhq-res256-mirror-paper256-noaug.pkl",
    "ffhq512": "ffhq-res512-mirror-stylegan2-noaug.pkl",
    "ffhq1024": "ffhq-res1024-mirror-stylegan2-noaug.pkl",
    "celebahq256": "celebahq-res256-mirror-paper256-kimg100000-ada-target0.5.pkl",
    "lsundog256": "lsundog-res256-paper256-kimg100000-noaug.pkl",
}


def _fail(field: str, value, allowed: str) -> None:
    raise UserError(f"{field}={value!r} is not allowed: {allowed}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainingOptions:
    """Everything `sg2 train` accepts (the reference's names), validated once, here.

    None means "take the preset's value". kimg accepts fractions for short smoke runs.
    """

    data: str
    outdir: str
    gpus: int = 1
    snap: int = 50
    metrics: tuple[str, ...] = ()
    seed: int = 0
    cond: bool = False
    subset: int | None = None
    mirror: bool = False
    cfg: str = "auto"
    gamma: float | None = None
    kimg: float | None = None
    batch: int | None = None
    batch_gpu: int | None = None
    aug: str = "ada"
    p: float | None = None
    target: float | None = None
    augpipe: str | None = None
    resume: str | None = None
    freezed: int = 0
    fp32: bool = False
    nhwc: bool = False
    nobench: bool = False
    allow_tf32: bool = False
    workers: int = 3
    cbase: int | None = None
    cmax: int | None = None
    map: int | None = None
    keep: int = 3
    kimg_per_tick: float = 4.0
    device: str = "auto"
    allow_changed_options: bool = False

    def __post_init__(self):
        if isinstance(self.resume, str) and self.resume.strip().lower() in NO_RESUME:
            object.__setattr__(self, "resume", None)  # the reference's default, str(None), ...

        def positive_int(name, value, minimum=1):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < minimum):
                _fail(name, value, f"an integer >= {minimum}")

        if not self.data:
            _fail("data", self.data, "a dataset zip or folder")
        if not self.outdir:
            _fail("outdir", self.outdir, "a folder for checkpoints, snapshots and logs")
        positive_int("gpus", self.gpus)
        if self.gpus & (self.gpus - 1):
            _fail("gpus", self.gpus, "a power of two (1, 2, 4, 8)")
        positive_int("snap", self.snap)
        for metric in self.metrics:
            if metric not in METRIC_NAMES:
                _fail("metrics", metric, "'none' (metrics need detector files; not in this build)")
        positive_int("seed", self.seed, 0)
        positive_int("subset", self.subset)
        if self.cfg not in CFG_NAMES:
            _fail("cfg", self.cfg, f"one of {', '.join(CFG_NAMES)}{closest(self.cfg, CFG_NAMES)}")
        if self.gamma is not None and not self.gamma >= 0:
            _fail("gamma", self.gamma, "a number >= 0")
        if self.kimg is not None and not self.kimg > 0:
            _fail("kimg", self.kimg, "a number > 0 (thousands of real images shown; fractions allowed)")
        positive_int("batch", self.batch)
        if self.batch is not None and self.batch % self.gpus:
            _fail("batch", self.batch, f"a multiple of gpus={self.gpus}")
        positive_int("batch_gpu", self.batch_gpu)
        if self.aug not in AUG_MODES:
            _fail("aug", self.aug, f"one of {', '.join(AUG_MODES)}{closest(self.aug, AUG_MODES)}")
        if self.p is not None:
            if self.aug != "fixed":
                _fail("p", self.p, "only with aug='fixed'")
            if not 0 <= self.p <= 1:
                _fail("p", self.p, "a probability in [0, 1]")
        elif self.aug == "fixed":
            _fail("p", self.p, "a probability in [0, 1]: aug='fixed' needs p")
        if self.target is not None:
            if self.aug != "ada":
                _fail("target", self.target, "only with aug='ada'")
            if not 0 <= self.target <= 1:
                _fail("target", self.target, "a number in [0, 1]")
        if self.augpipe is not None:
            if self.aug == "noaug":
                _fail("augpipe", self.augpipe, "no augpipe with aug='noaug'")
            if self.augpipe not in AUGPIPE_NAMES:
                _fail("augpipe", self.augpipe,
                      f"one of {', '.join(AUGPIPE_NAMES)}{closest(self.augpipe, AUGPIPE_NAMES)}")
        positive_int("freezed", self.freezed, 0)
        positive_int("workers", self.workers, 0)
        positive_int("cbase", self.cbase)
        positive_int("cmax", self.cmax)
        positive_int("map", self.map)
        positive_int("keep", self.keep)
        if not self.kimg_per_tick > 0:
            _fail("kimg_per_tick", self.kimg_per_tick, "a number > 0")
        if not isinstance(self.allow_changed_options, bool):
            _fail("allow_changed_options", self.allow_changed_options,
                  "true or false (true: continue a checkpoint whose run-defining options differ)")

    @property
    def augpipe_name(self) -> str | None:
        return None if self.aug == "noaug" else (self.augpipe or "bgc")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainingOptions":
        """Rebuilds options saved with to_dict (tuples come back from JSON as lists)."""
        values = dict(values)
        if "metrics" in values:
            values["metrics"] = tuple(values["metrics"])
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"unknown training option {unknown[0]!r}{closest(unknown[0], known)}")
        return cls(**values)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainingPlan:
    """What the options come to once the dataset is known (resolution, channels, labels)."""

    preset: Preset
    total_kimg: float
    batch_size: int
    batch_gpu: int
    num_gpus: int
    G_kwargs: dict
    D_kwargs: dict
    G_lrate: float
    D_lrate: float
    loss_gamma: float
    ema_kimg: float
    ema_rampup: float | None
    ada_target: float | None
    ada_kimg: float
    augment_p: float
    G_reg_interval: int = 4
    D_reg_interval: int = 16
    ada_interval: int = 4

    @property
    def batch_per_gpu_step(self) -> int:
        return self.batch_size // self.num_gpus

    @property
    def num_rounds(self) -> int:
        """Gradient-accumulation rounds per step on each GPU."""
        return self.batch_per_gpu_step // self.batch_gpu


def make_plan(options: TrainingOptions, resolution: int, img_channels: int, c_dim: int,
              num_gpus: int | None = None) -> TrainingPlan:
    """Derives the run's settings as the reference's train.py does, plus our overrides."""
    num_gpus = options.gpus if num_gpus is None else num_gpus
    if options.augpipe_name in FILTER_AUGPIPES and resolution <= 21:
        raise UserError(f"augpipe={options.augpipe_name!r} includes the image filter, which needs "
                        f"images larger than 21 pixels; this dataset is {resolution}x{resolution}: "
                        f"choose one without 'f' (e.g. bgc)")
    preset = resolve_preset(options.cfg, resolution, num_gpus)
    batch_size = options.batch if options.batch is not None else preset.batch
    batch_gpu = batch_size // num_gpus if options.batch is not None else preset.batch_gpu
    if options.batch_gpu is not None:
        batch_gpu = options.batch_gpu
    batch_gpu = max(min(batch_gpu, batch_size // num_gpus), 1)
    if batch_size % num_gpus or (batch_size // num_gpus) % batch_gpu:
        raise UserError(f"batch={batch_size} cannot be split into {num_gpus} GPU(s) x rounds of "
                        f"batch_gpu={batch_gpu}; choose batch as a multiple of gpus * batch_gpu")
    if batch_gpu % min(preset.mbstd_group, batch_gpu):
        raise UserError(f"batch_gpu={batch_gpu} is not divisible by the minibatch-std group "
                        f"size {preset.mbstd_group}")
    G_kwargs, D_kwargs = network_kwargs(
        preset, resolution, img_channels, c_dim, fp32=options.fp32,
        channel_base=options.cbase, channel_max=options.cmax or 512, map_layers=options.map)
    if options.nhwc:
        G_kwargs["synthesis_kwargs"]["fp16_channels_last"] = True
        D_kwargs["block_kwargs"]["fp16_channels_last"] = True
    if options.freezed:
        D_kwargs["block_kwargs"]["freeze_layers"] = options.freezed
    resuming = options.resume is not None
    return TrainingPlan(
        preset=preset,
        total_kimg=options.kimg if options.kimg is not None else preset.kimg,
        batch_size=batch_size, batch_gpu=batch_gpu, num_gpus=num_gpus,
        G_kwargs=G_kwargs, D_kwargs=D_kwargs, G_lrate=preset.lrate, D_lrate=preset.lrate,
        loss_gamma=options.gamma if options.gamma is not None else preset.gamma,
        ema_kimg=preset.ema_kimg, ema_rampup=None if resuming else preset.ema_rampup,
        ada_target=(options.target if options.target is not None else 0.6) if options.aug == "ada" else None,
        ada_kimg=100 if resuming else 500,
        augment_p=options.p if options.aug == "fixed" else 0.0,
    )
