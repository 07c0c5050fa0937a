"""Runs the requested metrics on a generator: checks the sizes up front, shares the generated
features between metrics, takes dataset features from the cache, applies the formulas."""
from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from sg2_container.errors import UserError
from sg2_container.metrics import formulas, ppl
from sg2_container.metrics.detector import Detector
from sg2_container.metrics.features import (
    EvaluationStopped,
    Workers,
    cache_name,
    extract_dataset,
    extract_generated,
    load_cached,
    store_cached,
)
from sg2_container.options.metric_specs import (
    IS_SPLITS,
    NOT_IN_THIS_BUILD,
    PR_NEIGHBOURS,
    SPECS,
    MetricSpec,
    canonical_names,
)
from sg2_container.options.schema import closest

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
GENERATOR_SEED = 0  # the same latents at every snapshot: values differ only by the network


def check_names(names, flag: str = "metrics") -> tuple[MetricSpec, ...]:
    """Specs for the names (in any case, as the options accept them); an unknown one is a
    UserError listing the valid names."""
    specs = []
    for name in canonical_names(tuple(names)):
        if name in NOT_IN_THIS_BUILD:
            raise UserError(f"{flag}: {name!r} is {NOT_IN_THIS_BUILD[name]}; "
                            f"available: {', '.join(SPECS)}")
        if name not in SPECS:
            raise UserError(f"{flag}: unknown metric {name!r}{closest(name, SPECS)}; "
                            f"valid names: {', '.join(SPECS)}")
        specs.append(SPECS[name])
    return tuple(dict.fromkeys(specs))


def needs_detector(specs) -> bool:
    return any(s.uses_detector for s in specs)


def needs_distance(specs) -> bool:
    return any(s.kind == "ppl" for s in specs)


def minimum_images(spec: MetricSpec) -> tuple[int, str]:
    """The fewest images (generated, and real where used) the metric's formula can take, and
    why: said in the refusal, since below it the formula returns a number that means nothing."""
    if spec.kind == "pr":
        return PR_NEIGHBOURS + 1, f"each image needs {PR_NEIGHBOURS} neighbours besides itself"
    if spec.kind == "is":
        return 2 * IS_SPLITS, (f"{IS_SPLITS} splits of at least 2 images; a split of one image "
                               "scores exactly 1 whatever the network")
    return 2, "a spread needs two images"


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvaluationSettings:
    """Which reals and how many images: the dataset as training reads it (subset/mirror/seed)."""

    data: str
    subset: int | None = None
    mirror: bool = False
    seed: int = 0  # the dataset subset's seed (training's --seed)
    latent_seed: int = GENERATOR_SEED
    num_images: int | None = None  # generated (and legacy real) images instead of 50k
    allow_small: bool = False
    allow_small_flag: str = "--allow-small"
    batch: int = 32
    cache_dir: Path | None = None
    progress: bool = False
    # data's content_fingerprint, where the caller has it already (a training run hashes the
    # dataset at start); None: computed here.
    data_fingerprint: str | None = None


@dataclasses.dataclass(frozen=True)
class _RealSet:
    xflip: bool
    count: int

    @property
    def selection(self) -> str:
        return f"n{self.count}" + ("-xflip" if self.xflip else "")


