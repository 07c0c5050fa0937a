"""stylegan2_ops.WeightCache, and the modulated conv's use of it at inference."""
import copy

import pytest
import torch

from sg2_container.models.networks.layers import modulated_conv2d
from stylegan2_ops import WeightCache


def _squares(weight):
    return weight.square()


def test_values_are_remade_when_the_weight_changes():
    weight = torch.nn.Parameter(torch.randn(4, 3, 3, 3))
    cache = WeightCache()
    first = cache.get(weight, "squares", _squares)
    assert cache.get(weight, "squares", _squares) is first  # unchanged weight: kept
    with torch.no_grad():
        weight.mul_(2)  # what an optimizer step or an EMA update does
    assert torch.allclose(cache.get(weight, "squares", _squares), 4 * first)
    module = torch.nn.Linear(1, 1)
    module.weight = weight
    module.load_state_dict({"weight": torch.ones_like(weight), "bias": torch.zeros(1)})
    assert torch.equal(cache.get(weight, "squares", _squares), torch.ones_like(weight))
    other = torch.nn.Parameter(torch.zeros(4, 3, 3, 3))
    assert torch.equal(cache.get(other, "squares", _squares), torch.zeros_like(weight))


def test_another_tensor_with_the_same_address_shape_and_version_is_not_the_weight():
    # A temporary made at every call can land at a freed one's address with version 0: only
    # the weight's identity tells them apart. A view shares address, shape and version counter.
    weight = torch.randn(4, 4)
    lookalike = weight.view(4, 4)
    assert (lookalike.data_ptr(), lookalike._version) == (weight.data_ptr(), weight._version)
    calls = []
    cache = WeightCache()

    def squares(w):
        calls.append(1)
        return w.square()

    cache.get(weight, "squares", squares)
    cache.get(weight, "squares", squares)
    assert len(calls) == 1
    cache.get(lookalike, "squares", squares)
    assert len(calls) == 2


def test_values_are_detached_and_copies_start_empty():
    weight = torch.nn.Parameter(torch.randn(2, 2))
    cache = WeightCache()
    assert not cache.get(weight, "squares", _squares).requires_grad
    assert len(copy.deepcopy(cache)) == 0 and len(cache) == 1


@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("batch", [1, 3])
def test_modulated_conv_with_a_cache_gives_the_same_values(up, batch):
    gen = torch.Generator().manual_seed(up * 10 + batch)
    x = torch.randn(batch, 12, 6, 6, generator=gen)
    weight = torch.randn(8, 12, 3, 3, generator=gen)
    styles = torch.randn(batch, 12, generator=gen)
    noise = torch.randn(batch, 1, 6 * up, 6 * up, generator=gen)
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    f = (f[:, None] * f[None, :]) / 64
    cache = WeightCache()
    kwargs = dict(noise=noise, up=up, padding=1, resample_filter=f, flip_weight=(up == 1),
                  fused_modconv=False)
    with torch.no_grad():
        cached = modulated_conv2d(x, weight, styles, weight_cache=cache, **kwargs)
        plain = modulated_conv2d(x, weight, styles, **kwargs)
    # The demodulation's tap sums, and for upsampling the weight in [in, out] order.
    assert "squared tap sums" in cache._values
    assert ("in-out order" in cache._values) == (up > 1)
    assert torch.allclose(cached, plain, rtol=1e-5, atol=1e-5)


def test_modulated_conv_leaves_the_cache_alone_where_autograd_records():
    x = torch.randn(1, 4, 5, 5)
    weight = torch.randn(4, 4, 3, 3, requires_grad=True)
    cache = WeightCache()
    out = modulated_conv2d(x, weight, torch.randn(1, 4), padding=1, fused_modconv=False,
                           weight_cache=cache)
    out.sum().backward()
    assert len(cache) == 0 and weight.grad is not None


def test_fully_connected_layer_keeps_its_scaled_weight_at_inference_only():
    from sg2_container.models.networks.layers import FullyConnectedLayer

    layer = FullyConnectedLayer(6, 4, lr_multiplier=0.01)
    x = torch.randn(3, 6)
    trained = layer(x)  # autograd records: scaled afresh, nothing kept
    assert len(layer.weight_cache) == 0 and trained.requires_grad
    with torch.no_grad():
        kept = layer(x)
        assert len(layer.weight_cache) == 1
        assert torch.equal(kept, trained.detach())  # the same product, bit for bit
        layer.weight.mul_(3)  # an EMA or optimizer update
        assert torch.allclose(layer(x) - layer.bias * layer.bias_gain,
                              3 * (kept - layer.bias * layer.bias_gain), atol=1e-6)


def test_weights_made_under_inference_mode_are_computed_not_kept():
    with torch.inference_mode():
        weight = torch.randn(3, 3)  # no version counter to watch
        cache = WeightCache()
        assert torch.equal(cache.get(weight, "squares", _squares), weight.square())
        assert len(cache) == 0
