"""stylegan2_ops.cpu_kernels and the compiled CPU kernels: that the install builds them, which
instruction set they run with, the fused bias + activation against PyTorch's path (byte for
byte), and that everything works without them."""
import dataclasses
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import types

import pytest
import torch

from sg2_container.models.networks.synthesis import SynthesisLayer
from stylegan2_ops import bias_act, cpu_kernels, winograd

STATUS = cpu_kernels.status()
needs_build = pytest.mark.skipif(not STATUS.available, reason=f"CPU kernels: {STATUS.reason}")


def test_the_install_built_the_kernels_where_a_compiler_exists():
    # setup.py builds stylegan2_ops._cpu whenever it can; a silent build failure on a machine
    # with a compiler would leave both paths (and the tests below) off without anyone noticing.
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler on this machine: the install skips the CPU kernels")
    assert STATUS.available, STATUS.reason


@needs_build
@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 variants only")
@pytest.mark.skipif("ATEN_CPU_CAPABILITY" in os.environ, reason="torch's capability was lowered")
def test_the_kernels_run_with_the_best_instruction_set_the_cpu_has():
    # The variants were once picked by exact CPU model (GCC's target_clones("arch=...")), so
    # CPUs newer than the named ones ran the baseline; torch's own CPUID check is the yardstick.
    expected = {"AVX512": "avx512", "AVX2": "avx2"}.get(torch.backends.cpu.get_cpu_capability(),
                                                        "baseline")
    assert STATUS.module.supported_isa() == expected
    if os.environ.get(cpu_kernels.ISA_ENV_VAR) is None:
        assert STATUS.isa == expected and STATUS.reason.endswith(f"({expected})")


_VARIANT_SCRIPT = """
import json, sys, torch
from stylegan2_ops import bias_act, cpu_kernels, winograd
gen = torch.Generator().manual_seed(0)
x = torch.randn(2, 70, 13, 11, generator=gen)
w = torch.randn(66, 70, 3, 3, generator=gen)
conv = winograd.conv3x3(x, winograd.transform_filter(w), torch.randn(2, 70, generator=gen))
special = x.clone()
special.view(-1)[:6] = torch.tensor([float("nan"), -0.0, float("inf"), -float("inf"), 1e-40, -1e-40])
act = torch.stack([bias_act(special.contiguous(memory_format=torch.channels_last),
                            torch.randn(70, generator=gen), act="lrelu", clamp=clamp)
                   for clamp in (None, 1.5)])
torch.save({"conv": conv, "act": act}, sys.argv[1])
status = cpu_kernels.status()
print(json.dumps({"isa": status.isa, "reason": status.reason,
                  "calls": status.module.variant_calls()}))
"""


@needs_build
def test_every_variant_this_cpu_runs_computes_the_same(tmp_path):
    # SG2_CPU_ISA lowers the variant, so each compiled one is checked on any CPU that has it.
    variants = cpu_kernels.ISAS[:cpu_kernels.ISAS.index(STATUS.module.supported_isa()) + 1]
    results = {}
    for isa in variants:
        out = tmp_path / f"{isa}.pt"
        run = subprocess.run([sys.executable, "-c", _VARIANT_SCRIPT, str(out)], check=True,
                             capture_output=True, text=True, timeout=300,
                             env=dict(os.environ, SG2_CPU_ISA=isa))
        report = json.loads(run.stdout.strip().splitlines()[-1])
        assert report["isa"] == isa
        # the dispatcher ran that variant, and only that one
        assert {name for name, count in report["calls"].items() if count} == {isa}, report
        if isa != variants[-1]:
            assert "lowered by $SG2_CPU_ISA" in report["reason"]
        results[isa] = torch.load(out, weights_only=True)
    first = results[variants[0]]
    for isa in variants[1:]:
        # The convs may differ in rounding (FMA); the activation is PyTorch's bytes on each.
        scale = first["conv"].abs().max()
        assert ((results[isa]["conv"] - first["conv"]).abs().max() / scale) < 3e-5, isa
        assert torch.equal(_bits(results[isa]["act"]), _bits(first["act"])), isa


@needs_build
def test_an_unknown_instruction_set_name_is_reported_not_obeyed(monkeypatch):
    monkeypatch.setenv(cpu_kernels.ISA_ENV_VAR, "avx9000")
    cpu_kernels.status.cache_clear()
    try:
        reason = cpu_kernels.status().reason
    finally:
        cpu_kernels.status.cache_clear()
    assert "'avx9000' ignored: not one of baseline, avx2, avx512" in reason


@needs_build
def test_status_says_when_the_blocked_winograd_form_is_off(monkeypatch):
    # On this torch (x86-64 wheels, MKL inside) the form runs; a module that reports otherwise
    # (a torch without MKL's exports) is named in the status line `sg2 info` prints.
    real = cpu_kernels.import_module()
    assert real.winograd_blocked_available()
    without = types.SimpleNamespace(isa=real.isa, supported_isa=real.supported_isa,
                                    winograd_blocked_available=lambda: False)
    monkeypatch.setattr(cpu_kernels, "import_module", lambda: without)
    cpu_kernels.status.cache_clear()
    try:
        assert "without the in-cache form" in cpu_kernels.status().reason
    finally:
        cpu_kernels.status.cache_clear()


