"""Shared fixtures: the golden files produced by running the reference implementation."""
import pathlib

import pytest

DATA_DIR = pathlib.Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def golden_ops():
    import torch

    return torch.load(DATA_DIR / "reference_ops.pt", weights_only=True)


@pytest.fixture(scope="session")
def golden_tiny():
    import torch

    return torch.load(DATA_DIR / "reference_tiny_G.pt", weights_only=True)
