"""The kernel loader: prebuilt -> JIT (if asked) -> reference, one log line, never a crash.

Each failure is simulated through the loader's seams (`_backend.import_prebuilt`,
`_backend.jit_build`, `_jit._compile`, torch's `cpp_extension.load`), with a CUDA device faked by
patching `torch.cuda.is_available`. CPU only.
"""
import logging
import os
import pathlib
import subprocess
import sys
import textwrap
import types

import pytest
import torch

from stylegan2_ops import _backend, _build, _jit

RUNNING_TORCH = torch.__version__.split("+")[0]


def fake_module(probe_error=None, torch_version=RUNNING_TORCH):
    """Stands in for a loaded extension: build facts and a probe."""

    def probe():
        if probe_error is not None:
            raise RuntimeError(probe_error)
        return 80

    return types.SimpleNamespace(cuda_archs="8.0_9.0+PTX", torch_version=torch_version,
                                 cuda_version=13000, probe=probe)


def missing_prebuilt():
    raise ModuleNotFoundError("No module named 'stylegan2_ops._C'", name="stylegan2_ops._C")


@pytest.fixture
def loader(monkeypatch, caplog, tmp_path):
    """A fresh loader on a machine that claims a GPU; returns a function giving (status, lines)."""
    for var in ("SG2_OPS", "SG2_JIT_BUILD", "TORCH_CUDA_ARCH_LIST"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SG2_KERNEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(_backend, "import_prebuilt", missing_prebuilt)
    monkeypatch.setattr(_backend, "self_check", lambda: None)  # no GPU here to compare on
    caplog.set_level(logging.DEBUG, logger="stylegan2_ops")
    _backend.kernel_status.cache_clear()

    def load():
        status = _backend.kernel_status()
        assert _backend.kernel_status() is status  # cached: found once per process
        lines = [r for r in caplog.records
                 if r.name.startswith("stylegan2_ops") and r.levelno >= logging.INFO]
        assert len(lines) == 1, [r.getMessage() for r in lines]
        return status, lines[0]

    yield load
    _backend.kernel_status.cache_clear()


def test_no_cuda_device(loader, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    status, line = loader()
    assert not status.available and status.source == "reference"
    assert status.reason == "no CUDA device visible to PyTorch"
    assert line.levelno == logging.INFO and "reference PyTorch path active" in line.getMessage()


def test_prebuilt_missing_and_jit_off(loader):
    status, line = loader()
    assert not status.available
    assert "no prebuilt extension (install with SG2_BUILD_CUDA=1)" in status.reason
    assert "JIT build off (set SG2_JIT_BUILD=1" in status.reason
    assert line.levelno == logging.WARNING and status.reason in line.getMessage()


def test_prebuilt_import_raises(loader, monkeypatch):
    def broken():
        raise ImportError("stylegan2_ops/_C.so: undefined symbol: _ZN3c1017RegisterOperators")

    monkeypatch.setattr(_backend, "import_prebuilt", broken)
    status, line = loader()
    assert not status.available
    assert "prebuilt extension failed to import (ImportError: " in status.reason
    assert "undefined symbol" in line.getMessage()


def test_prebuilt_without_code_for_this_gpu(loader, monkeypatch):
    module = fake_module(probe_error="cudaErrorNoKernelImageForDevice: no kernel image")
    monkeypatch.setattr(_backend, "import_prebuilt", lambda: module)
    status, _ = loader()
    assert not status.available
    assert "prebuilt extension unusable: kernels cannot run on" in status.reason
    assert "cudaErrorNoKernelImageForDevice" in status.reason and "archs 8.0;9.0+PTX" in status.reason


def test_prebuilt_for_another_torch(loader, monkeypatch):
    monkeypatch.setattr(_backend, "import_prebuilt", lambda: fake_module(torch_version="1.0.0"))
    status, _ = loader()
    assert not status.available
    assert f"built for torch 1.0.0, running torch {RUNNING_TORCH}" in status.reason


def test_prebuilt_loaded(loader, monkeypatch):
    module = fake_module()
    monkeypatch.setattr(_backend, "import_prebuilt", lambda: module)
    status, line = loader()
    assert status.available and status.module is module
    assert status.source == "prebuilt" and status.archs == "8.0;9.0+PTX"
    assert "CUDA kernels active: prebuilt extension stylegan2_ops._C" in line.getMessage()
    assert "CUDA 13.0" in status.reason
    report = _backend.describe()
    assert report["kernels source"] == "prebuilt" and report["kernels archs"] == "8.0;9.0+PTX"
    assert report["active"] == "cuda on CUDA tensors, reference on CPU tensors"
    on_gpu = types.SimpleNamespace(device=torch.device("cuda"))
    assert _backend.resolve(on_gpu) == "cuda"
    assert _backend.resolve(torch.zeros(1)) == "reference"


def test_jit_asked_but_no_toolkit(loader, monkeypatch):
    from torch.utils import cpp_extension

    monkeypatch.setenv("SG2_JIT_BUILD", "1")
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "8.0")
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", None)
    for variable in ("CUDA_HOME", "CUDA_PATH"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("PATH", os.devnull)  # no nvcc to ask where its toolkit is
    status, _ = loader()
    assert not status.available
    assert "no prebuilt extension" in status.reason
    assert "JIT build failed (JitBuildError: no CUDA toolkit found" in status.reason


def test_jit_compile_fails(loader, monkeypatch, tmp_path):
    from torch.utils import cpp_extension

    def failing_load(*args, **kwargs):
        raise RuntimeError("Error building extension 'stylegan2_ops_jit'\n"
                           "upfirdn2d_kernel.cu(12): error: identifier \"oops\" is undefined")

    monkeypatch.setenv("SG2_JIT_BUILD", "1")
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "8.0")
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", str(tmp_path / "cuda"))
    monkeypatch.setattr(cpp_extension, "load", failing_load)
    status, line = loader()
    assert not status.available
    assert "JIT build failed (JitBuildError: RuntimeError: Error building extension" in status.reason
    assert "compiler output in" in line.getMessage()
    (log,) = (tmp_path / "cache").glob("stylegan2_ops_*/build-error.log")
    assert 'identifier "oops" is undefined' in log.read_text()


def test_jit_builds_when_prebuilt_is_missing(loader, monkeypatch):
    monkeypatch.setenv("SG2_JIT_BUILD", "1")
    monkeypatch.setattr(_backend, "jit_build", fake_module)
    status, line = loader()
    assert status.available and status.source == "jit"
    assert "JIT-built extension (archs 8.0;9.0+PTX" in status.reason
    assert "no prebuilt extension" in line.getMessage()  # and why the prebuilt one was passed over


def test_jit_build_without_code_for_this_gpu(loader, monkeypatch):
    monkeypatch.setenv("SG2_JIT_BUILD", "1")
    monkeypatch.setattr(_backend, "jit_build", lambda: fake_module(probe_error="no kernel image"))
    status, _ = loader()
    assert not status.available and "JIT-built extension unusable" in status.reason


def test_forcing_cuda_without_kernels_names_the_reason(loader, monkeypatch):
    monkeypatch.setenv("SG2_OPS", "cuda")
    on_gpu = types.SimpleNamespace(device=torch.device("cuda"))
    with pytest.raises(RuntimeError, match=r"impl 'cuda' was forced but the kernels are unusable: "
                                           r"no prebuilt extension"):
        _backend.resolve(on_gpu)
    loader()  # still exactly one log line


def test_jit_removes_a_stale_torch_baton(monkeypatch, tmp_path):
    """torch's own build lock, left by a killed rank, would block every later start."""
    from torch.utils import cpp_extension

    monkeypatch.setattr(cpp_extension, "CUDA_HOME", str(tmp_path / "cuda"))
    (tmp_path / "lock").write_text("")
    seen = {}

    def fake_load(name, sources, **kwargs):
        seen["baton"] = (tmp_path / "lock").exists()
        seen["archs"] = os.environ["TORCH_CUDA_ARCH_LIST"]
        seen["flags"] = kwargs["extra_cflags"]
        return "module"

    monkeypatch.setattr(cpp_extension, "load", fake_load)
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "7.5")
    assert _jit._compile("name", tmp_path, "8.0;9.0+PTX") == "module"
    assert seen == {"baton": False, "archs": "8.0;9.0+PTX",
                    "flags": ["-O3", "-DSG2_CUDA_ARCHS=8.0_9.0+PTX"]}
    assert os.environ["TORCH_CUDA_ARCH_LIST"] == "7.5"  # restored


