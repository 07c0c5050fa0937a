"""Detector features of dataset images (cached next to the run) and of generated images,
batched on the device, with a progress bar, and split across processes when there are several.

Splitting: process r of w handles images r, r+w, r+2w, ...; `gather` (an all-gather supplied
by the caller; identity in one process) brings every share back, in rank order. Between batches
every process asks `stop_requested` (collective where there are several processes), so a stop
during an evaluation of 50k images is acted on within one batch.
"""
from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from sg2_container.metrics.detector import Detector
from sg2_container.models.files import write_atomically

log = logging.getLogger(__name__)
CACHE_FOLDER = "metric-cache"  # next to the run (or the network file): reused on resume


def _single(value):
    return [value]


def _never() -> bool:
    return False


class EvaluationStopped(Exception):
    """A stop was requested during an evaluation; every process raises it at the same batch.

    The evaluator fills in where it stood, so that an on-demand run can report the metrics it
    finished (training drops them all: its resumed run measures the next snapshot)."""

    def __init__(self, *, finished: dict[str, dict] | None = None, abandoned: str = "",
                 not_started: tuple[str, ...] = ()):
        super().__init__(abandoned)
        self.finished = finished or {}  # {metric: record} on rank 0; empty elsewhere
        self.abandoned = abandoned  # the metric being computed when the stop came
        self.not_started = not_started


@dataclasses.dataclass(frozen=True, kw_only=True)
class Workers:
    """Who extracts which images: this process's rank, the process count and an all-gather."""

    rank: int = 0
    world_size: int = 1
    gather: Callable[[object], list] = _single
    # Called by every process at the same points (it may be a collective); True ends the
    # evaluation with EvaluationStopped.
    stop_requested: Callable[[], bool] = _never

    def share(self, count: int) -> np.ndarray:
        return np.arange(self.rank, count, self.world_size)

    def batches(self, count: int, batch: int):
        """This process's share of range(count), `batch` at a time. Every process walks as many
        batches as the largest share has (the last may be empty here), so that the stop check
        between them lines up across processes."""
        mine = self.share(count)
        longest = -(-count // self.world_size)
        for start in range(0, longest, batch):
            if self.stop_requested():
                raise EvaluationStopped
            yield mine[start:start + batch]

    def combine(self, mine: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        parts = self.gather(mine)
        return {k: np.concatenate([p[k] for p in parts]) for k in mine}


def progress_bar(total: int, desc: str, enabled: bool, unit: str = "img"):
    """The metrics' one progress bar (stderr, with rate and ETA)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not enabled,
                dynamic_ncols=True, smoothing=0.1)


def extract_dataset(dataset, indices: Sequence[int], detector: Detector, *, batch: int,
                    workers: Workers = Workers(), progress: bool = False) -> np.ndarray:
    """Pool features of dataset[indices] (uint8 images as stored, in index order per rank)."""
    import torch

    indices = np.asarray(indices)
    chunks = []
    with progress_bar(len(workers.share(len(indices))), "dataset features", progress) as bar:
        for part in workers.batches(len(indices), batch):
            if not len(part):
                continue
            images = np.stack([dataset[int(i)][0] for i in indices[part]])
            chunks.append(detector(torch.from_numpy(images))["pool"])
            bar.update(len(images))
    local = {"pool": np.concatenate(chunks) if chunks else np.zeros([0, 2048], np.float32)}
    return workers.combine(local)["pool"]


def load_cached(cache_file: Path | None) -> np.ndarray | None:
    """Features stored by `store_cached`, or None (absent or unreadable: then recomputed)."""
    if cache_file is None or not cache_file.is_file():
        return None
    try:
        features = np.load(cache_file, allow_pickle=False)
    except (OSError, ValueError) as e:
        log.warning("ignoring unreadable feature cache %s (%s)", cache_file, e)
        return None
    log.info("dataset features from cache %s (%d images)", cache_file.name, len(features))
    return features


def store_cached(cache_file: Path, features: np.ndarray) -> None:
    """Atomic; a cache that cannot be written only costs a recomputation later."""
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(cache_file, lambda f: np.save(f, features, allow_pickle=False))
    except OSError as e:
        log.warning("could not cache dataset features in %s (%s): they will be computed again "
                    "next time", cache_file, e)


def cache_name(*, dataset_fingerprint: str, detector_identity: str, selection: str) -> str:
    """File name of one set of dataset features: which data, which detector, which images."""
    data = dataset_fingerprint.split(":", 1)[-1]  # content_fingerprint says "sha256:<hex>"
    return f"reals-{data[:16]}-{detector_identity[:16]}-{selection}.npy"


def generated_latents(G, count: int, seed: int, labels: Callable[[np.random.RandomState, int], np.ndarray] | None):
    """z [count, z_dim] and c [count, c_dim] for the generated images, from `seed` alone."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    z = torch.randn([count, G.z_dim], generator=gen)
    if G.c_dim and labels is not None:
        c = torch.from_numpy(labels(np.random.RandomState(seed), count)).float()
    else:
        c = torch.zeros([count, G.c_dim])
    return z, c


def extract_generated(G, detector: Detector, *, count: int, batch: int, seed: int,
                      labels=None, logits: bool = False, workers: Workers = Workers(),
                      progress: bool = False) -> dict[str, np.ndarray]:
    """Pool features (and logits) of `count` images from G: random z, dataset labels for a
    conditional G, random noise; the process's RNG state is left as it was found."""
    import torch

    z, c = generated_latents(G, count, seed, labels)
    device = next(G.parameters()).device
    devices = [device] if device.type == "cuda" else []
    parts: dict[str, list] = {"pool": [], "logits": []}
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed + 1 + workers.rank)
        with progress_bar(len(workers.share(count)), "generated features", progress) as bar:
            for part in workers.batches(count, batch):
                if not len(part):
                    continue
                idx = torch.from_numpy(part)
                images = G(z[idx].to(device), c[idx].to(device), noise_mode="random")
                images = (images * 127.5 + 128).clamp(0, 255).to(torch.uint8)
                out = detector(images, logits=logits)
                for key, value in out.items():
                    parts[key].append(value)
                bar.update(len(idx))
    widths = {"pool": 2048, "logits": 1008}  # only used by a process that got no images
    wanted = ["pool"] + (["logits"] if logits and detector.has_logits else [])
    local = {k: np.concatenate(parts[k]) if parts[k] else np.zeros([0, widths[k]], np.float32)
             for k in wanted}
    return workers.combine(local)
