"""Data order as a pure function of (seed, position): resumable and world-size independent.

Global position k of the endless stream maps to dataset index perm_e[k mod n] with
e = k div n and perm_e a permutation seeded by (seed, e). Step s uses positions
[s * batch, (s + 1) * batch); rank r takes its contiguous share of them.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch.utils.data


def epoch_permutation(seed: int, epoch: int, length: int) -> np.ndarray:
    return np.random.RandomState([seed, epoch]).permutation(length)


class StepSampler(torch.utils.data.Sampler):
    """Endless indices for one rank, starting at optimisation step `start_step`."""

    def __init__(self, length: int, seed: int, batch_size: int, rank: int, num_ranks: int,
                 start_step: int = 0):
        if length < 1:
            raise ValueError("cannot sample from an empty dataset")
        self.length, self.seed, self.batch_size = length, seed, batch_size
        self.rank, self.num_ranks, self.start_step = rank, num_ranks, start_step
        self.per_rank = batch_size // num_ranks

    def __iter__(self) -> Iterator[int]:
        cache: dict[int, np.ndarray] = {}
        step = self.start_step
        while True:
            first = step * self.batch_size + self.rank * self.per_rank
            for position in range(first, first + self.per_rank):
                epoch, offset = divmod(position, self.length)
                if epoch not in cache:
                    cache.clear()
                    cache[epoch] = epoch_permutation(self.seed, epoch, self.length)
                yield int(cache[epoch][offset])
            step += 1
