"""Build settings shared by setup.py (ahead of time) and the JIT loader: sources, archs, flags.

Imports nothing outside the standard library, so setup.py can load it by path without importing
the package (and torch) first.
"""
from __future__ import annotations

import hashlib
import os
import pathlib
import re
import shutil
import subprocess

CSRC = pathlib.Path(__file__).resolve().parent / "csrc"
# .cpp and .cu files have different stems: both would otherwise compile to <stem>.o.
SOURCES = ("module.cpp", "upfirdn2d.cpp", "upfirdn2d_kernel.cu", "bias_act.cpp", "bias_act_kernel.cu")
HEADERS = ("common.h", "upfirdn2d.h", "bias_act.h")

# The CPU extension (stylegan2_ops._cpu: Winograd 3x3 convs, fused bias + activation), no debug
# info (11 MB -> 0.25 MB). Its AVX-512 / AVX2 / baseline variants come from target attributes
# in the sources (csrc_cpu/isa.h), so no -march flag: one build runs on every x86-64 CPU.
CSRC_CPU = pathlib.Path(__file__).resolve().parent / "csrc_cpu"
CPU_SOURCES = ("module.cpp", "isa.cpp", "winograd.cpp", "bias_act.cpp")
# -fno-trapping-math: without it GCC keeps a floating-point select (leaky ReLU's
# x > 0 ? x : x * alpha) scalar wherever the ISA has no masked multiply (AVX2, baseline), lest
# the unused arm raise an FP exception flag; no value changes (results are tested bit for bit).
# -fopenmp: at::parallel_for spreads work over torch's threads only where the extension is
# compiled with OpenMP (else it runs the whole range on one thread); the link names libgomp.so.1,
# which resolves to the one torch has already loaded.
CPU_COMPILE_ARGS = ("-O3", "-g0", "-fno-trapping-math", "-fopenmp")
CPU_LINK_ARGS = ("-fopenmp",)

# GPUs SageMaker rents (arch: instance family), with the CUDA versions that can target them:
# (first release that compiles the arch, last major release that still supports it).
SAGEMAKER_ARCHS = (
    ("7.0", "V100 (ml.p3)", (9, 0), 12),
    ("7.5", "T4 (ml.g4dn)", (10, 0), None),
    ("8.0", "A100 (ml.p4d)", (11, 0), None),
    ("8.6", "A10G (ml.g5)", (11, 1), None),
    ("8.9", "L4 / L40S (ml.g6, ml.g6e)", (11, 8), None),
    ("9.0", "H100 (ml.p5)", (11, 8), None),
    ("10.0", "B200 (ml.p6)", (12, 8), None),
)
ARCH_PATTERN = re.compile(r"^\d+\.\d+[af]?(\+PTX)?$")


def default_arch_list(cuda_version: tuple[int, int]) -> str:
    """The SageMaker archs a CUDA release can compile, newest with PTX for future GPUs."""
    archs = [
        arch
        for arch, _, first, last_major in SAGEMAKER_ARCHS
        if cuda_version >= first and (last_major is None or cuda_version[0] <= last_major)
    ]
    if not archs:
        raise ValueError(f"CUDA {cuda_version[0]}.{cuda_version[1]} targets none of the SageMaker GPUs")
    archs[-1] += "+PTX"
    return ";".join(archs)


def parse_arch_list(archs: str) -> list[str]:
    """Splits TORCH_CUDA_ARCH_LIST ("8.0;9.0+PTX", spaces also allowed); rejects odd entries."""
    entries = [a for a in re.split(r"[;\s]+", archs.strip()) if a]
    bad = [a for a in entries if not ARCH_PATTERN.match(a)]
    if not entries or bad:
        raise ValueError(
            f"TORCH_CUDA_ARCH_LIST={archs!r}: expected entries like 8.0 or 9.0+PTX separated by ';'"
        )
    return entries


def arch_token(archs: str) -> str:
    """The arch list as one preprocessor token (7.5_8.0+PTX), safe in a compiler command line."""
    return "_".join(parse_arch_list(archs))


def decode_arch_token(token: str) -> str:
    return token.replace("_", ";")


def compile_args(archs: str) -> dict[str, list[str]]:
    """Extra compiler flags; torch adds the -gencode flags from TORCH_CUDA_ARCH_LIST itself."""
    return {
        "cxx": ["-O3", f"-DSG2_CUDA_ARCHS={arch_token(archs)}"],
        "nvcc": ["-O3"],
    }


def source_paths() -> list[str]:
    return [str(CSRC / name) for name in SOURCES]


def source_digest() -> str:
    """Hash of every source and header, to key JIT build caches."""
    digest = hashlib.sha256()
    for name in sorted(SOURCES + HEADERS):
        digest.update(name.encode())
        digest.update((CSRC / name).read_bytes())
    return digest.hexdigest()


def _has_runtime_headers(root: pathlib.Path) -> bool:
    return ((root / "include" / "cuda_runtime.h").is_file()
            or any(root.glob("targets/*/include/cuda_runtime.h")))


def _nvcc_top(nvcc: str) -> pathlib.Path | None:
    """The toolkit folder nvcc reports for itself (its dry run prints `#$ TOP=...`)."""
    try:
        out = subprocess.run([nvcc, "--dryrun", "-c", "-x", "cu", os.devnull, "-o", os.devnull],
                             capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"^#\$ TOP=(.+?)\s*$", out.stdout + "\n" + out.stderr, re.MULTILINE)
    return pathlib.Path(match.group(1)).resolve() if match else None


def toolkit_root(guess: str | None) -> str | None:
    """The CUDA toolkit folder to build with: CUDA_HOME (or CUDA_PATH) when set; else torch's
    guess when it holds the runtime headers; else the folder nvcc reports for itself.

    torch guesses the parent of the folder holding the `nvcc` on PATH; where that nvcc is a
    wrapper script (say /usr/local/bin/nvcc calling the real one), the guess has no headers and
    every C++ source fails on cuda_runtime.h.
    """
    for variable in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(variable):
            return os.environ[variable]
    if guess and _has_runtime_headers(pathlib.Path(guess)):
        return guess
    candidates = [pathlib.Path(guess) / "bin" / "nvcc"] if guess else []
    candidates += [pathlib.Path(found)] if (found := shutil.which("nvcc")) else []
    # (Usually the same file twice: each asked once.)
    for nvcc in dict.fromkeys(c.resolve() for c in candidates if c.is_file()):
        top = _nvcc_top(str(nvcc))
        if top is not None and _has_runtime_headers(top):
            return str(top)
    return guess


def adopt_toolkit_root(cpp_extension) -> str | None:
    """Points torch.utils.cpp_extension (passed in: this module imports no torch) at
    toolkit_root(its guess); torch reads CUDA_HOME from the module at every build step."""
    root = toolkit_root(cpp_extension.CUDA_HOME)
    cpp_extension.CUDA_HOME = root
    return root


def toolkit_version(cuda_home: str) -> tuple[int, int] | None:
    """(major, minor) of the nvcc under cuda_home, or None when it cannot be run."""
    nvcc = pathlib.Path(cuda_home) / "bin" / "nvcc"
    executable = str(nvcc) if nvcc.exists() else shutil.which("nvcc")
    if executable is None:
        return None
    try:
        out = subprocess.run([executable, "--version"], capture_output=True, text=True,
                             timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"release (\d+)\.(\d+)", out)
    return (int(match.group(1)), int(match.group(2))) if match else None
