"""`sg2 train` writes TensorBoard event files next to stats.jsonl, readable by TensorBoard."""
import json
import os
import subprocess
import sys

import pytest

from sg2_container.data.synthetic import write_synthetic_dataset


def test_a_tiny_train_run_writes_tfevents_with_the_tick_statistics(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = write_synthetic_dataset(tmp_path / "d.zip", count=8, resolution=16)
    run = tmp_path / "run"
    command = [sys.executable, "-m", "sg2_container.cli.main", "train", "--data", str(data),
               "--outdir", str(run), "--kimg", "0.016", "--kimg-per-tick", "0.008", "--snap", "1000",
               "--batch", "4", "--cbase", "128", "--cmax", "16", "--map", "2", "--workers", "0",
               "--device", "cpu"]
    done = subprocess.run(command, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    (events,) = run.glob("events.out.tfevents.*")
    ticks = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    tags = accumulator.Tags()["scalars"]
    assert "Loss/G/loss" in tags and "Progress/kimg" in tags
    kimg = [event.value for event in accumulator.Scalars("Progress/kimg")]
    assert kimg == pytest.approx([tick["Progress/kimg"]["mean"] for tick in ticks])
    assert kimg[-1] > 0
