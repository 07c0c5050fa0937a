"""Options of the projector (`sg2 project`, the batch job's project requests), and the facts
about the VGG16 weights file it needs. Torch-free, so the CLI can build its options without
loading torch.
"""
from __future__ import annotations

import dataclasses

from sg2_container.inference.seeds import MAX_SEED
from sg2_container.options.schema import fail, option, validate

VIDEO_NAME = "proj.mp4"
# torchvision's ImageNet VGG16 weights: the file name carries the first 8 hex digits of its
# SHA-256. The image downloads it at build time (Dockerfile) and points VGG16_ENV at it.
VGG16_FILE_NAME = "vgg16-397923af.pth"
VGG16_URL = f"https://download.pytorch.org/models/{VGG16_FILE_NAME}"
VGG16_SHA256 = "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0"
VGG16_ENV = "SG2_VGG16_WEIGHTS"


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProjectOptions:
    """How to project; the defaults are the reference projector's."""

    num_steps: int = option(1000, min=1, help="Optimisation steps per target image.")
    seed: int = option(303, min=0, help=(
        "Seed of the projection's randomness (initial noise maps, exploration noise in W)."))
    save_video: bool = option(False, is_flag=True, help=(
        f"Also write {VIDEO_NAME}: the target beside the rendering, one frame per step."))
    vgg16: str | None = option(None, metavar="FILE", default_text=f"{VGG16_ENV}, if set", help=(
        "torchvision's ImageNet VGG16 weights (vgg16-397923af.pth) for the LPIPS distance; "
        "nothing is downloaded. The container image sets the environment variable."))
    allow_random_vgg16: bool = option(False, is_flag=True, help=(
        "Without VGG16 weights, use a randomly initialised distance network: a rehearsal of "
        "the mechanics, not a meaningful projection."))
    class_idx: int | None = option(None, min=0, flag="--class", metavar="INT", help=(
        "Class index, required for a conditional network (kept fixed while projecting)."))
    w_avg_samples: int = option(10000, min=1, max=100_000, help=(
        "Latents mapped to estimate the mean and spread of W (the start point and noise "
        "scale); held in memory, hence the cap."))
    initial_learning_rate: float = option(0.1, min=0, min_exclusive=True,
                                          help="Adam's peak learning rate.")
    lr_rampup_length: float = option(0.05, min=0, max=1, help=(
        "Fraction of the steps over which the learning rate rises linearly from 0."))
    lr_rampdown_length: float = option(0.25, min=0, max=1, min_exclusive=True, help=(
        "Fraction of the steps at the end over which the learning rate falls to 0 (cosine)."))
    initial_noise_factor: float = option(0.05, min=0, help=(
        "Exploration noise added to w at the start, in units of W's spread."))
    noise_ramp_length: float = option(0.75, min=0, max=1, min_exclusive=True, help=(
        "Fraction of the steps over which the exploration noise fades (quadratically) to 0."))
    regularize_noise_weight: float = option(1e5, min=0, help=(
        "Weight of the noise maps' autocorrelation penalty (keeps detail out of the noise)."))
    video_fps: float = option(10.0, min=0, min_exclusive=True, max=240,
                              help="Frames per second of the video.")

    def __post_init__(self) -> None:
        validate(self)
        if self.seed > MAX_SEED:
            raise fail("seed", self.seed, f"an integer 0..{MAX_SEED}")
        if self.vgg16 is not None and not self.vgg16.strip():
            raise fail("vgg16", self.vgg16, "a file name (or leave it unset)")