class MetricEvaluator:
    """Metrics for one dataset and detector (and, for PPL, the LPIPS VGG16 distance);
    `evaluate(G)` once per network. Construction checks everything that can fail before any
    image is generated; `check_resolution` what depends on the network's size."""

    def __init__(self, names, detector: Detector | None, settings: EvaluationSettings,
                 workers: Workers = Workers(), distance=None, distance_source: str = ""):
        from sg2_container.data.dataset import ImageFolderDataset, content_fingerprint

        self.specs = check_names(names)
        self.detector, self.settings, self.workers = detector, settings, workers
        self.distance, self.distance_source = distance, distance_source
        if needs_detector(self.specs) and detector is None:
            raise UserError(f"{', '.join(s.name for s in self.specs if s.uses_detector)} need "
                            "the detector (--detector)")
        if needs_distance(self.specs) and distance is None:
            raise UserError(f"{', '.join(s.name for s in self.specs if s.kind == 'ppl')} need "
                            "the LPIPS VGG16 distance (--vgg16)")
        if any(s.kind == "is" for s in self.specs) and not detector.has_logits:
            raise UserError("is50k needs the detector's class logits, which the TorchScript "
                            "detector path does not provide in this build; use the "
                            "torch-fidelity Inception weights")
        self._datasets: dict[bool, ImageFolderDataset] = {}
        for xflip in sorted({self._xflip(s) for s in self.specs if s.uses_reals}):
            self._datasets[xflip] = ImageFolderDataset(
                settings.data, max_size=settings.subset, xflip=xflip, random_seed=settings.seed)
        self._fingerprint = ""
        if self._datasets:
            self._fingerprint = settings.data_fingerprint or content_fingerprint(settings.data)
        self._subset_tag = ("" if settings.subset is None else
                            f"-subset{settings.subset}-seed{settings.seed}")
        self.real_sets = {s.name: self._real_set(s) for s in self.specs if s.uses_reals}
        for spec in self.specs:
            fewest, why = minimum_images(spec)
            if self.num_gen(spec) < fewest:
                raise UserError(f"{spec.name} needs at least {fewest} generated images ({why}), "
                                f"got {self.num_gen(spec)}")

    def check_resolution(self, resolution: int) -> None:
        """UserError if a metric cannot measure a network of this size (PPL's centre crop)."""
        for spec in self.specs:
            if spec.kind == "ppl":
                ppl.check_resolution(spec.name, spec.path, resolution)

    def check_generator(self, G) -> None:
        """UserError for a generator these metrics cannot measure against this dataset (the
        detector sees RGB or gray images; the reals must be the images G makes; a conditional
        G draws the dataset's labels)."""
        if G.img_channels not in (1, 3):
            raise UserError(f"the network makes {G.img_channels}-channel images; the metrics' "
                            "detector measures RGB (or gray) images: 1- or 3-channel networks")
        self._check_images_match(G)
        if G.c_dim and self._labelled_dataset.label_dim != G.c_dim:
            found = self._labelled_dataset.label_dim
            raise UserError(f"the network is conditional on {G.c_dim} labels, and the dataset "
                            f"{self.settings.data!r} has "
                            f"{f'{found}-value labels' if found else 'no labels'}: give the "
                            "dataset the network was trained on")

    def _check_images_match(self, G) -> None:
        """UserError if the dataset's images are not the size and channels the network makes.
        The detector would measure them anyway (it resizes everything to 299 px), but the
        user almost surely gave the wrong dataset, and the value would not say so. Training
        measures against its own training set, which always matches."""
        if not self._datasets:  # is50k and ppl* never look at the dataset's images
            return
        dataset = next(iter(self._datasets.values()))
        found = (dataset.num_channels, dataset.resolution)
        if found == (G.img_channels, G.img_resolution):
            return
        users = ", ".join(s.name for s in self.specs if s.uses_reals)

        def shown(channels: int, side: int) -> str:
            return f"{side} x {side} px {'gray' if channels == 1 else 'RGB'}"

        raise UserError(
            f"the network makes {shown(G.img_channels, G.img_resolution)} images and the dataset "
            f"{self.settings.data!r} holds {shown(*found)} images: {users} compare the two, so "
            "give the dataset the network was trained on (or one prepared at its size and "
            "channels: `sg2 prepare --width/--height/--channels`)")

    def _xflip(self, spec: MetricSpec) -> bool:
        return False if spec.full else self.settings.mirror

    def num_gen(self, spec: MetricSpec) -> int:
        return self.settings.num_images or spec.num_gen

    def _real_set(self, spec: MetricSpec) -> _RealSet:
        available = len(self._datasets[self._xflip(spec)])
        if spec.full:
            count = min(available, spec.real_max or available)
        else:
            need = self.settings.num_images or spec.real_count
            count = min(available, need)
            if available < need:
                message = (f"{spec.name} compares against {need} real images but the dataset "
                           f"{self.settings.data!r} has {available}")
                if not self.settings.allow_small:
                    raise UserError(f"{message}: give {self.settings.allow_small_flag} to "
                                    f"compute it on the {available} there are (not comparable "
                                    f"with published values), or use {spec.name}_full, which "
                                    "uses the whole dataset whatever its size")
                log.warning("%s: computing on %d real images (allowed small dataset)", message,
                            available)
        fewest, why = minimum_images(spec)
        if count < fewest:
            raise UserError(f"{spec.name} needs at least {fewest} real images ({why}); "
                            f"the dataset {self.settings.data!r} has {count}")
        return _RealSet(xflip=self._xflip(spec), count=count)

    def _real_features(self, real: _RealSet) -> np.ndarray | None:
        """Rank 0 decides whether the cache has them; if not, every process extracts its share.
        Only rank 0 gets the features (only it applies the formulas)."""
        cache = None
        if self.settings.cache_dir is not None:
            cache = Path(self.settings.cache_dir) / cache_name(
                dataset_fingerprint=self._fingerprint, detector_identity=self.detector.identity,
                selection=real.selection + self._subset_tag)
        features = load_cached(cache) if self.workers.rank == 0 else None
        if self.workers.gather(features is not None)[0]:
            return features
        features = extract_dataset(self._datasets[real.xflip], range(real.count), self.detector,
                                   batch=self.settings.batch, workers=self.workers,
                                   progress=self.settings.progress)
        if cache is not None and self.workers.rank == 0:
            store_cached(cache, features)
        return features

    @functools.cached_property
    def _labelled_dataset(self):
        """Opened once: training evaluates at every snapshot, and opening reads every header."""
        from sg2_container.data.dataset import ImageFolderDataset

        return ImageFolderDataset(self.settings.data, use_labels=True,
                                  max_size=self.settings.subset, random_seed=self.settings.seed)

    def _labels(self, G):
        """Random dataset labels for a conditional generator (as training draws them)."""
        if not G.c_dim:
            return None
        labelled = self._labelled_dataset
        return lambda rnd, n: np.stack([labelled.get_label(int(i))
                                        for i in rnd.randint(len(labelled), size=n)])

    def evaluate(self, G, on_record: Callable[[str, dict], None] | None = None,
                 ) -> dict[str, dict] | None:
        """{metric name: {"results": {...}, "total_time": s, ...}} on rank 0, None elsewhere.
        A metric's total_time counts the generated and dataset features it uses even when an
        earlier metric of this call extracted them: each time is what the metric costs alone.
        UserError, and no values, if the network's images are not finite.
        `on_record(name, record)` (rank 0) as each metric finishes, so that its value is out
        before a later metric is stopped; a stop raises EvaluationStopped saying which metrics
        finished, which one it abandoned and which never started."""
        self.check_resolution(G.img_resolution)
        self.check_generator(G)
        reals: dict[_RealSet, tuple[np.ndarray | None, float]] = {}
        generated: dict[int, tuple[dict[str, np.ndarray], float]] = {}
        labels = self._labels(G)
        records: dict[str, dict] = {}
        for position, spec in enumerate(self.specs):
            try:
                record = self._evaluate_one(spec, G, labels, generated, reals)
            except EvaluationStopped:
                raise EvaluationStopped(
                    finished=records, abandoned=spec.name,
                    not_started=tuple(s.name for s in self.specs[position + 1:])) from None
            if record is not None:  # rank 0
                records[spec.name] = record
                if on_record is not None:
                    on_record(spec.name, record)
        return records if self.workers.rank == 0 else None

    def _evaluate_one(self, spec: MetricSpec, G, labels, generated: dict, reals: dict,
                      ) -> dict | None:
        """One metric's record (None on ranks other than 0). `generated` (by image count) and
        `reals` (by real set) hold the features earlier metrics of this evaluation extracted;
        what this one extracts is added for the later ones."""
        count = self.num_gen(spec)
        if spec.kind == "ppl":
            lengths, seconds = _timed(
                ppl.path_lengths, FiniteImages(G, spec.name), self.distance, spec.path,
                count=count, batch=self.settings.batch, seed=self.settings.latent_seed,
                labels=labels, workers=self.workers, progress=self.settings.progress)
            if self.workers.rank != 0:
                return None
            return {"results": {spec.name: formulas.path_length(lengths)},
                    "metric": spec.name, "total_time": seconds,
                    "num_gen": count, "num_real": 0, "vgg16": self.distance_source}
        if count not in generated:
            users = ", ".join(s.name for s in self.specs
                              if s.kind != "ppl" and self.num_gen(s) == count)
            generated[count] = _timed(
                extract_generated, FiniteImages(G, users), self.detector, count=count,
                batch=self.settings.batch, seed=self.settings.latent_seed, labels=labels,
                logits=any(s.kind == "is" for s in self.specs), workers=self.workers,
                progress=self.settings.progress)
        real_set = self.real_sets.get(spec.name)
        if real_set is not None and real_set not in reals:
            reals[real_set] = _timed(self._real_features, real_set)
        if self.workers.rank != 0:
            return None
        gen, gen_seconds = generated[count]
        real, real_seconds = reals.get(real_set, (None, 0.0))
        results, seconds = _timed(self._formula, spec, gen, real)
        return {
            "results": results, "metric": spec.name,
            "total_time": seconds + gen_seconds + real_seconds,
            "num_gen": count, "num_real": real_set.count if real_set else 0,
            "detector_sha256": self.detector.identity,
        }

    def _formula(self, spec: MetricSpec, gen: dict[str, np.ndarray], real) -> dict[str, float]:
        name = spec.name
        if spec.kind == "fid":
            return {name: formulas.fid(gen["pool"], real)}
        if spec.kind == "kid":
            return {name: formulas.kid(gen["pool"], real)}
        if spec.kind == "pr":
            precision, recall = formulas.precision_recall(gen["pool"], real,
                                                          device=self.detector.device)
            return {f"{name}_precision": precision, f"{name}_recall": recall}
        mean, std = formulas.inception_score(gen["logits"])
        return {f"{name}_mean": mean, f"{name}_std": std}


