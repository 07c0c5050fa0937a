"""The metric names users type (the reference's) and what each one measures, torch-free so that
options can validate names without importing torch."""
from __future__ import annotations

import dataclasses

FULL_DATASET = None  # real_count: every image of the dataset (up to real_max)


@dataclasses.dataclass(frozen=True, kw_only=True)
class MetricSpec:
    """One metric: its formula (`kind`), how many images it generates and which reals it uses.

    `_full` metrics use the whole dataset without x-flips (at most `real_max` images); the
    legacy ones use a fixed number of reals (`real_count`) with the dataset's x-flip setting.
    """

    name: str
    kind: str  # fid | kid | pr | is
    num_gen: int = 50_000
    real_count: int | None = FULL_DATASET
    real_max: int | None = None
    summary: str = ""

    @property
    def uses_reals(self) -> bool:
        return self.kind != "is"

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
)}
METRIC_NAMES = tuple(SPECS)
NOT_IN_THIS_BUILD = {
    name: "not in this build (perceptual path length needs the LPIPS VGG16 distance)"
    for name in ("ppl2_wend", "ppl_zfull", "ppl_wfull", "ppl_zend", "ppl_wend")
}
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
PR_NEIGHBOURS = 3
IS_SPLITS = 10


def result_keys(spec: MetricSpec) -> tuple[str, ...]:
    """The keys of a metric's results (the reference's naming)."""
    if spec.kind == "pr":
        return (f"{spec.name}_precision", f"{spec.name}_recall")
    if spec.kind == "is":
        return (f"{spec.name}_mean", f"{spec.name}_std")
    return (spec.name,)


def result_line(results: dict[str, float], **extra: str) -> str:
    """`metric fid50k_full=12.34 ...`: the line `sg2 metrics` prints and training logs; the
    CloudWatch regexes in docs/sagemaker.md read it."""
    fields = [f"{key}={value:.6g}" for key, value in results.items()]
    return " ".join(["metric", *fields, *(f"{k}={v}" for k, v in extra.items())])
