"""Which implementation the user asked for ($SG2_OPS or an impl= argument): read in one place by
the CUDA dispatch (_backend) and the CPU Winograd path (winograd), which sit on different floors."""
from __future__ import annotations

import os

IMPLS = ("auto", "reference", "cuda")
ENV_VAR = "SG2_OPS"


def requested_impl(impl: str | None = None) -> str:
    """The implementation asked for by argument, else by $SG2_OPS, else 'auto'."""
    choice = impl if impl is not None else os.environ.get(ENV_VAR, "auto") or "auto"
    if choice not in IMPLS:
        source = "impl argument" if impl is not None else f"${ENV_VAR}"
        raise ValueError(f"{source}={choice!r} is not one of {', '.join(IMPLS)}")
    return choice
