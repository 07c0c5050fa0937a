"""Whether autograd records: the one test behind every "in place or not" and "custom gradient
or plain op" choice of the ops and the networks; and whether a compiled CPU kernel may take
tensors PyTorch's other mechanisms (forward-mode AD, tracing, functorch) would need to see."""
from __future__ import annotations

import torch
from torch.autograd import forward_ad


def records_graph(*tensors: torch.Tensor | None) -> bool:
    """Whether autograd would record an op on these tensors (None entries are ignored)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def kernel_may_take(*tensors: torch.Tensor | None) -> bool:
    """Whether a compiled CPU kernel may read these tensors' memory and write its result where
    PyTorch does not watch: nothing for autograd to record (reverse or forward mode), no
    tracing, no functorch transform (vmap, grad) and no tensor subclass; otherwise PyTorch's
    own ops must run so that those mechanisms see them. (None entries are ignored.)"""
    present = [t for t in tensors if t is not None]
    if records_graph(*present) or torch.jit.is_tracing():
        return False
    if forward_ad._current_level >= 0:  # inside a dual level: any tensor may carry a tangent
        return False
    functorch = torch._C._functorch
    if functorch.peek_interpreter_stack() is not None:
        return False
    return all(type(t) in (torch.Tensor, torch.nn.Parameter)
               and not functorch.is_functorch_wrapped_tensor(t) for t in present)
