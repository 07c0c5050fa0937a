"""The one dispatch point: forcing paths, bad values, never a silent fallback when forced."""
import pytest
import torch

from stylegan2_ops import _backend, bias_act, setup_filter, upfirdn2d
from stylegan2_ops._backend import KernelStatus, describe, resolve


def test_auto_on_cpu_uses_the_reference_path():
    assert resolve(torch.zeros(1)) == "reference"


def test_forcing_cuda_on_a_cpu_tensor_is_an_error(monkeypatch):
    monkeypatch.setenv("SG2_OPS", "cuda")
    with pytest.raises(RuntimeError, match="impl 'cuda' was forced but the tensor is on cpu"):
        bias_act(torch.zeros([1, 2]))
    with pytest.raises(RuntimeError, match="forced"):
        upfirdn2d(torch.zeros([1, 1, 4, 4]), setup_filter([1, 1]), impl="cuda")


def test_unknown_impl_names_the_allowed_ones(monkeypatch):
    monkeypatch.setenv("SG2_OPS", "fast")
    with pytest.raises(ValueError, match=r"\$SG2_OPS='fast' is not one of auto, reference, cuda"):
        bias_act(torch.zeros([1, 2]))
    monkeypatch.delenv("SG2_OPS")
    with pytest.raises(ValueError, match="impl argument='gpu'"):
        bias_act(torch.zeros([1, 2]), impl="gpu")


def test_describe_reports_the_forced_path_and_the_kernel_search(monkeypatch):
    searched = KernelStatus(False, "no prebuilt extension (install with SG2_BUILD_CUDA=1)")
    monkeypatch.setattr(_backend, "kernel_status", lambda: searched)
    monkeypatch.setenv("SG2_OPS", "reference")
    assert describe() == {
        "requested": "reference", "active": "reference (forced by $SG2_OPS)",
        "kernels": "no prebuilt extension (install with SG2_BUILD_CUDA=1)",
        "kernels source": "reference", "kernels archs": "n/a",
    }
    found = KernelStatus(True, "prebuilt extension", object(), "prebuilt", "8.0;9.0")
    monkeypatch.setattr(_backend, "kernel_status", lambda: found)
    monkeypatch.delenv("SG2_OPS")
    report = describe()
    assert report["requested"] == "auto"
    assert report["active"] == "cuda on CUDA tensors, reference on CPU tensors"
    assert (report["kernels source"], report["kernels archs"]) == ("prebuilt", "8.0;9.0")


def test_describe_says_a_forced_cuda_path_that_cannot_run_runs_nothing(monkeypatch):
    """It said 'reference' while every command refused to run with that setting."""
    monkeypatch.setenv("SG2_OPS", "cuda")
    monkeypatch.setattr(_backend, "kernel_status",
                        lambda: KernelStatus(False, "no CUDA device visible to PyTorch"))
    assert describe()["active"] == (
        "none: $SG2_OPS=cuda forces the CUDA kernels, but they are unusable: no CUDA device "
        "visible to PyTorch; every command refuses to run until $SG2_OPS is unset or set to "
        "auto or reference")
    monkeypatch.setattr(_backend, "kernel_status", lambda: KernelStatus(True, "prebuilt"))
    assert describe()["active"] == (
        "cuda on CUDA tensors; work on the CPU is refused (forced by $SG2_OPS)")


@pytest.mark.skipif(torch.cuda.is_available(), reason="says why there are no kernels on a CPU machine")
def test_describe_on_a_cpu_machine_says_there_is_no_cuda_device(monkeypatch):
    monkeypatch.delenv("SG2_OPS", raising=False)
    report = describe()
    assert report["active"] == "reference"
    assert report["kernels"] == "no CUDA device visible to PyTorch"


def test_request_problem_says_why_a_request_cannot_run_before_any_op(monkeypatch):
    from stylegan2_ops import request_problem

    monkeypatch.setenv("SG2_OPS", "fast")
    assert request_problem(torch.device("cpu")) == (
        "$SG2_OPS='fast' is not one of auto, reference, cuda")
    monkeypatch.setenv("SG2_OPS", "cuda")
    assert request_problem(torch.device("cpu")) == (
        "$SG2_OPS=cuda forces the CUDA kernels, but the work runs on cpu")
    monkeypatch.setattr(_backend, "kernel_status", lambda: KernelStatus(False, "no prebuilt"))
    assert request_problem(torch.device("cuda", 0)) == (
        "$SG2_OPS=cuda forces the CUDA kernels, but they are unusable: no prebuilt")
    monkeypatch.setattr(_backend, "kernel_status", lambda: KernelStatus(True, "prebuilt"))
    assert request_problem(torch.device("cuda", 0)) is None
    for fine in ("reference", "auto", ""):
        monkeypatch.setenv("SG2_OPS", fine)
        assert request_problem(torch.device("cpu")) is None


def test_describe_shows_an_invalid_request_instead_of_raising(monkeypatch):
    monkeypatch.setenv("SG2_OPS", "fast")
    report = describe()
    assert report["requested"] == "invalid: $SG2_OPS='fast' is not one of auto, reference, cuda"
    assert report["active"] == "none: every op call fails until it is fixed"
