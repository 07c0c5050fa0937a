"""Random state: per-chunk seeds derived from progress, and full snapshots for checkpoints."""
from __future__ import annotations

import random

import numpy as np
import torch


def chunk_seed(seed: int, batch_idx: int, phase_idx: int, chunk: int) -> int:
    """Seed for the per-sample randomness (noise, augmentation, mixing) of one chunk.

    Derived from progress alone, so a resumed run and a run with another process count draw
    the same numbers for the same chunk of the global batch.
    """
    return int(np.random.SeedSequence([seed, batch_idx, phase_idx, chunk]).generate_state(1, np.uint64)[0])


def capture_rng(device: torch.device) -> dict:
    """torch (CPU and this process's GPU), numpy and Python states as weights_only-safe data."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": py_state[0], "state": list(py_state[1]),
                   "gauss_next": py_state[2]},
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["key"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
