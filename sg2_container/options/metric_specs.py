"""The metric names users type (the reference's) and what each one measures, torch-free so that
options can validate names without importing torch."""
from __future__ import annotations

import dataclasses

FULL_DATASET = None  # real_count: every image of the dataset (up to real_max)
PPL_EPSILON = 1e-4
# The training job's input channel holding the VGG16 weights file (read before torch loads).
VGG16_CHANNEL = "vgg16"


@dataclasses.dataclass(frozen=True, kw_only=True)
class PathLength:
    """Which perceptual path length: interpolation space (z: great circle, w: straight line),
    where on the path (full: uniform t in [0, 1); end: t = 0) and whether only the centre crop
    is compared (the legacy metrics)."""

    space: str  # z | w
    sampling: str  # full | end
    crop: bool
    epsilon: float = PPL_EPSILON


@dataclasses.dataclass(frozen=True, kw_only=True)
class MetricSpec:
    """One metric: its formula (`kind`), how many images it generates and which reals it uses.

    `_full` metrics use the whole dataset without x-flips (at most `real_max` images); the
    legacy ones use a fixed number of reals (`real_count`) with the dataset's x-flip setting.
    """

    name: str
    kind: str  # fid | kid | pr | is | ppl
    num_gen: int = 50_000
    real_count: int | None = FULL_DATASET
    real_max: int | None = None
    summary: str = ""
    path: PathLength | None = None  # kind "ppl" only

    @property
    def uses_reals(self) -> bool:
        return self.kind not in ("is", "ppl")

    @property
    def uses_detector(self) -> bool:
        """False for PPL, which needs the LPIPS VGG16 distance instead of the detector."""
        return self.kind != "ppl"

    @property
    def full(self) -> bool:
        return self.uses_reals and self.real_count is FULL_DATASET


SPECS: dict[str, MetricSpec] = {s.name: s for s in (
    MetricSpec(name="fid50k_full", kind="fid",
               summary="FID, 50k generated vs the whole dataset (no x-flips)"),
    MetricSpec(name="kid50k_full", kind="kid", real_max=1_000_000,
               summary="KID, 50k generated vs up to 1M reals, 100 subsets of <= 1000"),
    MetricSpec(name="pr50k3_full", kind="pr", real_max=200_000,
               summary="precision/recall (k=3), 50k generated vs up to 200k reals"),
    MetricSpec(name="fid50k", kind="fid", real_count=50_000,
               summary="legacy FID: 50k generated vs 50k reals (dataset x-flips kept)"),
    MetricSpec(name="kid50k", kind="kid", real_count=50_000,
               summary="legacy KID: 50k generated vs 50k reals"),
    MetricSpec(name="pr50k3", kind="pr", real_count=50_000,
               summary="legacy precision/recall (k=3): 50k generated vs 50k reals"),
    MetricSpec(name="is50k", kind="is", summary="Inception score, 50k generated, 10 splits"),
    MetricSpec(name="ppl2_wend", kind="ppl", path=PathLength(space="w", sampling="end", crop=False),
               summary="perceptual path length in W, at path ends, full image (LPIPS VGG16)"),
    MetricSpec(name="ppl_zfull", kind="ppl", path=PathLength(space="z", sampling="full", crop=True),
               summary="legacy PPL in Z, whole path, centre crop"),
    MetricSpec(name="ppl_wfull", kind="ppl", path=PathLength(space="w", sampling="full", crop=True),
               summary="legacy PPL in W, whole path, centre crop"),
    MetricSpec(name="ppl_zend", kind="ppl", path=PathLength(space="z", sampling="end", crop=True),
               summary="legacy PPL in Z, path ends, centre crop"),
    MetricSpec(name="ppl_wend", kind="ppl", path=PathLength(space="w", sampling="end", crop=True),
               summary="legacy PPL in W, path ends, centre crop"),
)}
METRIC_NAMES = tuple(SPECS)
PPL_NAMES = tuple(name for name, spec in SPECS.items() if spec.kind == "ppl")
# Names of the reference this build does not compute, with the reason (none at present).
NOT_IN_THIS_BUILD: dict[str, str] = {}
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
PR_NEIGHBOURS = 3
IS_SPLITS = 10


def canonical_names(names: object) -> object:
    """Metric names as the table spells them (lower case): `FID50K_full` is accepted for
    fid50k_full, so a name's case never decides whether a run computes it. Anything but a
    list or tuple is handed back unchanged for the schema to refuse."""
    if not isinstance(names, (tuple, list)):
        return names
    return tuple(n.lower() if isinstance(n, str) else n for n in names)


def result_line(results: dict[str, float], **extra: str) -> str:
    """`metric fid50k_full=12.34 ...`: the line `sg2 metrics` prints and training logs; the
    CloudWatch regexes in docs/sagemaker.md read it."""
    fields = [f"{key}={value:.6g}" for key, value in results.items()]
    return " ".join(["metric", *fields, *(f"{k}={v}" for k, v in extra.items())])
