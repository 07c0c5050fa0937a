"""conv2d_resample against the reference and against its own definition."""
import pytest
import torch

from stylegan2_ops import conv2d_resample, setup_filter
from stylegan2_ops.conv2d_resample import conv2d_resample_by_definition
from tests.conftest import DATA_DIR

CASES = torch.load(DATA_DIR / "reference_ops.pt", weights_only=True)["conv2d_resample"]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["name"])
def test_conv2d_resample_matches_reference(case):
    x = case["x"].clone().requires_grad_(True)
    out = conv2d_resample(x, case["w"], case["f"], case["up"], case["down"], case["padding"],
                          case["groups"], case["flip_weight"], case["flip_filter"])
    torch.testing.assert_close(out, case["out"], rtol=0, atol=1e-12)
    if case.get("dx") is not None:
        (dx,) = torch.autograd.grad(out, x, case["dy"])
        torch.testing.assert_close(dx, case["dx"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("up,down", [(1, 1), (2, 1), (1, 2), (2, 2), (4, 1)])
@pytest.mark.parametrize("flip_weight", [True, False])
@pytest.mark.parametrize("groups", [1, 2])
def test_fast_orderings_equal_the_definition(k, up, down, flip_weight, groups):
    gen = torch.Generator().manual_seed(k * 100 + up * 10 + down)
    x = torch.randn([2, 4, 8, 8], dtype=torch.float64, generator=gen)
    w = torch.randn([6, 4 // groups, k, k], dtype=torch.float64, generator=gen)
    f = setup_filter([1, 3, 3, 1])
    pad = k // 2
    out = conv2d_resample(x, w, f, up, down, pad, groups, flip_weight)
    ref = conv2d_resample_by_definition(x, w, f, up, down, pad, groups, flip_weight)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)


def test_mismatched_channels_are_named():
    with pytest.raises(ValueError, match="channels do not match"):
        conv2d_resample(torch.zeros([1, 3, 4, 4]), torch.zeros([2, 4, 3, 3]))
