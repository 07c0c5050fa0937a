"""Metrics inside a (tiny) training run: metric-<name>.jsonl at every snapshot, the dataset
features computed once and reused by the resumed run, a missing detector refused up front."""
import json
import logging

import numpy as np
import pytest

from sg2_container.data import dataset as dataset_module
from sg2_container.data.synthetic import write_synthetic_dataset
from sg2_container.errors import UserError
from sg2_container.options import TrainingOptions
from sg2_container.training import loop as loop_module
from sg2_container.training.loop import train


def _options(data, outdir, **overrides):
    values = dict(data=str(data), outdir=str(outdir), cfg="paper256", kimg=0.008, batch=4,
                  cbase=128, cmax=16, map=2, workers=0, snap=1, kimg_per_tick=0.004, aug="noaug",
                  gamma=1.0, seed=3, device="cpu", metrics=("fid50k_full",), metrics_images=2)
    values.update(overrides)
    return TrainingOptions(**values)


def test_training_writes_metrics_and_a_resumed_run_reuses_the_dataset_features(
        detector_file, tmp_path, caplog, monkeypatch):
    monkeypatch.delenv("SG2_DETECTOR", raising=False)
    data = write_synthetic_dataset(tmp_path / "d.zip", count=4, resolution=16)
    run = tmp_path / "run"
    hashed, real = [], dataset_module.content_fingerprint  # the run hashes its data once;
    for module in (dataset_module, loop_module):            # the metrics reuse that hash
        monkeypatch.setattr(module, "content_fingerprint", lambda p: hashed.append(p) or real(p))
    with caplog.at_level(logging.INFO):
        assert train(_options(data, run, detector=str(detector_file))).finished
    assert hashed == [str(data)]
    lines = [json.loads(x) for x in (run / "metric-fid50k_full.jsonl").read_text().splitlines()]
    assert [r["snapshot_pkl"] for r in lines] == ["network-snapshot-000000.pt"] * 2
    assert [r["kimg"] for r in lines] == [0.004, 0.008]
    for record in lines:
        assert record["metric"] == "fid50k_full" and record["num_real"] == 4
        assert record["results"]["fid50k_full"] > 0 and record["num_gpus"] == 1
    assert "metric fid50k_full=" in caplog.text
    (cache,) = (run / "metric-cache").glob("reals-*.npy")
    written = cache.stat().st_mtime_ns
    assert list(run.glob("events.out.tfevents.*"))

    caplog.clear()
    monkeypatch.setenv("SG2_DETECTOR", str(detector_file))  # the detector from the environment
    with caplog.at_level(logging.INFO):
        assert train(_options(data, run, kimg=0.012)).finished  # resumes, one more snapshot
    assert len((run / "metric-fid50k_full.jsonl").read_text().splitlines()) == 3
    assert "dataset features from cache" in caplog.text
    assert cache.stat().st_mtime_ns == written


def test_metrics_without_a_detector_stop_before_training(tmp_path, monkeypatch):
    monkeypatch.delenv("SG2_DETECTOR", raising=False)
    data = write_synthetic_dataset(tmp_path / "d.zip", count=4, resolution=16)
    with pytest.raises(UserError, match="--detector FILE.*SG2_DETECTOR.*'detector'"):
        train(_options(data, tmp_path / "run"))
    assert not list((tmp_path / "run").glob("checkpoint-*"))


def test_unknown_metric_names_are_refused_with_the_list():
    with pytest.raises(UserError, match="one of none, fid50k_full, kid50k_full, pr50k3_full"):
        TrainingOptions(data="d", outdir="o", metrics=("fid50",))
    assert TrainingOptions(data="d", outdir="o", metrics=("ppl2_wend",)).metrics == ("ppl2_wend",)


