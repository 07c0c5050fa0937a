"""Options of `sg2 metrics` (on-demand evaluation of a network file), validated once."""
from __future__ import annotations

import dataclasses

from sg2_container.inference.project_options import VGG16_ENV, VGG16_FILE_NAME
from sg2_container.errors import UserError
from sg2_container.options.metric_specs import METRIC_NAMES, NOT_IN_THIS_BUILD, canonical_names
from sg2_container.options.schema import fail, option, validate
from sg2_container.options.sizes import MAX_SEED


@dataclasses.dataclass(frozen=True, kw_only=True)
class MetricsOptions:
    """Which network, which data, which metrics, from which detector; how to run them."""

    network: str = option(metavar="FILE", help="Model file: ours (.pt), a reference network "
                          "pickle (.pkl, read safely), a training job's model.tar.gz, or a "
                          "folder holding one. G_ema is evaluated.")
    data: str | None = option(None, metavar="PATH", default_text="the training set the network "
                              "file records", help="The dataset the network was trained on: the "
                              "zip or folder from `sg2 prepare`.")
    metrics: tuple[str, ...] = option(("fid50k_full",), choices=METRIC_NAMES,
                                      help="Metrics to compute, comma-separated.")
    detector: str | None = option(None, metavar="FILE", default_text="$SG2_DETECTOR",
                                  help="Inception-v3 weights (torch-fidelity's "
                                  "weights-inception-2015-12-05-6726825d.pth); never downloaded.")
    detector_torchscript: bool = option(False, is_flag=True, help="The detector is a TorchScript "
                                        "file (e.g. NVIDIA's inception-2015-12-05.pt): runs its "
                                        "code, so only for a file you trust.")
    vgg16: str | None = option(None, metavar="FILE", default_text=f"${VGG16_ENV}", help=(
        f"torchvision's ImageNet VGG16 weights ({VGG16_FILE_NAME}) for the LPIPS distance of "
        "the ppl* metrics; never downloaded."))
    allow_random_vgg16: bool = option(False, is_flag=True, help=(
        "ppl* metrics without VGG16 weights: a randomly initialised distance network, a "
        "rehearsal of the mechanics whose values mean nothing."))
    num_images: int | None = option(None, min=2, default_text="50000, the metric's own",
                                    help="Generated images per metric (and reals for the legacy "
                                    "50k-real metrics): fewer is faster, values not comparable.")
    allow_small: bool = option(False, is_flag=True, help="Compute legacy 50k-real metrics on a "
                               "smaller dataset (with a warning) instead of refusing.")
    mirror: bool | None = option(None, is_flag=True, default_text="as the network file records "
                                 "its training set without --data, else off", help="Legacy "
                                 "metrics: x-flipped reals too (as training with --mirror 1 saw "
                                 "them).")
    device: str = option("auto", help="auto, cpu, cuda or cuda:N.")
    batch: int | None = option(None, min=1, default_text="64 on a GPU, 8 on a CPU",
                               help="Images per forward pass.")
    cache_dir: str | None = option(None, metavar="DIR", default_text="metric-cache next to "
                                   "the network", help="Where dataset features are cached "
                                   "(reused by later runs on the same data and detector).")
    seed: int = option(0, min=0, max=MAX_SEED, help="Seed of the generated latents.")

    def __post_init__(self):
        metrics = canonical_names(self.metrics)
        object.__setattr__(self, "metrics", metrics)
        for name in metrics if isinstance(metrics, tuple) else ():
            if name in NOT_IN_THIS_BUILD:
                raise fail("metrics", name, f"{NOT_IN_THIS_BUILD[name]}; one of "
                           + ", ".join(METRIC_NAMES))
        if isinstance(metrics, tuple) and not [m for m in metrics if m != "none"]:
            # The command line drops 'none' (training's way to turn metrics off) before here.
            raise UserError("metrics: no metric names given ('none' or an empty list turns "
                            "training's metrics off); `sg2 metrics` computes one or more of "
                            + ", ".join(METRIC_NAMES))
        validate(self)
        if self.vgg16 is not None and not self.vgg16.strip():
            raise fail("vgg16", self.vgg16, "a file name (or leave it unset)")
