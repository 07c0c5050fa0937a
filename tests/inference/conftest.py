"""Tiny generators saved as model files, shared by the inference tests."""
import pytest
import torch

from sg2_container.models.files import save_model
from sg2_container.models.networks import Generator

TINY_G = dict(z_dim=16, w_dim=16, img_resolution=16, mapping_kwargs=dict(num_layers=2),
              synthesis_kwargs=dict(channel_base=256, channel_max=16))


def tiny_generator(c_dim: int = 0, seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    G = Generator(c_dim=c_dim, img_channels=3, **TINY_G).eval().requires_grad_(False)
    # A non-zero average w, so truncation changes something.
    G.mapping.w_avg.copy_(torch.randn_like(G.mapping.w_avg) * 0.3)
    return G


@pytest.fixture
def tiny_model(tmp_path):
    """(G, path of its model file)."""
    G = tiny_generator()
    path = tmp_path / "model.pt"
    save_model(path, G_ema=G)
    return G, path
