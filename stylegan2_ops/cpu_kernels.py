"""The compiled CPU kernels (`stylegan2_ops._cpu`): whether they load, and with which vector
instructions they run.

Built at install where a C++ compiler exists (setup.py; sources in csrc_cpu/). Two paths use
them: Winograd 3x3 convs (stylegan2_ops.winograd) and bias + activation in one pass
(stylegan2_ops.bias_act). Without the build, or with SG2_OPS=reference, both stay off and
PyTorch's own ops run. The instruction set (AVX-512, AVX2 + FMA or the x86-64 baseline) is the
best the CPU reports; SG2_CPU_ISA=baseline|avx2|avx512 can lower it (to compare variants).
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import logging
import os

from stylegan2_ops import _choice

logger = logging.getLogger(__name__)

MODULE = "stylegan2_ops._cpu"
ISA_ENV_VAR = "SG2_CPU_ISA"
ISAS = ("baseline", "avx2", "avx512")


@dataclasses.dataclass(frozen=True)
class CpuKernelStatus:
    available: bool
    reason: str
    module: object | None = None
    isa: str | None = None  # the instruction set the kernels run with, when available


def import_module():
    """Imports the compiled kernels (a seam the tests replace)."""
    return importlib.import_module(MODULE)


@functools.cache
def status() -> CpuKernelStatus:
    """Looks for the compiled kernels once per process and logs what it found."""
    if _choice.requested_impl() == "reference":
        result = CpuKernelStatus(False, f"off: {_choice.ENV_VAR}=reference")
    else:
        try:
            module = import_module()
        except ModuleNotFoundError as error:
            reason = ("not built (at install: no C++ compiler, torch not importable under build "
                      "isolation, a compile error, or SG2_BUILD_CPU=0)"
                      if error.name == MODULE else f"failed to import ({error})")
            result = CpuKernelStatus(False, reason)
        except Exception as error:  # noqa: BLE001  (ABI errors: fall back to PyTorch's ops)
            result = CpuKernelStatus(False, f"failed to import ({type(error).__name__}: {error})")
        else:
            isa = module.isa()
            reason = f"{MODULE} ({_describe_isa(isa, module.supported_isa())})"
            if not module.winograd_blocked_available():
                reason += ("; Winograd convs without the in-cache form: this torch exports no "
                           "MKL sgemm_")
            result = CpuKernelStatus(True, reason, module, isa)
    logger.debug("CPU kernels: %s", result.reason)
    return result


def _describe_isa(active: str, supported: str) -> str:
    requested = os.environ.get(ISA_ENV_VAR, "")  # read as the kernels read it: exactly
    if requested and requested not in ISAS:
        note = f"${ISA_ENV_VAR}={requested!r} ignored: not one of {', '.join(ISAS)}"
        logger.warning(note)
        return f"{active}; {note}"
    if active == supported:
        return active
    return f"{active}, lowered by ${ISA_ENV_VAR} from the CPU's {supported}"
