"""Whether autograd records: the one test behind every "in place or not" and "custom gradient
or plain op" choice of the ops and the networks."""
from __future__ import annotations

import torch


def records_graph(*tensors: torch.Tensor | None) -> bool:
    """Whether autograd would record an op on these tensors (None entries are ignored)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