RANK_SCRIPT = textwrap.dedent("""
    import os, pathlib, sys, time
    from stylegan2_ops import _jit

    events = pathlib.Path(sys.argv[1])

    def fake_compile(name, directory, archs):
        built = directory / "fake.so"
        if not built.exists():
            with events.open("a") as fh:
                fh.write(f"compile {os.getpid()}\\n")
            time.sleep(1.0)
            built.write_text("built")
        return name

    _jit._compile = fake_compile
    ready = events.with_name(f"ready-{os.getpid()}")
    ready.touch()
    while len(list(events.parent.glob("ready-*"))) < 2:  # start both builds together
        time.sleep(0.01)
    print(_jit.build(archs="8.0"))
""")


def test_two_ranks_compile_once(tmp_path):
    env = dict(os.environ, SG2_KERNEL_CACHE=str(tmp_path / "cache"))
    events = tmp_path / "events.txt"
    root = pathlib.Path(__file__).resolve().parents[2]
    ranks = [subprocess.Popen([sys.executable, "-c", RANK_SCRIPT, str(events)], cwd=root, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [rank.communicate(timeout=120) for rank in ranks]
    assert [rank.returncode for rank in ranks] == [0, 0], outputs
    assert events.read_text().count("compile") == 1
    names = {out.strip() for out, _ in outputs}
    assert len(names) == 1 and names.pop().startswith("stylegan2_ops_jit_")


def test_cache_key_follows_sources_archs_and_torch(monkeypatch):
    key = _jit.cache_key("8.0")
    assert key == _jit.cache_key("8.0") and key != _jit.cache_key("9.0")
    monkeypatch.setattr(torch, "__version__", "0.0.0")
    other_torch = _jit.cache_key("8.0")
    assert other_torch != key
    monkeypatch.setattr(_build, "source_digest", lambda: "edited")
    assert _jit.cache_key("8.0") not in (key, other_torch)  # the sources alone change it too


@pytest.mark.parametrize("cuda,expected", [
    ((13, 0), "7.5;8.0;8.6;8.9;9.0;10.0+PTX"),
    ((12, 8), "7.0;7.5;8.0;8.6;8.9;9.0;10.0+PTX"),
    ((12, 4), "7.0;7.5;8.0;8.6;8.9;9.0+PTX"),
    ((11, 8), "7.0;7.5;8.0;8.6;8.9;9.0+PTX"),
])
def test_default_archs_follow_the_toolkit(cuda, expected):
    assert _build.default_arch_list(cuda) == expected


def test_arch_list_is_validated():
    assert _build.arch_token("8.0; 9.0+PTX") == "8.0_9.0+PTX"
    assert _build.decode_arch_token("8.0_9.0+PTX") == "8.0;9.0+PTX"
    with pytest.raises(ValueError, match="expected entries like 8.0"):
        _build.arch_token("sm_80")


def test_prebuilt_that_disagrees_with_the_reference_is_not_used(loader, monkeypatch):
    monkeypatch.setattr(_backend, "import_prebuilt", lambda: fake_module())
    monkeypatch.setattr(_backend, "self_check",
                        lambda: "upfirdn2d up2: max difference 0.5 from the reference path")
    status, line = loader()
    assert not status.available
    assert "kernel self-check failed" in status.reason and "upfirdn2d up2" in status.reason
    assert line.levelno == logging.WARNING


class _ReferenceAsKernels:
    """The reference path under the kernels' calling convention (what correct kernels give)."""

    @staticmethod
    def upfirdn2d(x, f, up, down, padding, flip_filter, gain):
        from stylegan2_ops._reference import upfirdn2d_reference

        return upfirdn2d_reference(x, f, up, down, padding, flip_filter, gain)

    @staticmethod
    def bias_act(x, b, dim, act, alpha, gain, clamp):
        from stylegan2_ops._reference import activation, bias_act_reference

        return bias_act_reference(x, b, dim, activation(act), alpha, gain, clamp)


class _AutocastImmune(_ReferenceAsKernels):
    """Like the compiled kernels, computes in the input's dtype whatever autocast says."""

    @staticmethod
    def upfirdn2d(x, f, up, down, padding, flip_filter, gain):
        with torch.autocast("cpu", enabled=False):
            return _ReferenceAsKernels.upfirdn2d(x, f, up, down, padding, flip_filter, gain)


def test_self_check_passes_correct_kernels_and_names_a_wrong_one():
    from stylegan2_ops._selfcheck import kernel_mismatch

    assert kernel_mismatch(torch.device("cpu"), _ReferenceAsKernels) is None

    class OffByOnePixel(_ReferenceAsKernels):
        @staticmethod
        def upfirdn2d(x, f, up, down, padding, flip_filter, gain):
            px0, px1, py0, py1 = padding
            return _ReferenceAsKernels.upfirdn2d(x, f, up, down, (px0 + 1, px1 - 1, py0, py1),
                                                 flip_filter, gain)

    class NoClamp(_ReferenceAsKernels):
        @staticmethod
        def bias_act(x, b, dim, act, alpha, gain, clamp):
            return _ReferenceAsKernels.bias_act(x, b, dim, act, alpha, gain, None)

    assert kernel_mismatch(torch.device("cpu"), OffByOnePixel).startswith("upfirdn2d up2: max difference")
    assert kernel_mismatch(torch.device("cpu"), NoClamp).startswith("bias_act lrelu: max difference")


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode", "autocast"])
def test_self_check_runs_inside_no_grad_and_inference_mode(mode):
    """A process's first op call is often generation or a snapshot grid under no_grad or
    inference_mode: the check must still see gradients (it crashed there, turning the kernels
    off for the whole process) and leave the caller's mode as it was."""
    from stylegan2_ops._selfcheck import kernel_mismatch

    context = {"no_grad": torch.no_grad(), "inference_mode": torch.inference_mode(),
               "autocast": torch.autocast("cpu", dtype=torch.bfloat16)}[mode]
    with context:
        assert kernel_mismatch(torch.device("cpu"), _AutocastImmune) is None
        assert torch.is_grad_enabled() == (mode == "autocast")
        assert torch.is_inference_mode_enabled() == (mode == "inference_mode")
        assert torch.is_autocast_enabled("cpu") == (mode == "autocast")


def test_self_check_compares_without_tf32_convolutions():
    """cuDNN's TF32 convolutions (the default outside training) differ from float32 by more
    than the check's tolerance: the reference side runs with them off, then they are back."""
    from stylegan2_ops._selfcheck import kernel_mismatch

    seen = []

    class Recording(_ReferenceAsKernels):
        @staticmethod
        def upfirdn2d(x, f, up, down, padding, flip_filter, gain):
            seen.append(torch.backends.cudnn.allow_tf32)
            return _ReferenceAsKernels.upfirdn2d(x, f, up, down, padding, flip_filter, gain)

    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = True
    try:
        assert kernel_mismatch(torch.device("cpu"), Recording) is None
        assert seen and not any(seen)
        assert torch.backends.cudnn.allow_tf32 is True
    finally:
        torch.backends.cudnn.allow_tf32 = before
