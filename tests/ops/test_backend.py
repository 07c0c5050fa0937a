"""The one dispatch point: forcing paths, bad values, never a silent fallback when forced."""
import pytest
import torch

from stylegan2_ops import bias_act, setup_filter, upfirdn2d
from stylegan2_ops._backend import describe, kernel_status, resolve


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


def test_describe_names_the_reason(monkeypatch):
    monkeypatch.setenv("SG2_OPS", "reference")
    report = describe()
    assert report["active"] == "reference (forced by $SG2_OPS)"
    assert report["kernels"] == kernel_status().reason
