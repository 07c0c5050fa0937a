"""The renderer's batch invariance: fully connected layers compute one row at a time."""
import copy

import pytest
import torch

from sg2_container.models.networks import Generator
from sg2_container.models.networks.layers import FullyConnectedLayer
from sg2_container.serving.renderer import make_batch_invariant
from tests.serving.server import TINY_G


def _tiny_generator():
    torch.manual_seed(1)
    return Generator(c_dim=0, img_channels=3, **TINY_G).eval()


def test_fully_connected_layers_see_single_rows_only_and_once(monkeypatch):
    G = _tiny_generator()
    z = torch.randn([3, TINY_G["z_dim"]])
    with torch.no_grad():
        rows_alone = torch.cat([G.mapping(z[i:i + 1], None) for i in range(3)])
    make_batch_invariant(G)
    seen = []
    plain = FullyConnectedLayer.forward
    monkeypatch.setattr(FullyConnectedLayer, "forward",
                        lambda module, x: seen.append(x.shape[0]) or plain(module, x))
    with torch.no_grad():
        batched = G.mapping(z, None)
    assert seen == [1] * 3 * 2  # two mapping layers, three rows each, no batched pass first
    assert torch.equal(batched, rows_alone)


def test_a_deep_copy_keeps_the_row_by_row_forward_on_its_own_layers():
    G = _tiny_generator()
    make_batch_invariant(G)
    twin = copy.deepcopy(G)
    layers = [m for m in twin.modules() if isinstance(m, FullyConnectedLayer)]
    assert layers and all(m.forward.__self__ is m for m in layers)
    # The copy computes with its own weights: change them, and only its output moves.
    z = torch.randn([2, TINY_G["z_dim"]])
    with torch.no_grad():
        before = G.mapping(z, None)
        for layer in layers:
            layer.weight.add_(0.5)
        assert torch.equal(G.mapping(z, None), before)
        assert not torch.allclose(twin.mapping(z, None), before)


def test_synthesis_with_the_cpu_winograd_path_is_batch_invariant():
    # 128 channels at 16 px: the layers there take the Winograd path where it is built.
    from stylegan2_ops import cpu_kernels

    torch.manual_seed(2)
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                  mapping_kwargs={"num_layers": 1},
                  synthesis_kwargs={"channel_base": 128 * 16, "channel_max": 128}).eval()
    make_batch_invariant(G)
    ws = torch.randn([6, G.num_ws, 8])  # 4 rows and more: where a batched product's bits change
    with torch.no_grad():
        batched = G.synthesis(ws, noise_mode="const")
        alone = [G.synthesis(ws[i:i + 1].expand(2, -1, -1), noise_mode="const")[:1]
                 for i in range(6)]
    assert torch.equal(batched, torch.cat(alone))
    if cpu_kernels.status().available:
        caches = [m.weight_cache for m in G.modules() if hasattr(m, "weight_cache")]
        assert any("winograd filter" in c._values for c in caches)


def test_padding_rows_are_skipped_where_samples_run_one_at_a_time(monkeypatch):
    # The renderer pads a lone request to two rows; the copy still shapes the batched blocks
    # but costs nothing in the blocks that run one sample at a time (most of the work).
    from sg2_container.models.networks import synthesis

    G = _tiny_generator()
    make_batch_invariant(G)
    last = G.synthesis.blocks()[-1]
    # Only the last block large enough to run per sample: a mix of batched and per-sample.
    monkeypatch.setattr(synthesis, "PER_SAMPLE_MIN_ELEMENTS",
                        last.conv1.weight.shape[0] * last.resolution ** 2)
    calls = []
    last.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    ws = torch.randn([1, G.num_ws, G.w_dim]).expand(2, -1, -1)
    with torch.no_grad():
        padded = G.synthesis(ws, noise_mode="const")
        assert calls == [1, 1]  # per sample: the copy rendered too
        calls.clear()
        kept = G.synthesis(ws, noise_mode="const", keep=1)
        assert calls == [1]
        assert torch.equal(kept, padded[:1])
        # Where nothing runs per sample (random noise), the whole batch runs and keep slices.
        assert G.synthesis(ws, noise_mode="random", keep=1).shape[0] == 1
    with pytest.raises(ValueError, match="keep must be between 1 and the batch size 2, got 3"):
        G.synthesis(ws, keep=3)
