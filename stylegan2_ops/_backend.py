"""Chooses, once per process, which implementation the ops run on.

Loader order: the extension built ahead of time (`stylegan2_ops._C`, SG2_BUILD_CUDA=1 at install)
-> a JIT build when SG2_JIT_BUILD=1 (stylegan2_ops._jit) -> the pure-PyTorch reference path,
which is always correct. A failed load never raises: exactly one log line per process says which
path was chosen and why. `SG2_OPS` or an `impl=` argument forces a path.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import logging
import os

import torch

from stylegan2_ops._choice import ENV_VAR, requested_impl

logger = logging.getLogger(__name__)

JIT_ENV_VAR = "SG2_JIT_BUILD"
PREBUILT_MODULE = "stylegan2_ops._C"


@dataclasses.dataclass(frozen=True)
class KernelStatus:
    """Whether the compiled kernels are usable, and why (or why not)."""

    available: bool
    reason: str
    module: object | None = None
    source: str = "reference"  # 'prebuilt', 'jit' or 'reference'
    archs: str | None = None  # TORCH_CUDA_ARCH_LIST the kernels were compiled for


def import_prebuilt():
    """Imports the extension built ahead of time (a seam the loader tests replace)."""
    return importlib.import_module(PREBUILT_MODULE)


def jit_build():
    """Compiles or loads the cached JIT build (a seam the loader tests replace)."""
    from stylegan2_ops import _jit

    return _jit.build()


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0][:300] if text else ''}".rstrip(": ")


def _device_arch() -> str:
    try:
        major, minor = torch.cuda.get_device_capability()
    except Exception:  # noqa: BLE001  (only for the message; the probe itself decides)
        return "this GPU"
    return f"sm_{major}{minor}"


def _module_archs(module) -> str | None:
    from stylegan2_ops._build import decode_arch_token

    token = getattr(module, "cuda_archs", None)
    return decode_arch_token(token) if token and token != "unknown" else None


def _module_facts(module) -> str:
    """'archs 8.0;9.0, CUDA 13.0, torch 2.14.1' as far as the module says."""
    facts = []
    archs = _module_archs(module)
    if archs:
        facts.append(f"archs {archs}")
    cuda_version = getattr(module, "cuda_version", None)
    if isinstance(cuda_version, int) and cuda_version > 0:
        facts.append(f"CUDA {cuda_version // 1000}.{cuda_version % 1000 // 10}")
    if getattr(module, "torch_version", None):
        facts.append(f"torch {module.torch_version}")
    return ", ".join(facts) or "no build facts"


def _unusable(module) -> str | None:
    """Why a loaded extension cannot run here, or None when it can."""
    built_for = getattr(module, "torch_version", None)
    running = torch.__version__.split("+")[0]
    if built_for and built_for != running:
        return f"built for torch {built_for}, running torch {running}"
    try:
        module.probe()
    except Exception as error:  # noqa: BLE001  (any probe failure means: do not use it)
        return (f"kernels cannot run on {_device_arch()} ({_one_line(error)}; "
                f"built for {_module_facts(module)})")
    try:
        mismatch = self_check()
    except Exception as error:  # noqa: BLE001  (a crashing check means: do not use them)
        return f"kernel self-check crashed on {_device_arch()} ({_one_line(error)})"
    if mismatch is not None:
        return f"kernel self-check failed on {_device_arch()}: {mismatch}"
    return None


def self_check() -> str | None:
    """Kernels vs the reference path on the current GPU (a seam the loader tests replace)."""
    from stylegan2_ops._selfcheck import kernel_mismatch

    return kernel_mismatch(torch.device("cuda"))


def _find_kernels() -> KernelStatus:
    """Prebuilt, then JIT if asked, then reference; collects why each step was passed over."""
    if not torch.cuda.is_available():
        return KernelStatus(False, "no CUDA device visible to PyTorch")
    from stylegan2_ops import _kernels  # noqa: F401  (defines the ops the extension implements)

    skipped = []
    try:
        module = import_prebuilt()
    except ModuleNotFoundError as error:
        if error.name != PREBUILT_MODULE:
            skipped.append(f"prebuilt extension failed to import ({_one_line(error)})")
        else:
            skipped.append("no prebuilt extension (install with SG2_BUILD_CUDA=1)")
    except Exception as error:  # noqa: BLE001  (undefined symbols, ABI or registration errors)
        skipped.append(f"prebuilt extension failed to import ({_one_line(error)})")
    else:
        problem = _unusable(module)
        if problem is None:
            return KernelStatus(True, f"prebuilt extension {PREBUILT_MODULE} ({_module_facts(module)})",
                                module, "prebuilt", _module_archs(module))
        skipped.append(f"prebuilt extension unusable: {problem}")

    if os.environ.get(JIT_ENV_VAR, "0") != "1":
        skipped.append(f"JIT build off (set {JIT_ENV_VAR}=1 to compile at start-up)")
        return KernelStatus(False, "; ".join(skipped))
    try:
        module = jit_build()
    except Exception as error:  # noqa: BLE001  (a failed build falls back, with its reason)
        skipped.append(f"JIT build failed ({_one_line(error)})")
        return KernelStatus(False, "; ".join(skipped))
    problem = _unusable(module)
    if problem is not None:
        skipped.append(f"JIT-built extension unusable: {problem}")
        return KernelStatus(False, "; ".join(skipped))
    reason = f"JIT-built extension ({_module_facts(module)}); {'; '.join(skipped)}"
    return KernelStatus(True, reason, module, "jit", _module_archs(module))


@functools.cache
def kernel_status() -> KernelStatus:
    """Finds the kernels once per process and logs the one line saying which path and why."""
    status = _find_kernels()
    if status.available:
        logger.info("CUDA kernels active: %s", status.reason)
    elif torch.cuda.is_available():
        logger.warning("reference PyTorch path active on a CUDA machine (slower): %s", status.reason)
    else:
        logger.info("reference PyTorch path active (%s)", status.reason)
    return status


def kernels_usable() -> bool:
    """kernel_status().available as a constant to torch.compile, which would otherwise trace
    the loader (imports, logging, the self-check) and fail with fullgraph=True."""
    return kernel_status().available


# What torch.compiler.assume_constant_result(kernels_usable) does, without importing
# torch._dynamo (2-3 s) in every process that loads the ops and never compiles; that the marker
# still works is tested (tests/ops/test_cuda_kernels.py: test_public_ops_trace_with_fullgraph).
kernels_usable._dynamo_marked_constant = True


def resolve(x: torch.Tensor, impl: str | None = None) -> str:
    """Returns 'cuda' or 'reference' for an op on tensor `x`.

    'cuda' forced on a CPU tensor or without kernels is an error, not a silent fallback.
    """
    choice = requested_impl(impl)
    usable = kernels_usable()  # first call logs which path is active, once per process
    if choice == "reference":
        return "reference"
    if choice == "cuda":
        if x.device.type != "cuda":
            raise RuntimeError(f"impl 'cuda' was forced but the tensor is on {x.device}")
        if not usable:
            raise RuntimeError("impl 'cuda' was forced but the kernels are unusable: "
                               f"{kernel_status().reason}")
        return "cuda"
    if x.device.type == "cuda" and usable:
        return "cuda"
    return "reference"


def request_problem(device: torch.device) -> str | None:
    """Why the path asked for cannot run work on `device`, or None. The ops read the request at
    their first call, deep inside a forward pass: callers check it before any work starts."""
    try:
        choice = requested_impl()
    except ValueError as error:
        return str(error)
    if choice != "cuda":
        return None
    if device.type != "cuda":
        return f"${ENV_VAR}=cuda forces the CUDA kernels, but the work runs on {device}"
    status = kernel_status()
    if not status.available:
        return f"${ENV_VAR}=cuda forces the CUDA kernels, but they are unusable: {status.reason}"
    return None


def describe() -> dict[str, str]:
    """What `sg2 info` shows about the ops: the request, the active path, the kernels' state."""
    status = kernel_status()
    try:
        choice = requested_impl()
    except ValueError as error:  # shown, not raised: info is where one looks to find out why
        choice, active = f"invalid: {error}", "none: every op call fails until it is fixed"
    else:
        if choice == "reference":
            active = "reference (forced by $SG2_OPS)"
        elif choice == "cuda" and not status.available:  # what every command refuses with
            active = (f"none: {request_problem(torch.device('cuda'))}; every command refuses "
                      f"to run until ${ENV_VAR} is unset or set to auto or reference")
        elif choice == "cuda":
            active = f"cuda on CUDA tensors; work on the CPU is refused (forced by ${ENV_VAR})"
        elif status.available:
            active = "cuda on CUDA tensors, reference on CPU tensors"
        else:
            active = "reference"
    return {
        "requested": choice,
        "active": active,
        "kernels": status.reason,
        "kernels source": status.source,
        "kernels archs": status.archs or "n/a",
    }
