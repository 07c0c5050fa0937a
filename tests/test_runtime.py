"""sg2_container.runtime: which GPUs a PyTorch build can run on, checked before any work."""
import pytest
import torch

from sg2_container.errors import UserError
from sg2_container.runtime import arch_runs, resolve_device

CU130 = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120", "compute_120"]


@pytest.mark.parametrize("capability, archs, runs", [
    ((9, 0), CU130, True),
    ((8, 9), CU130, True),            # sm_86 binaries run on 8.9
    ((7, 0), CU130, False),           # V100 on a CUDA 13 build
    ((7, 0), ["sm_70", "sm_80"], True),
    ((12, 1), ["sm_90", "compute_90"], True),   # PTX is compiled for newer GPUs
    ((8, 0), ["sm_86"], False),       # a binary for a later minor does not run on an earlier one
    ((9, 0), ["sm_80"], False),       # nor on another major version
    ((7, 5), ["compute_80"], False),  # PTX only runs on GPUs at least as new
])
def test_which_gpus_a_build_runs_on(capability, archs, runs):
    assert arch_runs(capability, archs) is runs


@pytest.fixture
def fake_gpu(monkeypatch):
    def install(capability, archs):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: capability)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: "Tesla V100-SXM2-16GB")
        monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: archs)
    return install


@pytest.mark.parametrize("name", ["auto", "cuda", "cuda:0"])
def test_an_unsupported_gpu_is_refused_before_any_work(fake_gpu, name):
    fake_gpu((7, 0), CU130)
    with pytest.raises(UserError, match=r"Tesla V100-SXM2-16GB, sm_70\) is not supported .*"
                                        r"compiled for sm_75, .*CUDA_VARIANT=cu126"):
        resolve_device(name)


def test_a_supported_gpu_is_taken(fake_gpu):
    fake_gpu((9, 0), CU130)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:0") == torch.device("cuda", 0)


def test_an_endpoint_on_several_unsupported_gpus_is_refused_before_loading(fake_gpu, monkeypatch,
                                                                          tmp_path):
    """`device auto` with several GPUs takes them all: each is checked like a single one."""
    import threading

    from sg2_container.inference import model_source
    from sg2_container.serving.app import load_renderers
    from sg2_container.serving.options import ServeOptions

    fake_gpu((7, 0), CU130)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(model_source, "load_generator",
                        lambda *a, **k: pytest.fail("loaded a model for an unusable GPU"))
    options = ServeOptions(network=str(tmp_path / "model.pt"), device="auto")
    with pytest.raises(UserError, match=r"sm_70\) is not supported"):
        load_renderers(options, threading.Event())
