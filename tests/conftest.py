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