T = TypeVar("T")


def _timed(work: Callable[..., T], *args, **kwargs) -> tuple[T, float]:
    """work(*args, **kwargs) and the seconds it took."""
    start = time.time()
    value = work(*args, **kwargs)
    return value, time.time() - start


class FiniteImages:
    """The generator as the extraction loops call it (G(z, c), G.synthesis(ws)), refusing
    images that are not finite: cast to uint8 for the detector, NaN becomes an arbitrary
    value and FID a finite number that means nothing. Every batch is checked, so a network
    that fails only for some latents is caught too; the test is one reduction per batch."""

    def __init__(self, G, metrics: str) -> None:
        self._G, self._metrics = G, metrics  # metrics: the names an error is about

    def __getattr__(self, name: str) -> object:
        return getattr(self._G, name)

    def __call__(self, *args, **kwargs) -> torch.Tensor:
        return self._checked(self._G(*args, **kwargs))

    def synthesis(self, *args, **kwargs) -> torch.Tensor:
        return self._checked(self._G.synthesis(*args, **kwargs))

    def _checked(self, images: torch.Tensor) -> torch.Tensor:
        import torch

        finite = torch.isfinite(images).flatten(1).all(dim=1)
        if not bool(finite.all()):
            raise UserError(
                f"{self._metrics}: the network's images are not finite ({int((~finite).sum())} "
                f"of a batch of {len(images)} hold NaN or infinite values): the network file "
                "is damaged or its training diverged; no metric values were written, since "
                "they would be finite numbers that mean nothing")
        return images


