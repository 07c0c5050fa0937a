"""The CUDA extension compiles (no GPU needed): setup.py's build into a temporary folder.

Marked `slow` (about a minute on 2 cores): run with `pytest -m slow tests/ops/test_cuda_build.py`.
"""
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest
import torch

from stylegan2_ops import _build

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _skip_reason() -> str | None:
    from torch.utils import cpp_extension

    if not torch.version.cuda:
        return f"torch {torch.__version__} is a CPU-only build: it cannot build CUDA extensions"
    if _build.toolkit_root(cpp_extension.CUDA_HOME) is None:
        return "no CUDA toolkit found (install nvcc and set CUDA_HOME)"
    return None


@pytest.mark.slow
def test_setup_py_builds_the_extension(tmp_path):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    env = dict(os.environ, SG2_BUILD_CUDA="1", TORCH_CUDA_ARCH_LIST="8.0",
               MAX_JOBS=os.environ.get("MAX_JOBS", "2"))
    build = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--build-lib", str(tmp_path / "lib"),
         "--build-temp", str(tmp_path / "temp")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200, check=False,
    )
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    (library,) = (tmp_path / "lib" / "stylegan2_ops").glob("_C*.so")

    # Load it in a fresh process: the module imports and registers the CUDA implementations.
    check = textwrap.dedent(f"""
        import importlib.util, torch
        import stylegan2_ops._kernels
        spec = importlib.util.spec_from_file_location("stylegan2_ops._C", {str(library)!r})
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for op in ("upfirdn2d", "bias_act", "bias_act_grad"):
            assert torch._C._dispatch_has_kernel_for_dispatch_key("stylegan2_ops::" + op, "CUDA")
        print(module.cuda_archs, module.torch_version, module.cuda_version)
    """)
    loaded = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, check=False)
    assert loaded.returncode == 0, loaded.stderr[-4000:]
    archs, torch_version, cuda_version = loaded.stdout.split()
    assert archs == "8.0" and torch_version == torch.__version__.split("+")[0]
    assert int(cuda_version) // 1000 == int(torch.version.cuda.split(".")[0])
