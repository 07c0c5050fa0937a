"""Metrics at every snapshot: the loop's one call into sg2_container.metrics.

Created before the first step, so a missing detector or a too-small dataset stops the run
before any training time is spent. Every process extracts a share of the images; rank 0
applies the formulas and writes metric-<name>.jsonl, TensorBoard scalars and a log line.
A stop request (SIGTERM: a spot interruption's two minutes) ends an evaluation within a batch,
on every rank together; the snapshot it measures is already saved.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from sg2_container.options import TrainingOptions
from sg2_container.training import distributed as dist_utils
from sg2_container.training.report import Reporter

log = logging.getLogger("sg2_container.training")


class SnapshotMetrics:
    def __init__(self, evaluator, world_size: int):
        self.evaluator, self.world_size = evaluator, world_size

    def run(self, G_ema, snapshot: str, kimg: float, reporter: Reporter) -> bool:
        """False when a stop request ended the evaluation (nothing is recorded for it)."""
        from sg2_container.metrics.features import EvaluationStopped

        start = time.time()
        try:
            records = self.evaluator.evaluate(G_ema)
        except EvaluationStopped:
            log.info("metrics for %s abandoned after %.1fs: stop requested", snapshot,
                     time.time() - start)
            return False
        if records is None:  # not rank 0
            return True
        for name, record in records.items():
            record.update(snapshot_pkl=snapshot, kimg=kimg, num_gpus=self.world_size)
            reporter.metric(name, record)
        log.info("metrics for %s took %.1fs", snapshot, time.time() - start)
        return True


def snapshot_metrics(options: TrainingOptions, run_dir: Path, device,
                     group: dist_utils.ProcessGroupInfo, resolution: int,
                     data_fingerprint: str | None = None,
                     stop_event: threading.Event | None = None) -> SnapshotMetrics | None:
    """None without --metrics; otherwise the detector (and, for PPL, the VGG16 distance) is
    loaded and the sizes are checked against the data and the network's `resolution`.
    `data_fingerprint`: the run's content_fingerprint of options.data (not hashed again);
    `stop_event`: the training's, checked between batches (on every rank at once)."""
    if not options.metrics:
        return None
    from sg2_container.metrics.evaluate import (
        EvaluationSettings,
        MetricEvaluator,
        check_names,
        load_measuring_networks,
    )
    from sg2_container.metrics.features import CACHE_FOLDER, Workers

    specs = check_names(options.metrics)
    detector, distance, source = load_measuring_networks(
        specs, device, detector=options.detector,
        detector_torchscript=options.detector_torchscript, vgg16=options.vgg16)
    settings = EvaluationSettings(
        data=options.data, subset=options.subset, mirror=options.mirror, seed=options.seed,
        num_images=options.metrics_images, allow_small=options.metrics_allow_small,
        allow_small_flag="--metrics-allow-small 1", batch=64 if device.type == "cuda" else 8,
        cache_dir=run_dir / CACHE_FOLDER, progress=False, data_fingerprint=data_fingerprint)
    def stop_requested() -> bool:
        return dist_utils.any_rank(stop_event is not None and stop_event.is_set(), group)

    workers = Workers(rank=group.rank, world_size=group.world_size,
                      gather=dist_utils.all_gather_objects, stop_requested=stop_requested)
    evaluator = MetricEvaluator(options.metrics, detector, settings, workers, distance=distance,
                                distance_source=source)
    evaluator.check_resolution(resolution)
    return SnapshotMetrics(evaluator, group.world_size)
