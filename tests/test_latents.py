"""Seeds -> latents and style mixing, checked against a direct computation."""
import numpy as np
import pytest
import torch

from sg2_container.errors import UserError
from sg2_container.inference.latents import mix_styles, ws_for_seeds, z_for_seeds
from sg2_container.models.networks import Generator


def test_z_for_a_seed_is_the_seeded_normal_draw():
    z = z_for_seeds([3, 7], 5)
    assert np.array_equal(z[1], np.random.RandomState(7).randn(5))


def test_style_mixing_takes_the_columns_ws_at_the_listed_layers():
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3,
                  mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=64, channel_max=8))
    rows = ws_for_seeds(G, [1, 2], truncation_psi=0.7)
    cols = ws_for_seeds(G, [5, 6, 9], truncation_psi=0.7)
    mixed = mix_styles(rows, cols, [0, 2])
    assert mixed.shape == (2, 3, G.num_ws, 8)
    for r in range(2):
        for c in range(3):
            for layer in range(G.num_ws):
                expected = cols[c, layer] if layer in (0, 2) else rows[r, layer]
                assert torch.equal(mixed[r, c, layer], expected)
    with pytest.raises(UserError, match=f"layer indices must be in 0..{G.num_ws - 1}"):
        mix_styles(rows, cols, [G.num_ws])
