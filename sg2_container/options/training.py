"""Configuration presets (the reference's --cfg values) and the network kwargs they imply.

Presets are instances of one frozen dataclass rather than dicts of strings, so a typo fails at
import and every field is typed.
"""
from __future__ import annotations

import dataclasses

from sg2_container.errors import UserError
from sg2_container.options.choices import AUGPIPE_NAMES, FILTER_AUGPIPES
from sg2_container.options.metric_specs import METRIC_NAMES as SPEC_NAMES
from sg2_container.options.metric_specs import NOT_IN_THIS_BUILD, canonical_names
from sg2_container.options.schema import closest, fail, option, validate
from sg2_container.options.sizes import (
    MAX_CHANNEL_BASE,
    MAX_CHANNEL_MAX,
    MAX_FREEZE_LAYERS,
    MAX_MAPPING_LAYERS,
    MAX_SEED,
)


# How a resume refusing changed options (allow_changed_options) words it: the local pipeline
# runner recognises that refusal by these words to add a pipeline's way out.
CHANGED_OPTIONS = "was written with other options that change what the run is"
# The discriminator turns the image into features in its first block above the 4x4 epilogue;
# a 4x4 dataset leaves it no block (the reference's D cannot run on one either).
MIN_TRAINING_RESOLUTION = 8


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
NO_RESUME = ("", "none", "null", "noresume")
METRIC_NAMES = ("none", *SPEC_NAMES)
PUBLISHED_RESUME = {
    "ffhq256": "ffhq-res256-mirror-paper256-noaug.pkl",
    "ffhq512": "ffhq-res512-mirror-stylegan2-noaug.pkl",
    "ffhq1024": "ffhq-res1024-mirror-stylegan2-noaug.pkl",
    "celebahq256": "celebahq-res256-mirror-paper256-kimg100000-ada-target0.5.pkl",
    "lsundog256": "lsundog-res256-paper256-kimg100000-noaug.pkl",
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainingOptions:
    """Everything `sg2 train` and a training job accept (the reference's names), validated once.

    None means "take the preset's value". kimg accepts fractions for short smoke runs.
    """

    data: str = option(help="Training data: a zip or folder from `sg2 prepare`.", metavar="PATH")
    outdir: str = option(help="Run folder: checkpoints, snapshots, grids, logs. Re-running the "
                         "same command continues from its newest checkpoint.", metavar="DIR")
    gpus: int = option(1, min=1, power_of_two=True,
                       help="Processes (one per GPU; gloo processes on CPU).")
    snap: int = option(50, min=1, help="Checkpoint, snapshot and image grid every N ticks.")
    metrics: tuple[str, ...] = option((), choices=METRIC_NAMES, default_text="none",
                                      help="Metrics per snapshot, comma-separated "
                                      "(docs/metrics.md); need a detector file (ppl*: "
                                      "VGG16 weights instead).")
    detector: str | None = option(None, metavar="FILE", default_text="$SG2_DETECTOR",
                                  help="Inception-v3 weights for the metrics (torch-fidelity's "
                                  "weights-inception-2015-12-05-6726825d.pth); never downloaded.")
    detector_torchscript: bool = option(False, help="The detector is a TorchScript file (e.g. "
                                        "NVIDIA's inception-2015-12-05.pt): runs its code, so "
                                        "only for a file you trust.")
    vgg16: str | None = option(None, metavar="FILE", default_text="$SG2_VGG16_WEIGHTS",
                               help="torchvision's ImageNet VGG16 weights (vgg16-397923af.pth) "
                               "for the ppl* metrics' LPIPS distance; never downloaded.")
    metrics_images: int | None = option(None, min=2, default_text="50000, the metric's own",
                                        help="Generated images per metric (and reals for the "
                                        "legacy 50k-real metrics): fewer is faster, but values "
                                        "are then not comparable with published ones.")
    metrics_allow_small: bool = option(False, help="Compute legacy 50k-real metrics on a "
                                       "smaller dataset (with a warning) instead of refusing.")
    seed: int = option(0, min=0, max=MAX_SEED, help="Random seed (weights, data order, latents).")
    cond: bool = option(False, help="Class-conditional training on dataset.json labels.")
    subset: int | None = option(None, min=1, default_text="all images",
                                help="Train on a random subset of N images.")
    mirror: bool = option(False, help="Add x-flipped copies of the images.")
    cfg: str = option("auto", choices=CFG_NAMES, help="Base configuration preset.")
    gamma: float | None = option(None, min=0, default_text="preset value",
                                 help="R1 regularisation weight.")
    kimg: float | None = option(None, min=0, min_exclusive=True, default_text="preset value",
                                help="Total training length in thousands of real images shown "
                                "(fractions allowed); counts across restarts.")
    batch: int | None = option(None, min=1, default_text="preset value", help="Total batch size.")
    batch_gpu: int | None = option(None, min=1, default_text="batch / gpus",
                                   help="Images per GPU per accumulation round (memory control).")
    aug: str = option("ada", choices=AUG_MODES, help="Augmentation mode.")
    p: float | None = option(None, min=0, max=1,
                             help="Augmentation probability, for aug=fixed only.")
    target: float | None = option(None, min=0, max=1, default_text="0.6",
                                  help="ADA target, for aug=ada only.")
    augpipe: str | None = option(None, choices=AUGPIPE_NAMES, default_text="bgc",
                                 help="Augmentation pipeline.")
    resume: str | None = option(None, metavar="PKL",
                                help="Start from these weights: a model file, a network pickle, "
                                "a training job's model.tar.gz (or a folder of these), or a "
                                "published name (file supplied).")
    freezed: int = option(0, min=0, max=MAX_FREEZE_LAYERS,
                          help="Freeze-D: number of discriminator layers to freeze.")
    fp32: bool = option(False, help="Disable mixed precision (fp16 top blocks, on GPUs; a CPU "
                        "computes them in float32 anyway) and clamping.")
    nhwc: bool = option(False, help="Channels-last memory format for the fp16 blocks.")
    nobench: bool = option(False, help="Disable cuDNN benchmarking.")
    allow_tf32: bool = option(False, help="Allow TF32 for matmul and convolutions.")
    workers: int = option(3, min=0, help="Data-loading worker processes (0: load in the main "
                          "process).")
    cbase: int | None = option(None, min=1, max=MAX_CHANNEL_BASE, default_text="preset value",
                               help="Channel base (smaller = faster, for experiments).")
    cmax: int | None = option(None, min=1, max=MAX_CHANNEL_MAX, default_text="512",
                              help="Maximum channels per layer.")
    map: int | None = option(None, min=1, max=MAX_MAPPING_LAYERS, default_text="preset value",
                             help="Number of mapping layers.")
    keep: int = option(3, min=1, help="Newest full checkpoints to keep.")
    kimg_per_tick: float = option(4.0, min=0, min_exclusive=True,
                                  help="Progress between status lines, in kimg.")
    device: str = option("auto", hyperparameter=False,
                         help="auto, cpu, cuda or cuda:N (single process).")
    allow_changed_options: bool = option(False, is_flag=True, help=(
        "Continue the outdir's checkpoint even though options that define the run (gamma, "
        "batch, cfg, dataset, ...) differ from it."))

    def __post_init__(self):
        if isinstance(self.resume, str) and self.resume.strip().lower() in NO_RESUME:
            object.__setattr__(self, "resume", None)  # the reference's default, str(None), ...
        metrics = canonical_names(self.metrics)
        for name in metrics if isinstance(metrics, (tuple, list)) else ():
            if name in NOT_IN_THIS_BUILD:
                raise fail("metrics", name, f"{NOT_IN_THIS_BUILD[name]}; one of "
                           + ", ".join(SPEC_NAMES))
        if isinstance(metrics, tuple):  # 'none' means no metrics, as in the reference
            object.__setattr__(self, "metrics", tuple(m for m in metrics if m != "none"))
        validate(self)
        if not self.data:
            raise fail("data", self.data, "a dataset zip or folder")
        if not self.outdir:
            raise fail("outdir", self.outdir, "a folder for checkpoints, snapshots and logs")
        if self.batch is not None and self.batch % self.gpus:
            raise fail("batch", self.batch, f"a multiple of gpus={self.gpus}")
        if self.p is not None and self.aug != "fixed":
            raise fail("p", self.p, "only with aug='fixed'")
        if self.p is None and self.aug == "fixed":
            raise fail("p", self.p, "a probability in [0, 1]: aug='fixed' needs p")
        if self.target is not None and self.aug != "ada":
            raise fail("target", self.target, "only with aug='ada'")
        if self.augpipe is not None and self.aug == "noaug":
            raise fail("augpipe", self.augpipe, "no augpipe with aug='noaug'")

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
    if resolution < MIN_TRAINING_RESOLUTION:
        raise UserError(f"this dataset is {resolution}x{resolution}: training needs images of at "
                        f"least {MIN_TRAINING_RESOLUTION}x{MIN_TRAINING_RESOLUTION} (the "
                        f"discriminator needs a block above its 4x4 output layer); prepare the "
                        f"images with --width {MIN_TRAINING_RESOLUTION} or more")
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
    if D_kwargs["channel_base"] < resolution:  # a block has channel_base // resolution channels
        raise UserError(f"cbase={options.cbase} is not allowed for this {resolution}x{resolution} "
                        f"dataset: the {resolution}px blocks would have no channels; cbase must "
                        f"be at least {resolution}")
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
