"""Optional just-in-time build of the CUDA kernels (SG2_JIT_BUILD=1), for images built without.

The build goes to a cache directory keyed by a hash of the sources, the torch and CUDA versions,
the Python ABI and the arch list, under an exclusive file lock: with 8 ranks starting at once, one
compiles and the others wait, then load the finished build (a cached load takes milliseconds).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import pathlib
import sys
import time

from stylegan2_ops import _build

logger = logging.getLogger(__name__)

CACHE_ENV_VAR = "SG2_KERNEL_CACHE"


class JitBuildError(RuntimeError):
    """The JIT build could not run or failed; the message says why in one line."""


def cache_root() -> pathlib.Path:
    """$SG2_KERNEL_CACHE, else $XDG_CACHE_HOME/sg2-container/kernels, else ~/.cache/..."""
    if os.environ.get(CACHE_ENV_VAR):
        return pathlib.Path(os.environ[CACHE_ENV_VAR])
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "sg2-container" / "kernels"


def arch_list() -> str:
    """$TORCH_CUDA_ARCH_LIST, else the current GPU's arch (what this machine needs)."""
    env = os.environ.get("TORCH_CUDA_ARCH_LIST", "").strip()
    if env:
        return env
    import torch

    major, minor = torch.cuda.get_device_capability()
    return f"{major}.{minor}"


def cache_key(archs: str) -> str:
    import torch

    digest = hashlib.sha256()
    for part in (_build.source_digest(), torch.__version__, str(torch.version.cuda),
                 sys.implementation.cache_tag, archs):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def exclusive_lock(path: pathlib.Path):
    """Blocks until this process holds an flock on `path`; the kernel drops it if we die."""
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build(archs: str | None = None):
    """Builds (or loads the cached build of) the extension module; raises JitBuildError."""
    archs = archs or arch_list()
    try:
        _build.parse_arch_list(archs)
    except ValueError as error:
        raise JitBuildError(str(error)) from None
    key = cache_key(archs)
    directory = cache_root() / f"stylegan2_ops_{key}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise JitBuildError(f"cannot create the kernel cache {directory}: {error}") from None
    name = f"stylegan2_ops_jit_{key}"
    with exclusive_lock(directory / "sg2-build.lock"):
        return _compile(name, directory, archs)


def _compile(name: str, directory: pathlib.Path, archs: str):
    """torch.utils.cpp_extension.load into `directory` (a no-op rebuild when it is up to date).

    The caller holds the directory's lock, so a torch "lock" baton left there by a killed
    process is stale and removed (torch would otherwise wait on it forever).
    """
    from torch.utils import cpp_extension

    if _build.adopt_toolkit_root(cpp_extension) is None:
        raise JitBuildError("no CUDA toolkit found (set CUDA_HOME to the folder holding bin/nvcc)")
    (directory / "lock").unlink(missing_ok=True)
    args = _build.compile_args(archs)
    previous = os.environ.get("TORCH_CUDA_ARCH_LIST")
    os.environ["TORCH_CUDA_ARCH_LIST"] = archs  # read by torch while it writes the build file
    start = time.monotonic()
    logger.debug("JIT: building or loading %s in %s for archs %s", name, directory, archs)
    try:
        module = cpp_extension.load(
            name, _build.source_paths(), extra_cflags=args["cxx"], extra_cuda_cflags=args["nvcc"],
            build_directory=str(directory), verbose=False, is_python_module=True,
        )
    except Exception as error:  # compiler errors arrive as RuntimeError with the whole log
        log_path = directory / "build-error.log"
        log_path.write_text(f"{type(error).__name__}: {error}\n", encoding="utf-8")
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise JitBuildError(
            f"{type(error).__name__}: {first_line[:200]} (compiler output in {log_path})"
        ) from error
    finally:
        if previous is None:
            os.environ.pop("TORCH_CUDA_ARCH_LIST", None)
        else:
            os.environ["TORCH_CUDA_ARCH_LIST"] = previous
    logger.debug("JIT: %s ready after %.1f s", name, time.monotonic() - start)
    return module
