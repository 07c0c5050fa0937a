"""upfirdn2d and its helpers against the reference's golden vectors and float64 gradchecks."""
import pytest
import torch

from stylegan2_ops import downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d
from stylegan2_ops.upfirdn2d import parse_padding, resample_padding
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


def _by_definition(x, f, up, down, pads, flip_filter, gain):
    """upfirdn2d spelled out step by step (zeros inserted, padded, filtered at the full rate,
    then subsampled): the oracle for the strided and transposed-conv forms the op uses."""
    (upx, upy), (downx, downy) = up, down
    n, c, h, w = x.shape
    z = x.new_zeros([n, c, h * upy, w * upx])
    z[:, :, ::upy, ::upx] = x
    z = torch.nn.functional.pad(z, list(pads))
    if f is None:
        f = torch.ones([1, 1])
    f = f if f.ndim == 2 else torch.outer(f, f)
    f = (f * gain ** (1 if f.ndim == 2 else 0)).to(x.dtype)
    kernel = f if flip_filter else f.flip([0, 1])
    y = torch.nn.functional.conv2d(z.reshape(n * c, 1, *z.shape[2:]), kernel[None, None])
    return y.reshape(n, c, *y.shape[2:])[:, :, ::downy, ::downx]


FAST_PATH_CASES = [
    # (up, down, padding, filter taps, separable, flip)
    ((2, 2), (1, 1), (2, 1, 2, 1), 4, False, False),  # upsample2d
    ((2, 2), (1, 1), (1, 1, 1, 1), 4, False, True),
    ((2, 2), (1, 1), (-1, 0, 3, -2), 4, False, False),  # cropping and padding while upsampling
    ((3, 1), (1, 1), (0, 2, 1, 1), 3, True, False),
    ((1, 1), (2, 2), (1, 1, 1, 1), 4, False, False),  # downsample2d
    ((1, 1), (2, 2), (2, 2, 2, 2), 4, False, True),  # conv pre-filter, strided
    ((1, 1), (2, 3), (0, 3, -1, 1), 4, True, False),
    ((1, 1), (1, 1), (2, 1, 2, 1), 4, False, False),  # filter2d, asymmetric
    ((2, 2), (2, 2), (1, 2, 1, 2), 4, False, False),  # up and down at once
    ((2, 1), (1, 1), (1, 0, 0, 0), None, False, False),  # identity filter
    ((1, 1), (2, 2), (-1, -1, 0, 1), None, False, False),
]


@pytest.mark.parametrize("up,down,pads,taps,separable,flip", FAST_PATH_CASES)
def test_fast_forms_equal_the_definition_to_second_order(up, down, pads, taps, separable, flip):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn([2, 3, 7, 6], dtype=torch.float64, generator=gen, requires_grad=True)
    # Small integer taps and gain 4 (gain 2 per separable pass) are exact in float32, so the
    # forms can be held to float64 rounding.
    shape = [taps] if separable else [taps, taps]
    f = None if taps is None else torch.randint(1, 6, shape, generator=gen).float()
    expected = _by_definition(x, f, up, down, pads, flip, 4.0)
    out = upfirdn2d(x, f, up, down, list(pads), flip, 4.0)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    dy = torch.randn(out.shape, dtype=torch.float64, generator=gen)
    (dx,) = torch.autograd.grad(out, x, dy, create_graph=True)
    (dx_expected,) = torch.autograd.grad(expected, x, dy, create_graph=True)
    torch.testing.assert_close(dx, dx_expected, rtol=1e-12, atol=1e-12)
    if f is not None:
        fn = lambda t: upfirdn2d(t, f, up, down, list(pads), flip, 4.0)  # noqa: E731
        assert torch.autograd.gradgradcheck(fn, (x[:1, :1].detach().requires_grad_(True),))


@pytest.mark.parametrize("f,up,down,padding", [
    ([1, 3, 3, 1], 2, 1, 1), ([1, 3, 3, 1], 1, 2, 1), ([1, 2, 1], 1, 3, 0), (None, 2, 1, 0),
    ([1, 3, 3, 1, 1, 3, 3, 1], 4, 1, [0, 1, 2, 3])])
def test_resample_padding_sizes_the_output_by_the_rates_alone(f, up, down, padding):
    # Whatever the filter, the resampled image is (size * up + user padding) // down: the
    # filter's own padding exactly makes up for the samples it consumes.
    f = setup_filter(f) if f is not None else None
    pads = resample_padding(f, up=up, down=down, padding=padding)
    out = upfirdn2d(torch.ones([1, 1, 16, 16]), f, up=up, down=down, padding=pads)
    px0, px1, py0, py1 = parse_padding(padding)
    assert out.shape[-1] == (16 * up + px0 + px1) // down
    assert out.shape[-2] == (16 * up + py0 + py1) // down