def test_status_is_off_when_the_reference_path_is_forced(monkeypatch):
    monkeypatch.setenv("SG2_OPS", "reference")
    cpu_kernels.status.cache_clear()
    try:
        status = cpu_kernels.status()
        assert not status.available and "SG2_OPS=reference" in status.reason
        x = torch.zeros(1, winograd.MIN_CHANNELS, 16, 16)
        assert not winograd.suits(x, torch.zeros(winograd.MIN_CHANNELS, winograd.MIN_CHANNELS, 3, 3), 1)
    finally:
        monkeypatch.delenv("SG2_OPS")
        cpu_kernels.status.cache_clear()


def test_a_missing_build_leaves_both_paths_off_with_its_reason(monkeypatch):
    def missing():
        raise ModuleNotFoundError(f"No module named {cpu_kernels.MODULE!r}", name=cpu_kernels.MODULE)

    monkeypatch.setattr(cpu_kernels, "import_module", missing)
    cpu_kernels.status.cache_clear()
    try:
        status = cpu_kernels.status()
        assert not status.available and "not built" in status.reason and status.isa is None
        layer = SynthesisLayer(winograd.MIN_CHANNELS, 8, w_dim=4, resolution=16).eval()
        with torch.no_grad():
            out = layer(torch.randn(1, winograd.MIN_CHANNELS, 16, 16), torch.randn(1, 4),
                        noise_mode="const")
        assert out.shape == (1, 8, 16, 16)
        x = torch.randn(2, 3, 4, 4)
        assert torch.equal(bias_act(x, torch.ones(3), act="lrelu"),
                           bias_act(x, torch.ones(3), act="lrelu", impl="reference"))
    finally:
        cpu_kernels.status.cache_clear()


# ---- bias + activation in one pass ----------------------------------------------------------
class _CountingModule:
    """The compiled module, counting bias_act calls (to see that the kernel ran)."""

    def __init__(self, module):
        self.module, self.calls = module, 0

    def bias_act(self, *args):
        self.calls += 1
        return self.module.bias_act(*args)


@pytest.fixture
def counted(monkeypatch):
    spy = _CountingModule(STATUS.module)
    monkeypatch.setattr(cpu_kernels, "status", lambda: dataclasses.replace(STATUS, module=spy))
    return spy


def _bits(t):
    return t.contiguous().view(torch.int32)


SPECIAL = [0.0, -0.0, float("nan"), float("inf"), -float("inf"), -1.0, 3.0, 1e-40, -1e-40, -5e-39]
SIGNALING_NAN = torch.tensor([0x7FA00001], dtype=torch.int32).view(torch.float32)


@needs_build
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "rows", "inner-dim", "first-dim"])
@pytest.mark.parametrize("act", ["lrelu", "linear"])
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
def test_bias_act_gives_pytorchs_bytes(counted, layout, act, with_bias):
    gen = torch.Generator().manual_seed(len(layout))
    shape, dim = {"nchw": ((2, 70, 5, 9), 1), "channels_last": ((3, 70, 6, 5), 1),
                  "rows": ((7, 513), 1), "inner-dim": ((4, 5, 6), 2), "first-dim": ((9, 33), 0)}[layout]
    x = torch.randn(shape, generator=gen) * 300  # beyond the clamp
    x.view(-1)[:len(SPECIAL)] = torch.tensor(SPECIAL)
    x.view(-1)[len(SPECIAL)] = SIGNALING_NAN  # kept as it is where PyTorch skips a step
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    b = torch.randn(shape[dim], generator=gen) if with_bias else None
    if b is not None:
        b[-1] = float("nan")  # a NaN bias on finite inputs
    for gain, clamp in [(None, None), (1.0, None), (0.5, 256.0), (None, 0.0)]:
        expected = bias_act(x, b, dim, act, gain=gain, clamp=clamp, impl="reference")
        calls = counted.calls
        ours = bias_act(x, b, dim, act, gain=gain, clamp=clamp)
        if not (act == "linear" and b is None and gain in (None, 1.0) and clamp is None):
            assert counted.calls == calls + 1  # the kernel ran (else: nothing to compute)
        assert ours.stride() == expected.stride()
        assert torch.equal(_bits(ours), _bits(expected)), (gain, clamp)


@needs_build
def test_bias_act_overwrites_only_when_asked(counted):
    x = torch.randn(2, 16, 8, 8)
    kept = x.clone()
    y = bias_act(x, torch.ones(16), act="lrelu")
    assert torch.equal(x, kept) and y.data_ptr() != x.data_ptr()
    z = bias_act(x, torch.ones(16), act="lrelu", overwrite=True)
    assert z.data_ptr() == x.data_ptr() and torch.equal(z, y)
    assert counted.calls == 2


