"""Tensors derived from a layer's weight (its Winograd transform, its squared tap sums, a copy in
another memory order), kept between inference calls and remade when the weight changes."""
from __future__ import annotations

import weakref
from typing import Callable

import torch


class WeightCache:
    """Derived tensors of one weight, by name; all dropped when the weight changes.

    Kept by the layer that owns the weight (not in a global table), and used only where autograd
    records nothing (the values are detached). The key is the weight tensor itself (a temporary
    made per call never matches, even at a reused address) with its storage, shape and version
    counter. Every in-place op through torch bumps the version: torch's default optimizers,
    the training loop's EMA (`lerp_`), load_state_dict and checkpoint resumes. Writes that go
    around the version counter leave the values stale: through `.data`, through a `.numpy()`
    view, or by a fused optimizer kernel (`Adam(fused=True)`); after such a write, make a new
    cache. Weights made under inference_mode have no version counter: nothing is kept for them.
    The values stay alive until the next call after the weight changed.
    """

    def __init__(self):
        self._weight = None  # weak reference: the cache must not keep a replaced weight alive
        self._key = None
        self._values: dict[str, torch.Tensor] = {}

    def get(self, weight: torch.Tensor, name: str,
            compute: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        if weight.is_inference():  # made under inference_mode: no version counter to watch
            with torch.no_grad():
                return compute(weight.detach())
        key = (weight.data_ptr(), tuple(weight.shape), tuple(weight.stride()), weight.dtype,
               weight.device, weight._version)
        if key != self._key or self._weight is None or self._weight() is not weight:
            # The new key last: another thread that sees it also sees the new, empty values.
            self._values = {}
            self._weight = weakref.ref(weight)
            self._key = key
        values = self._values
        value = values.get(name)
        if value is None:
            with torch.no_grad():
                value = values[name] = compute(weight.detach())
        return value

    def __len__(self) -> int:
        return len(self._values)

    def __getstate__(self):  # copies and pickles start empty: the values are derived data
        return {"_weight": None, "_key": None, "_values": {}}
