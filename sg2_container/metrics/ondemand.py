"""`sg2 metrics`: a network file evaluated on a dataset, outside training."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sg2_container.errors import Stopped, UserError
from sg2_container.metrics.options import MetricsOptions

if TYPE_CHECKING:
    from sg2_container.metrics.features import EvaluationStopped

log = logging.getLogger(__name__)


def run_metrics(options: MetricsOptions, *, stop: threading.Event | None = None,
                report: Callable[[dict], None] | None = None) -> dict[str, dict]:
    """Loads the detector and the PPL distance first (the cheapest things to get wrong), each
    only if a requested metric needs it, then the network; returns {metric: record} as
    training writes them to metric-<name>.jsonl. `report(record)` as each metric finishes;
    `stop`, once set, ends the evaluation at the next batch with Stopped, whose message names
    the metrics reported before it (their values stand: each metric is computed whole)."""
    from sg2_container.metrics.evaluate import (
        EvaluationSettings,
        MetricEvaluator,
        check_names,
        load_measuring_networks,
    )
    from sg2_container.metrics.features import CACHE_FOLDER, EvaluationStopped, Workers
    from sg2_container.models.files import load_model
    from sg2_container.models.source import located_model, refuse_url
    from sg2_container.runtime import resolve_device

    refuse_url(options.network, "network")
    network = Path(options.network)
    if not network.exists():
        raise UserError(f"network={options.network!r}: no such file or folder (a model file "
                        "from `sg2 train`, a reference network pickle, a training job's "
                        "model.tar.gz, or a folder holding one)")
    device = resolve_device(options.device)
    specs = check_names(options.metrics)
    detector, distance, source = load_measuring_networks(
        specs, device, detector=options.detector,
        detector_torchscript=options.detector_torchscript, vgg16=options.vgg16,
        allow_random_vgg16=options.allow_random_vgg16, rehearsal_flag="--allow-random-vgg16")
    beside = network if network.is_dir() else network.parent
    cache_dir = Path(options.cache_dir) if options.cache_dir else beside / CACHE_FOLDER
    batch = options.batch or (64 if device.type == "cuda" else 8)
    workers = Workers(stop_requested=stop.is_set) if stop is not None else Workers()

    def evaluator_for(reals: dict) -> MetricEvaluator:
        """Opens and checks the dataset: before the network when --data names it."""
        settings = EvaluationSettings(
            **reals, latent_seed=options.seed, num_images=options.num_images,
            allow_small=options.allow_small, batch=batch, cache_dir=cache_dir, progress=True)
        return MetricEvaluator(options.metrics, detector, settings, workers,
                               distance=distance, distance_source=source)

    evaluator = None
    if options.data is not None:
        evaluator = evaluator_for({"data": options.data, "mirror": bool(options.mirror)})
    with located_model(network, what="network") as (path, shown):
        bundle = load_model(path, device=device)
    G = bundle.G_ema
    if shown == network:
        name = network.name  # model.pt
    elif shown.is_absolute():
        name = str(Path(network.name) / shown.relative_to(network))  # found in it: run/model.pt
    else:
        name = str(shown)  # inside an archive: model.tar.gz/model.pt
    if evaluator is None:
        evaluator = evaluator_for(recorded_reals(
            options, bundle.metadata.get("training_set_kwargs"), name))

    def finished(metric: str, record: dict) -> None:
        record["network"] = name
        if report is not None:
            report(record)

    try:
        return evaluator.evaluate(G, on_record=finished)
    except EvaluationStopped as stopped:
        raise Stopped(stopped_message(stopped)) from None


def recorded_reals(options: MetricsOptions, recorded: object, network: str) -> dict:
    """The reals to compare with when --data is not given: the training set the network file
    records (`training_set_kwargs`, as the reference's calc_metrics.py looks it up), with its
    x-flips and subset unless --mirror/--no-mirror says otherwise."""
    kwargs = recorded if isinstance(recorded, dict) else {}
    path = kwargs.get("path")
    if not isinstance(path, str) or not path:
        raise UserError(f"{network} records no training set (a published pickle, or a "
                        "model file from an older version): give the dataset with --data")
    if not Path(path).exists():
        raise UserError(f"{network} was trained on {path}, which is not on this machine "
                        "(a SageMaker job's channel, or another computer's path): give the "
                        "dataset with --data")
    mirror = bool(kwargs.get("xflip")) if options.mirror is None else options.mirror
    subset, seed = kwargs.get("max_size"), kwargs.get("random_seed")
    chosen = isinstance(subset, int) and isinstance(seed, int)  # random_seed: a subset was drawn
    log.info("reals: %s, the training set %s records (legacy metrics' x-flips %s%s)", path,
             network, "on" if mirror else "off", f", a subset of {subset} with seed {seed}" if chosen
             else "")
    return {"data": path, "mirror": mirror, "subset": subset if chosen else None,
            "seed": seed if chosen else 0}


def stopped_message(stopped: EvaluationStopped) -> str:
    """What a stop left: the metric abandoned, those never started, those finished."""
    parts = [f"{stopped.abandoned} abandoned between batches, no value"]
    if stopped.not_started:
        parts.append(f"not started: {', '.join(stopped.not_started)}")
    if stopped.finished:
        parts.append(f"finished (values above): {', '.join(stopped.finished)}")
    else:
        parts.append("no metric had finished")
    return "; ".join(parts)