@needs_build
def test_bias_act_leaves_what_the_kernel_does_not_cover_to_pytorch(counted):
    x = torch.randn(2, 8, 4, 4)
    b = torch.randn(8)
    bias_act(x.double(), b.double(), act="lrelu")  # float64
    bias_act(x, b, act="tanh")  # an activation the kernel has not
    bias_act(x[:, :, :, ::2], b, act="lrelu")  # a strided view
    bias_act(x, b, act="lrelu", impl="reference")  # asked for
    xg = x.clone().requires_grad_()
    y = bias_act(xg, b, act="lrelu", gain=2.0)  # autograd records: PyTorch's differentiable ops
    assert counted.calls == 0
    y.sum().backward()
    assert torch.equal(xg.grad, torch.where(x + b[:, None, None] > 0, 2.0, 0.4).expand_as(x))


@needs_build
def test_bias_act_on_a_large_tensor_splits_work_across_threads_with_the_same_bytes(counted):
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(3, 64, 96, 96, generator=gen).contiguous(memory_format=torch.channels_last)
    b = torch.randn(64, generator=gen)
    expected = bias_act(x, b, act="lrelu", gain=math.sqrt(2), clamp=2.0, impl="reference")
    threads = torch.get_num_threads()
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            assert torch.equal(bias_act(x, b, act="lrelu", gain=math.sqrt(2), clamp=2.0), expected)
    finally:
        torch.set_num_threads(threads)


def test_bias_act_refuses_a_nan_clamp():
    with pytest.raises(ValueError, match="clamp must be >= 0"):
        bias_act(torch.zeros(2, 3), None, act="lrelu", clamp=float("nan"))


@needs_build
def test_the_dispatcher_runs_the_variant_it_reports():
    before = STATUS.module.variant_calls()
    x = torch.randn(1, 64, 8, 8).contiguous(memory_format=torch.channels_last)
    winograd.conv3x3(x, winograd.transform_filter(torch.randn(64, 64, 3, 3)))
    bias_act(x, torch.randn(64), act="lrelu")
    after = STATUS.module.variant_calls()
    ran = {name for name in after if after[name] > before[name]}
    assert ran == {STATUS.isa}


@needs_build
def test_bias_act_in_place_is_seen_by_autograd_and_inference_mode_as_pytorchs_would_be(counted):
    h = torch.randn(2, 4, 3, 3, requires_grad=True) * 1.0  # saved for backward by the product
    y = h * h
    with torch.no_grad():
        bias_act(h, torch.ones(4), act="lrelu", overwrite=True)
    assert counted.calls == 1
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()
    with torch.inference_mode():
        frozen = torch.randn(2, 4, 3, 3)
    with pytest.raises(RuntimeError, match="[Ii]nference"):  # PyTorch refuses, so do we
        bias_act(frozen, torch.ones(4), act="lrelu", overwrite=True)
    x = torch.randn(5, 4)
    with pytest.raises(RuntimeError):  # a bias inside x: PyTorch refuses the overlap
        bias_act(x, x[0], act="lrelu", overwrite=True)
    assert counted.calls == 1


@needs_build
@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit is deprecated, still in use
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_bias_act_under_forward_ad_vmap_and_tracing_is_pytorchs(counted):
    import torch.autograd.forward_ad as fwad

    x, b, tangent = torch.randn(2, 6, 3, 3), torch.randn(6), torch.randn(2, 6, 3, 3)
    with fwad.dual_level():
        out = bias_act(fwad.make_dual(x, tangent), b, act="lrelu")
        jvp = fwad.unpack_dual(out).tangent
    assert jvp is not None
    assert torch.allclose(jvp, torch.where(x + b[:, None, None] > 0, 1.0, 0.2) * math.sqrt(2) * tangent)
    batched = torch.func.vmap(lambda t: bias_act(t, b, dim=0, act="lrelu"))(x)
    assert torch.equal(batched, bias_act(x, b, act="lrelu", impl="reference"))
    traced = torch.jit.trace(lambda t: bias_act(t, b, act="lrelu"), (x,), check_trace=False)
    other = torch.randn(2, 6, 3, 3)
    assert torch.equal(traced(other), bias_act(other, b, act="lrelu", impl="reference"))
    assert counted.calls == 0


def test_the_cpu_kernels_benchmark_runs_and_prints_its_table():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    run = subprocess.run([sys.executable, "-m", "bench.cpu_kernels", "--quick", "--repeat", "1"],
                         cwd=root, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"# CPU kernels: {STATUS.reason}" in run.stdout
    if STATUS.available:
        assert "| conv3x3 64 ch @ 16 px | 1 |" in run.stdout
        assert "| bias + lrelu + clamp [1, 8, 16, 16] channels_last | 1 |" in run.stdout
        assert "| weight grad, Winograd: 3x3 stride 1, 64 -> 64 ch @ 16 px | 8 |" in run.stdout
        assert "| weight grad, window product: 3x3 stride 2, 8 -> 8 ch @ 9 px | 8 |" in run.stdout
    refused = subprocess.run([sys.executable, "-m", "bench.cpu_kernels", "--repeat", "0"],
                             cwd=root, capture_output=True, text=True, timeout=300, check=False)
    assert refused.returncode == 2 and "--repeat must be at least 1, got 0" in refused.stderr
