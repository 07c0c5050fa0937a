"""What training tells the user: one flushed status line per tick, stats.jsonl, TensorBoard
event files (the same statistics, next to stats.jsonl), image grids.

The status line uses stable `name=value` fields so that a metric regex (CloudWatch) can read
it, e.g. `kimg=([0-9.]+)` or `loss_G=([-0-9.e]+)`.
"""
from __future__ import annotations

import json
import logging
import math
import resource
import time
from pathlib import Path

import numpy as np
import torch

from sg2_container.io.images import to_uint8, write_grid

log = logging.getLogger("sg2_container.training")

# Status-line field -> stats name.
LINE_FIELDS = {
    "loss_G": "Loss/G/loss",
    "loss_D": "Loss/D/loss",
    "r1": "Loss/r1_penalty",
    "pl": "Loss/pl_penalty",
    "score_real": "Loss/scores/real",
    "score_fake": "Loss/scores/fake",
}


class TickStats:
    """Running sum / sum of squares / count per statistic, reset each tick.

    Sums stay on the tensors' device until read, so recording a statistic never waits for
    the GPU; only a tick boundary or a checkpoint does.
    """

    def __init__(self):
        self.values: dict[str, list] = {}

    def add(self, name: str, value: torch.Tensor | float) -> None:
        value = torch.as_tensor(value).detach().flatten().to(torch.float64)
        entry = self.values.setdefault(name, [0.0, 0.0, 0])
        entry[0] = entry[0] + value.sum()
        entry[1] = entry[1] + value.square().sum()
        entry[2] += value.numel()

    def means(self) -> dict[str, dict[str, float]]:
        result = {}
        for name, (total, total_sq, count) in self.state().items():
            mean = total / max(count, 1)
            var = max(total_sq / max(count, 1) - mean * mean, 0.0)
            result[name] = {"num": count, "mean": mean, "std": math.sqrt(var)}
        return result

    def state(self) -> dict[str, list[float]]:
        return {k: [float(v[0]), float(v[1]), int(v[2])] for k, v in self.values.items()}

    def merge(self, state: dict[str, list[float]]) -> None:
        for name, (total, total_sq, count) in state.items():
            entry = self.values.setdefault(name, [0.0, 0.0, 0])
            entry[0] = entry[0] + total
            entry[1] = entry[1] + total_sq
            entry[2] += int(count)


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h {(seconds // 60) % 60:02d}m {seconds % 60:02d}s"
    return f"{seconds // 86400}d {(seconds // 3600) % 24:02d}h {(seconds // 60) % 60:02d}m"


def cpu_memory_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def status_line(*, tick: int, cur_nimg: int, total_kimg: float, total_sec: float, tick_sec: float,
                tick_nimg: int, maintenance_sec: float, augment_p: float, means: dict,
                gpu_mem_gib: float) -> str:
    """One line with name=value fields; ETA from this tick's speed."""
    kimg = cur_nimg / 1000
    sec_per_kimg = tick_sec / max(tick_nimg / 1000, 1e-8)
    remaining = max(total_kimg - kimg, 0) * sec_per_kimg
    fields = [
        f"tick={tick}", f"kimg={kimg:.3f}", f"time={format_duration(total_sec).replace(' ', '')}",
        f"sec_per_tick={tick_sec:.1f}", f"sec_per_kimg={sec_per_kimg:.2f}",
        f"maintenance={maintenance_sec:.1f}", f"cpumem={cpu_memory_gib():.2f}",
        f"gpumem={gpu_mem_gib:.2f}", f"augment={augment_p:.3f}",
    ]
    for field, name in LINE_FIELDS.items():
        if name in means:
            fields.append(f"{field}={means[name]['mean']:.4f}")
    fields.append(f"eta={format_duration(remaining).replace(' ', '')}")
    return " ".join(fields)


class Reporter:
    """Writes stats.jsonl and grids in the run folder (rank 0 only) and logs tick lines."""

    def __init__(self, run_dir: Path, enabled: bool):
        self.run_dir, self.enabled = run_dir, enabled
        self.start_time = time.time()
        self.tensorboard = None
        self._summary_writer = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as error:  # a dependency of the package: only a broken install
                log.warning("no TensorBoard event files for this run: %s (pip install "
                            "tensorboard)", error)
            else:
                # Opened at the first tick: a run with nothing left to train adds no file.
                self._summary_writer = SummaryWriter

    def tick(self, line: str, stats: dict, extra: dict) -> None:
        if not self.enabled:
            return
        log.info(line)
        record = dict(stats)
        for name, value in extra.items():
            record[name] = {"num": 1, "mean": value, "std": 0.0}
        record["timestamp"] = time.time()
        with open(self.run_dir / "stats.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
        if self.tensorboard is None and self._summary_writer is not None:
            self.tensorboard = self._summary_writer(str(self.run_dir))  # next to stats.jsonl
        if self.tensorboard is not None:
            step = int(extra.get("Progress/kimg", 0) * 1000)
            for name, value in record.items():
                if isinstance(value, dict):
                    self.tensorboard.add_scalar(name, value["mean"], global_step=step)
            self.tensorboard.flush()

    def metric(self, name: str, record: dict) -> None:
        """One evaluation: appended to metric-<name>.jsonl, TensorBoard `Metrics/<key>` at the
        snapshot's kimg, and a `metric key=value` log line."""
        if not self.enabled:
            return
        from sg2_container.options.metric_specs import result_line

        record = dict(record, timestamp=time.time(),
                      total_time_str=format_duration(record.get("total_time", 0)))
        with open(self.run_dir / f"metric-{name}.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
        if self.tensorboard is not None:
            step = int(round(record.get("kimg", 0) * 1000))
            for key, value in record["results"].items():
                self.tensorboard.add_scalar(f"Metrics/{key}", value, global_step=step)
            self.tensorboard.flush()
        log.info(result_line(record["results"], snapshot=record.get("snapshot_pkl", "")))

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()

    def save_grid(self, images: np.ndarray | torch.Tensor, columns: int, name: str) -> Path | None:
        if not self.enabled:
            return None
        arrays = to_uint8(images) if isinstance(images, torch.Tensor) else images
        return write_grid(arrays, self.run_dir / name, columns)


def grid_shape(resolution: int) -> tuple[int, int]:
    """(columns, rows) of the snapshot grids: wide like the reference's, but at most 10 x 6
    images, since every snapshot renders the grid (seconds on a CPU even for small networks)."""
    columns = int(np.clip(7680 // resolution, 4, 10))
    rows = int(np.clip(4320 // resolution, 3, 6))
    return columns, rows