def locate_measuring_files(specs, *, detector: str | None, vgg16: str | None) -> None:
    """The files the metrics `specs` need exist (not loaded): a dry run's check, with the
    errors the real start gives."""
    from sg2_container.metrics.detector import locate_detector
    from sg2_container.metrics.ppl import locate_vgg16

    if needs_detector(specs):
        locate_detector(detector)
    if needs_distance(specs):
        locate_vgg16(vgg16)


def load_measuring_networks(specs, device, *, detector: str | None, detector_torchscript: bool,
                            vgg16: str | None, allow_random_vgg16: bool = False,
                            rehearsal_flag: str | None = None):
    """(detector, PPL distance, distance's source) for the metrics `specs`, each loaded only if
    a metric needs it: the cheapest things to get wrong, so they fail before any work."""
    from sg2_container.metrics.detector import load_detector, locate_detector
    from sg2_container.metrics.ppl import load_distance

    detector_net = distance = None
    source = ""
    if needs_detector(specs):
        detector_net = load_detector(locate_detector(detector), device,
                                     torchscript=detector_torchscript)
    if needs_distance(specs):
        distance, source = load_distance(vgg16, device, allow_random=allow_random_vgg16,
                                         rehearsal_flag=rehearsal_flag)
    return detector_net, distance, source
