"""upfirdn2d and its helpers against the reference's golden vectors and float64 gradchecks."""
import pytest
import torch

from stylegan2_ops import downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d
from tests.conftest import DATA_DIR

CASES = torch.load(DATA_DIR / "reference_ops.pt", weights_only=True)
HELPERS = {"upsample2d": upsample2d, "downsample2d": downsample2d, "filter2d": filter2d}


def _atol(name):
    # The reference scales the float32 filter by the gain before casting (README of the data).
    return 1e-6 if name == "raw_down2_crop_gain3" else 1e-12


@pytest.mark.parametrize("case", CASES["setup_filter"], ids=lambda c: c["name"])
def test_setup_filter_matches_reference(case):
    out = setup_filter(case["f"], **case["kwargs"])
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, case["out"], rtol=0, atol=1e-7)


@pytest.mark.parametrize("case", CASES["upfirdn2d"], ids=lambda c: c["name"])
def test_upfirdn2d_matches_reference(case):
    x = case["x"].clone().requires_grad_(True)
    out = upfirdn2d(x, case["f"], case["up"], case["down"], case["padding"], case["flip_filter"],
                    case["gain"])
    torch.testing.assert_close(out, case["out"], rtol=0, atol=_atol(case["name"]))
    if case.get("dx") is not None:
        (dx,) = torch.autograd.grad(out, x, case["dy"])
        torch.testing.assert_close(dx, case["dx"], rtol=0, atol=_atol(case["name"]))


@pytest.mark.parametrize("case", [c for c in CASES["upfirdn2d"] if c["helper"]],
                         ids=lambda c: c["name"])
def test_helpers_match_reference(case):
    helper = dict(case["helper"])
    fn = HELPERS[helper.pop("fn")]
    out = fn(case["x"], case["f"], **helper)
    torch.testing.assert_close(out, case["out"], rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "up,down,padding,flip",
    [(2, 1, [2, 1, 2, 1], False), (1, 2, [1, 1, 1, 1], True), ([2, 1], [1, 2], [0, 1, -1, 2], False)],
)
def test_upfirdn2d_second_derivative(up, down, padding, flip):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn([1, 2, 5, 6], dtype=torch.float64, generator=gen, requires_grad=True)
    f = torch.rand([3, 4], generator=gen)
    fn = lambda t: upfirdn2d(t, f, up, down, padding, flip, gain=1.5)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_output_size_formula():
    x = torch.zeros([2, 3, 7, 9])
    f = setup_filter([1, 3, 3, 1])
    out = upfirdn2d(x, f, up=2, down=1, padding=[2, 1, 2, 1])
    assert out.shape == (2, 3, 14, 18)
    assert downsample2d(x[:, :, :6, :8], f).shape == (2, 3, 3, 4)


def test_empty_output_is_a_clear_error():
    x = torch.zeros([1, 1, 2, 2])
    with pytest.raises(ValueError, match="output would be empty"):
        upfirdn2d(x, setup_filter([1, 3, 3, 1]), padding=-2)


@pytest.mark.parametrize("bad", [0, [1, 0], 1.5])
def test_bad_factor_names_the_value(bad):
    with pytest.raises(ValueError, match="resampling factor"):
        upfirdn2d(torch.zeros([1, 1, 4, 4]), None, up=bad)


def test_filter_must_be_float32():
    with pytest.raises(ValueError, match="float32"):
        upfirdn2d(torch.zeros([1, 1, 4, 4]), torch.ones([2, 2], dtype=torch.float64))


def test_channels_last_input_gives_same_result():
    x = torch.randn([2, 4, 8, 8])
    f = setup_filter([1, 3, 3, 1])
    ref = upsample2d(x, f)
    out = upsample2d(x.to(memory_format=torch.channels_last), f)
    torch.testing.assert_close(out, ref)