def test_two_processes_share_the_extraction_and_agree_with_one(detector_file, tmp_path,
                                                               monkeypatch):
    from sg2_container.training.launch import run_training

    monkeypatch.setenv("SG2_DETECTOR", str(detector_file))  # spawned ranks inherit it
    data = write_synthetic_dataset(tmp_path / "d.zip", count=4, resolution=16)
    common = dict(kimg=0.004, batch=2, metrics_images=3, metrics=("fid50k_full", "kid50k_full"))
    assert run_training(_options(data, tmp_path / "one", **common)).finished
    assert run_training(_options(data, tmp_path / "two", gpus=2, **common)).finished

    def records(run):
        return {name: json.loads((run / f"metric-{name}.jsonl").read_text().splitlines()[-1])
                for name in common["metrics"]}

    one, two = records(tmp_path / "one"), records(tmp_path / "two")
    assert two["fid50k_full"]["num_gpus"] == 2 and two["fid50k_full"]["num_real"] == 4
    # Same images, same features: FID does not depend on how the work was split. (To float
    # rounding: one sample per rank takes the fused modulated conv, two the unfused one, and
    # FID over three images amplifies that to 1.3e-4 here; a wrong split moves it far more.)
    assert two["fid50k_full"]["results"]["fid50k_full"] == pytest.approx(
        one["fid50k_full"]["results"]["fid50k_full"], rel=1e-3)
    assert np.isfinite(two["kid50k_full"]["results"]["kid50k_full"])


def test_workers_walk_the_same_number_of_batches_so_collective_stop_checks_line_up():
    from sg2_container.metrics.features import Workers

    checks, seen = [], []
    for rank in (0, 1):
        workers = Workers(rank=rank, world_size=2,
                          stop_requested=lambda r=rank: checks.append(r) or False)
        seen += [int(i) for part in workers.batches(9, 4) for i in part]
    assert checks.count(0) == checks.count(1) == 2  # rank 1's share of 4 gets an empty batch
    assert sorted(seen) == list(range(9))


def test_a_stop_during_snapshot_metrics_ends_the_evaluation_within_a_batch(
        detector_file, tmp_path, caplog, monkeypatch):
    """SIGTERM on a spot instance leaves two minutes: an evaluation of 50k images must not run
    to its end first. The snapshot is saved before the metrics, so the run resumes from it."""
    import threading

    from sg2_container.metrics.detector import Detector

    stop = threading.Event()
    calls = []
    measure = Detector.__call__

    def measure_then_stop(self, images, **kwargs):  # the stop arrives during the first batch
        calls.append(len(images))
        stop.set()
        return measure(self, images, **kwargs)

    monkeypatch.setattr(Detector, "__call__", measure_then_stop)
    data = write_synthetic_dataset(tmp_path / "d.zip", count=4, resolution=16)
    options = _options(data, tmp_path / "run", detector=str(detector_file), metrics_images=16)
    with caplog.at_level(logging.INFO):
        result = train(options, stop_event=stop)
    assert result.stopped and not result.finished
    assert calls == [8]  # one batch of the 16 images, then the stop was seen
    assert "abandoned" in caplog.text and not list(result.run_dir.glob("metric-*.jsonl"))
    assert result.last_checkpoint is not None and result.cur_nimg == 4

    monkeypatch.setattr(Detector, "__call__", measure)
    assert train(options).finished  # continues from the snapshot, measuring as it goes
    lines = (tmp_path / "run" / "metric-fid50k_full.jsonl").read_text().splitlines()
    assert [json.loads(x)["kimg"] for x in lines] == [0.008]


def test_a_stop_during_metrics_reaches_both_processes_with_unequal_shares(
        detector_file, tmp_path, monkeypatch):
    """65 images over two processes: shares of 33 and 32, five and four batches of 8. The
    collective stop check must still pair up, or one process waits for the other forever."""
    import threading
    import time

    from sg2_container.training.launch import run_training

    monkeypatch.setenv("SG2_DETECTOR", str(detector_file))
    data = write_synthetic_dataset(tmp_path / "d.zip", count=4, resolution=16)
    run = tmp_path / "run"
    stop = threading.Event()

    def stop_when_the_first_snapshot_is_written():  # the metrics begin right after it
        while not stop.is_set():
            if (run / "network-snapshot-000000.pt").exists():
                stop.set()
            time.sleep(0.02)

    watcher = threading.Thread(target=stop_when_the_first_snapshot_is_written, daemon=True)
    watcher.start()
    try:
        result = run_training(_options(data, run, gpus=2, kimg=0.012, batch=2,
                                       metrics_images=65), stop_event=stop)
    finally:
        stop.set()
    assert result.stopped and not result.finished
    assert not list(run.glob("metric-*.jsonl"))
