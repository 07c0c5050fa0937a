"""`sg2 metrics`: a network file evaluated on a dataset, outside training."""
from __future__ import annotations

import logging
from pathlib import Path

from sg2_container.errors import UserError
from sg2_container.metrics.options import MetricsOptions

log = logging.getLogger(__name__)


def run_metrics(options: MetricsOptions) -> dict[str, dict]:
    """Loads the detector and the PPL distance first (the cheapest things to get wrong), each
    only if a requested metric needs it, then the network; returns {metric: record} as
    training writes them to metric-<name>.jsonl."""
    from sg2_container.metrics.evaluate import (
        EvaluationSettings,
        MetricEvaluator,
        check_names,
        load_measuring_networks,
    )
    from sg2_container.metrics.features import CACHE_FOLDER
    from sg2_container.models.files import load_model
    from sg2_container.models.source import located_model
    from sg2_container.runtime import resolve_device

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
    settings = EvaluationSettings(
        data=options.data, mirror=options.mirror, latent_seed=options.seed, num_images=options.num_images,
        allow_small=options.allow_small, batch=batch, cache_dir=cache_dir, progress=True)
    evaluator = MetricEvaluator(options.metrics, detector, settings, distance=distance,
                                distance_source=source)
    with located_model(network, what="network") as (path, shown):
        G = load_model(path, device=device).G_ema
    if shown == network:
        name = network.name  # model.pt
    elif shown.is_absolute():
        name = str(Path(network.name) / shown.relative_to(network))  # found in it: run/model.pt
    else:
        name = str(shown)  # inside an archive: model.tar.gz/model.pt
    records = evaluator.evaluate(G)
    for record in records.values():
        record["network"] = name
    return records
