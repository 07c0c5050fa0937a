"""Freed memory kept for reuse instead of handed back to the OS (glibc's malloc)."""
from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger(__name__)

ENV_SWITCH = "SG2_KEEP_FREED_MEMORY"
KEEP_BYTES = 1 << 30
# glibc's mallopt parameter numbers (malloc.h). (A larger M_TOP_PAD as well cost the endpoint a
# third of its single-client throughput: bench/serve.py.)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory(keep_bytes: int = KEEP_BYTES) -> bool:
    """Serve blocks up to `keep_bytes` from the heap and keep freed ones there.

    Each layer of the networks frees and allocates activations of tens of MB. By default glibc
    maps such blocks fresh from the OS and unmaps them when freed, so every new tensor arrives
    as untouched pages and pays their page faults (a G+D training step on a CPU: 3-6 % of our
    step, 6-21 % of the reference computation's; docs/benchmarks.md). The price: the process
    keeps what it has used at its peak instead of returning it. SG2_KEEP_FREED_MEMORY=0 leaves
    malloc as it is; without glibc this does nothing. Returns whether the setting took.
    """
    if os.environ.get(ENV_SWITCH, "1").strip() == "0":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    took = all(mallopt(option, keep_bytes) == 1
               for option in (_M_MMAP_THRESHOLD, _M_TRIM_THRESHOLD))
    log.debug("malloc keeps freed blocks up to %d bytes: %s", keep_bytes, took)
    return took
