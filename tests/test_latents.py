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


@pytest.mark.parametrize("kind", ["npz", "npz-2d", "npy", "npz-float64", "npy-fortran"])
def test_w_files_read_back_as_written_in_every_form_numpy_writes(tmp_path, kind):
    """An .npy of the array once crashed as 'a bug' (np.load gives no archive for it)."""
    from sg2_container.inference.latents import load_ws_file

    w = np.random.RandomState(0).randn(3, 6, 16).astype(np.float32)
    path = tmp_path / ("w.npy" if kind.startswith("npy") else "w.npz")
    if kind == "npz":
        np.savez(path, w=w, seed=np.int64(3))
    elif kind == "npz-2d":
        w = w[:1]
        np.savez_compressed(path, w=w[0])
    elif kind == "npz-float64":
        np.savez(path, w=w.astype(np.float64))
    elif kind == "npy":
        np.save(path, w)
    else:
        np.save(path, np.asfortranarray(w))
    loaded = load_ws_file(path, 6, 16)
    assert loaded.dtype == np.float32 and np.array_equal(loaded, w)


@pytest.mark.parametrize("content,words", [
    (dict(v=np.zeros((1, 6, 16))), "no array 'w' in it (it has v)"),
    (dict(w=np.zeros((1, 6, 8))), "'w' has shape [1, 6, 8]; this network needs [n, 6, 16]"),
    (dict(w=np.zeros((0, 6, 16))), "'w' has shape [0, 6, 16]"),
    (dict(w=np.zeros((1, 6, 16), dtype=np.int32)), "'w' must hold floating-point numbers"),
    (dict(w=np.full((1, 6, 16), np.nan)), "'w' must hold finite numbers"),
])
def test_w_files_that_do_not_fit_the_network_are_refused_by_name(tmp_path, content, words):
    from sg2_container.inference.latents import load_ws_file

    path = tmp_path / "w.npz"
    np.savez(path, **content)
    with pytest.raises(UserError, match=None) as error:
        load_ws_file(path, 6, 16)
    assert words in str(error.value) and "w.npz" in str(error.value)
