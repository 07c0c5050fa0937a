"""Chooses, once per process, which implementation the ops run on.

The compiled CUDA kernels (a later addition) plug in here; until they are found, every op runs
on its pure-PyTorch reference path, which is always correct. The choice is logged once.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import logging
import os

import torch

logger = logging.getLogger(__name__)

IMPLS = ("auto", "reference", "cuda")
ENV_VAR = "SG2_OPS"


@dataclasses.dataclass(frozen=True)
class KernelStatus:
    """Whether the compiled kernels are usable, and why (or why not)."""

    available: bool
    reason: str
    module: object | None = None


@functools.cache
def kernel_status() -> KernelStatus:
    """Looks for the prebuilt extension once; never raises."""
    if not torch.cuda.is_available():
        status = KernelStatus(False, "no CUDA device visible to PyTorch")
    else:
        try:
            module = importlib.import_module("stylegan2_ops._C")
        except ImportError as error:
            status = KernelStatus(
                False, f"no prebuilt CUDA extension ({error}); build with SG2_BUILD_CUDA=1"
            )
        else:
            status = KernelStatus(True, "prebuilt CUDA extension loaded", module)
    if status.available:
        logger.info("CUDA kernels active (%s)", status.reason)
    else:
        logger.info("reference PyTorch path active (%s)", status.reason)
    return status


def requested_impl(impl: str | None = None) -> str:
    """The implementation asked for by argument, else by $SG2_OPS, else 'auto'."""
    choice = impl if impl is not None else os.environ.get(ENV_VAR, "auto") or "auto"
    if choice not in IMPLS:
        source = "impl argument" if impl is not None else f"${ENV_VAR}"
        raise ValueError(f"{source}={choice!r} is not one of {', '.join(IMPLS)}")
    return choice


def resolve(x: torch.Tensor, impl: str | None = None) -> str:
    """Returns 'cuda' or 'reference' for an op on tensor `x`.

    'cuda' forced on a CPU tensor or without kernels is an error, not a silent fallback.
    """
    choice = requested_impl(impl)
    status = kernel_status()  # first call logs which path is active, once per process
    if choice == "reference":
        return "reference"
    if choice == "cuda":
        if x.device.type != "cuda":
            raise RuntimeError(f"impl 'cuda' was forced but the tensor is on {x.device}")
        if not status.available:
            raise RuntimeError(f"impl 'cuda' was forced but the kernels are unusable: {status.reason}")
        return "cuda"
    if x.device.type == "cuda" and status.available:
        return "cuda"
    return "reference"


def describe() -> dict[str, str]:
    """What `sg2 info` shows about the ops."""
    status = kernel_status()
    choice = requested_impl()
    if choice == "reference":
        active = "reference (forced by $SG2_OPS)"
    elif status.available:
        active = "cuda on CUDA tensors, reference on CPU tensors"
    else:
        active = "reference"
    return {"requested": choice, "active": active, "kernels": status.reason}
