"""Shared fixtures: the golden files produced by running the reference implementation."""
import os
import pathlib

import pytest

# Two xdist workers on two cores: more than one math thread per process oversubscribes the
# machine and small ops then stall on thread hand-offs (~100x slower). Subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

DATA_DIR = pathlib.Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def golden_ops():
    import torch

    return torch.load(DATA_DIR / "reference_ops.pt", weights_only=True)


@pytest.fixture(scope="session")
def golden_tiny():
    import torch

    return torch.load(DATA_DIR / "reference_tiny_G.pt", weights_only=True)


def pytest_configure(config):
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(scope="session")
def random_vgg16_file(tmp_path_factory):
    """A randomly initialised VGG16 in torchvision's file layout (features.* and, to show that
    the loader ignores it, a small stand-in classifier part): about 59 MB, written once."""
    import torch

    from sg2_container.inference.lpips_vgg import _vgg16_feature_layers

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        layers = _vgg16_feature_layers()
    state = {f"features.{k}": v for k, v in layers.state_dict().items()}
    state["classifier.6.weight"] = torch.zeros([10, 4096])
    state["classifier.6.bias"] = torch.zeros([10])
    path = tmp_path_factory.mktemp("vgg16") / "vgg16-random.pth"
    torch.save(state, path)
    return path
