"""ADA augmentation pipe and p controller: golden reference outputs, per-stage definitions,
p = 0 identity, gradients of first and second order, and the controller's update rule."""
import math

import pytest
import torch

from sg2_container.errors import UserError
from sg2_container.options.choices import AUGPIPE_PRESETS, COLOR, GEOMETRIC
from sg2_container.training.augment import (
    AdaController,
    AugmentPipe,
    _Draws,
    build_augment_pipe,
)
from tests.conftest import DATA_DIR

GOLDEN = torch.load(DATA_DIR / "reference_ops.pt", weights_only=True)
SWITCHES = GEOMETRIC + COLOR + ("imgfilter", "noise", "cutout")
# One full-circle cosine per image side: smooth enough that resampling barely blurs it.
_YY, _XX = torch.meshgrid(torch.arange(32) + 0.5, torch.arange(32) + 0.5, indexing="ij")
SMOOTH = torch.stack([torch.cos(2 * math.pi * (a * _XX + b * _YY) / 32 + c)
                      for a, b, c in [(1, 0, 0.3), (0, 1, 1.0), (1, 1, 2.0)]])[None]


def _images(shape=(2, 3, 32, 32), seed=0, dtype=torch.float32):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# --- golden data ------------------------------------------------------------------------------

def test_buffers_match_reference():
    state = AugmentPipe().state_dict()
    golden = GOLDEN["augment_buffers"]
    assert list(state) == ["p", "Hz_geom", "Hz_fbank"]
    assert state["p"].shape == () and state["p"].dtype == torch.float32 and state["p"].item() == 1
    for name in ("Hz_geom", "Hz_fbank"):
        assert state[name].dtype == torch.float32
        torch.testing.assert_close(state[name], golden[name], rtol=0, atol=1e-6)


@pytest.mark.parametrize("case", GOLDEN["augment"], ids=lambda c: c["name"])
def test_matches_reference(case):
    out = AugmentPipe(**case["kwargs"]).eval()(case["x"], debug_percentile=case["debug_percentile"])
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, case["out"], rtol=1e-4, atol=5e-5)


# --- presets ----------------------------------------------------------------------------------

def test_presets_set_exactly_the_listed_switches():
    assert list(AUGPIPE_PRESETS) == ["blit", "geom", "color", "filter", "noise", "cutout", "bg",
                                     "bgc", "bgcf", "bgcfn", "bgcfnc"]
    assert set(AUGPIPE_PRESETS["bgc"]) == set(GEOMETRIC + COLOR)
    assert set(AUGPIPE_PRESETS["bgcfnc"]) == set(SWITCHES)
    for name, kwargs in AUGPIPE_PRESETS.items():
        pipe = build_augment_pipe(name)
        assert {s for s in SWITCHES if getattr(pipe, s) == 1} == set(kwargs), name
        assert all(getattr(pipe, s) == 0 for s in SWITCHES if s not in kwargs), name


def test_unknown_preset_names_the_allowed_ones():
    with pytest.raises(UserError, match=r"'bgcx'.*blit, geom, .*bgcfnc"):
        build_augment_pipe("bgcx")


# --- bad input ----------------------------------------------------------------------------------

def test_two_channel_images_with_colour_ops_fail_clearly():
    with pytest.raises(UserError, match="got 2"):
        build_augment_pipe("bgc")(_images((2, 2, 32, 32)))
    assert build_augment_pipe("bg")(_images((2, 2, 32, 32))).shape == (2, 2, 32, 32)


def test_bad_arguments():
    with pytest.raises(UserError, match="larger than 21 pixels"):
        AugmentPipe(imgfilter=1)(_images((1, 3, 16, 16)))
    with pytest.raises(ValueError, match="xflip"):
        AugmentPipe(xflip=-1)
    with pytest.raises(ValueError, match="debug_percentile"):
        AugmentPipe(xflip=1)(_images(), debug_percentile=1.5)
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        AugmentPipe(xflip=1)(torch.zeros(3, 32, 32))


# --- p = 0 and p = 1 ----------------------------------------------------------------------------

@pytest.mark.parametrize("switch", SWITCHES)
def test_p0_is_identity(switch):
    pipe = AugmentPipe(**{switch: 1})
    pipe.p.zero_()
    x = _images((4, 3, 32, 32))
    out = pipe(x, generator=torch.Generator().manual_seed(1))
    if switch in GEOMETRIC:  # the resampling still runs for every image, as in the reference
        torch.testing.assert_close(out, x, rtol=0, atol=1e-5)
    elif switch == "imgfilter":  # the bands sum to a unit impulse up to float32 rounding
        torch.testing.assert_close(out, x, rtol=0, atol=1e-6)
    else:
        assert torch.equal(out, x)


def test_random_draws_follow_torch_seed():
    pipe = build_augment_pipe("bgcfnc")
    x = _images()
    torch.manual_seed(3)
    a = pipe(x)
    torch.manual_seed(3)
    b = pipe(x)
    c = pipe(x, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.dtype == x.dtype


def test_xflip_chooses_the_mirror():
    # The matrix is the exact mirror; the output is the mirror up to the resampling filter:
    # sym6 is not symmetric, so after a mirror its up/down delays add (~0.2 px) instead of cancel.
    pipe = AugmentPipe(xflip=1)
    draws = _Draws(2, 0.75, torch.float32, "cpu", None)
    G_inv = pipe._geometric_matrix(draws, pipe.p, (2, 3, 32, 32))
    assert torch.equal(G_inv, torch.diag(torch.tensor([-1.0, 1, 1])).expand(2, 3, 3))
    out = pipe(SMOOTH, debug_percentile=0.75)
    torch.testing.assert_close(out, SMOOTH.flip(3), rtol=0, atol=0.05)
    torch.testing.assert_close(pipe(SMOOTH, debug_percentile=0.25), SMOOTH, rtol=0, atol=1e-5)


@pytest.mark.parametrize("q, k", [(0.1, 0), (0.3, 1), (0.6, 2), (0.9, 3)])
def test_rotate90_turns_by_multiples_of_90_degrees(q, k):
    out = AugmentPipe(rotate90=1)(SMOOTH, debug_percentile=q)
    errors = [(out - torch.rot90(SMOOTH, j, dims=(2, 3))).abs().max().item() for j in range(4)]
    assert errors[k] < 0.06 and min(e for j, e in enumerate(errors) if j != k) > 0.5


def test_random_rotate90_gives_one_of_four_rotations():
    x = SMOOTH.expand(8, 3, 32, 32)
    out = AugmentPipe(rotate90=1)(x, generator=torch.Generator().manual_seed(0))
    for i in range(8):
        errors = [(out[i] - torch.rot90(x[i], j, dims=(1, 2))).abs().max() for j in range(4)]
        assert min(errors) < 0.06


@pytest.mark.parametrize("switch", ["xint", "scale", "rotate", "aniso", "xfrac"])
def test_median_draw_of_continuous_geometry_is_identity(switch):
    x = _images()
    torch.testing.assert_close(AugmentPipe(**{switch: 1})(x, debug_percentile=0.5), x,
                               rtol=0, atol=1e-5)


def test_xint_shifts_by_whole_pixels():
    # q = 0.9: t = 0.8 * 0.125 = 0.1 of the size, i.e. round(3.2) = 3 pixels in x and y.
    out = AugmentPipe(xint=1)(SMOOTH, debug_percentile=0.9)
    shifted = torch.roll(SMOOTH, shifts=(3, 3), dims=(2, 3))
    torch.testing.assert_close(out[..., 3:, 3:], shifted[..., 3:, 3:], rtol=0, atol=1e-5)


def _normal_quantile(q):
    return torch.erfinv(torch.tensor(2 * q - 1, dtype=torch.float64)).item()


def test_brightness_adds_a_constant():
    x = _images()
    out = AugmentPipe(brightness=1)(x, debug_percentile=0.8)
    torch.testing.assert_close(out - x, torch.full_like(x, _normal_quantile(0.8) * 0.2),
                               rtol=0, atol=1e-6)


def test_contrast_scales():
    x = _images()
    out = AugmentPipe(contrast=1)(x, debug_percentile=0.2)
    torch.testing.assert_close(out, x * 2 ** (_normal_quantile(0.2) * 0.5), rtol=1e-6, atol=1e-6)


def test_lumaflip_reflects_through_the_grey_plane():
    x = _images()
    out = AugmentPipe(lumaflip=1)(x, debug_percentile=0.7)
    torch.testing.assert_close(out, x - 2 * x.mean(dim=1, keepdim=True), rtol=0, atol=1e-6)
    assert torch.equal(AugmentPipe(lumaflip=1)(x, debug_percentile=0.3), x)


@pytest.mark.parametrize("switch", ["hue", "saturation"])
def test_hue_and_saturation_keep_luma(switch):
    x = _images()
    out = AugmentPipe(**{switch: 1})(x, debug_percentile=0.8)
    torch.testing.assert_close(out.mean(dim=1), x.mean(dim=1), rtol=0, atol=1e-6)
    chroma_in = (x - x.mean(dim=1, keepdim=True)).norm(dim=1)
    chroma_out = (out - out.mean(dim=1, keepdim=True)).norm(dim=1)
    factor = 1 if switch == "hue" else 2 ** _normal_quantile(0.8)  # rotation keeps chroma length
    torch.testing.assert_close(chroma_out, chroma_in * factor, rtol=1e-5, atol=1e-5)
    assert (out - x).abs().max() > 0.1


def test_hue_and_saturation_skip_grey_images():
    x = _images((2, 1, 32, 32))
    assert torch.equal(AugmentPipe(hue=1, saturation=1)(x, debug_percentile=0.8), x)


def test_noise_adds_gaussian_noise_of_the_drawn_sigma():
    x = torch.zeros(2, 3, 64, 64)
    out = AugmentPipe(noise=1)(x, debug_percentile=0.7, generator=torch.Generator().manual_seed(0))
    sigma = torch.erfinv(torch.tensor(0.7)).item() * 0.1
    assert out.std(dim=(1, 2, 3)).sub(sigma).abs().max() < 0.03 * sigma
    assert out.mean().abs() < 0.02 * sigma


def test_cutout_zeroes_a_square():
    x = _images()
    out = AugmentPipe(cutout=1)(x, debug_percentile=0.5)  # centre (0.5, 0.5), side 16 px
    inside = torch.zeros(32, 32, dtype=torch.bool)
    inside[8:24, 8:24] = True
    assert torch.equal(out[..., inside], torch.zeros_like(out[..., inside]))
    assert torch.equal(out[..., ~inside], x[..., ~inside])


def test_imgfilter_median_draw_is_identity_and_others_change_detail():
    pipe = AugmentPipe(imgfilter=1)
    x = _images()
    torch.testing.assert_close(pipe(x, debug_percentile=0.5), x, rtol=0, atol=1e-6)
    assert (pipe(x, debug_percentile=0.9) - x).abs().max() > 0.05


# --- gradients ----------------------------------------------------------------------------------

def test_gradient_reaches_the_input():
    x = _images().requires_grad_(True)
    out = build_augment_pipe("bgcfnc")(x, generator=torch.Generator().manual_seed(0))
    (out * _images(seed=1)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0 and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("q", [0.3, 0.85])
def test_second_order_gradients_of_the_geometric_pipe(q):
    pipe = build_augment_pipe("bg")
    x = _images((1, 1, 6, 6), dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradgradcheck(lambda t: pipe(t, debug_percentile=q), (x,))


def test_second_order_gradients_with_colour():
    pipe = build_augment_pipe("bgc")
    x = _images((1, 3, 8, 8), dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradgradcheck(lambda t: pipe(t, debug_percentile=0.85), (x,),
                                        fast_mode=True)


def test_gradients_of_the_image_filter():
    pipe = AugmentPipe(imgfilter=1, cutout=1)
    x = _images((1, 1, 24, 24), dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: pipe(t, debug_percentile=0.85), (x,), fast_mode=True)
    assert torch.autograd.gradgradcheck(lambda t: pipe(t, debug_percentile=0.85), (x,),
                                        fast_mode=True)


# --- ADA controller -----------------------------------------------------------------------------

def _expected_p(p, direction, batch_size=32, interval=4, kimg=500):
    step = batch_size * interval / (kimg * 1000)
    return (torch.tensor(p, dtype=torch.float32) + direction * step).clamp(min=0).item()


def test_controller_raises_p_when_d_overfits():
    pipe = AugmentPipe()
    pipe.p.fill_(0.25)
    ada = AdaController(pipe, target=0.6, batch_size=32)
    for i in range(3):
        ada.accumulate(torch.tensor([[1.0], [2.0], [-1.0], [3.0]]))  # r_t = 0.5 so far
        assert ada.step() is None and pipe.p.item() == 0.25
    ada.accumulate(torch.ones(4, 1) * 5)
    assert ada.step() == pytest.approx((3 * 2 + 4) / 16)  # 0.625 > 0.6
    assert pipe.p.item() == _expected_p(0.25, +1)


def test_controller_lowers_p_but_not_below_zero():
    pipe = AugmentPipe()
    pipe.p.fill_(0.0005)
    ada = AdaController(pipe, target=0.6, batch_size=32, interval=2, kimg=100)
    ada.accumulate(-torch.ones(8, 1))
    ada.step()
    ada.step()
    assert pipe.p.item() == _expected_p(0.0005, -1, interval=2, kimg=100)
    for _ in range(4):
        ada.accumulate(-torch.ones(8, 1))
        ada.step()
    assert pipe.p.item() == 0


def test_controller_holds_p_at_target_and_without_data():
    pipe = AugmentPipe()
    pipe.p.fill_(0.5)
    ada = AdaController(pipe, target=0.5, batch_size=8, interval=1)
    ada.accumulate(torch.tensor([1.0, 1.0, 1.0, -1.0]))
    assert ada.step() == 0.5 and pipe.p.item() == 0.5
    assert ada.step() is None and pipe.p.item() == 0.5  # nothing accumulated
    with pytest.raises(UserError, match="target"):
        AdaController(pipe, target=1.5, batch_size=8)


def test_controller_reduce_hook_sees_the_sums():
    pipe = AugmentPipe()
    ada = AdaController(pipe, target=0.6, batch_size=4, interval=1)
    ada.accumulate(torch.tensor([1.0, -1.0, 1.0]))
    seen = []

    def double(stats):  # stands in for an all-reduce over two identical ranks
        seen.append(stats.tolist())
        stats.mul_(2)

    assert ada.step(reduce=double) == pytest.approx(1 / 3)
    assert seen == [[1.0, 3.0]]


def test_controller_state_round_trip():
    def run(ada, logits):
        for t in logits:
            ada.accumulate(t)
            ada.step()

    logits = [torch.randn(4, 1, generator=torch.Generator().manual_seed(i)) + 1.0
              for i in range(11)]
    pipe_a = AugmentPipe()
    pipe_a.p.zero_()
    ada_a = AdaController(pipe_a, target=0.6, batch_size=16)
    run(ada_a, logits)

    pipe_b = AugmentPipe()
    pipe_b.p.zero_()
    ada_b = AdaController(pipe_b, target=0.6, batch_size=16)
    run(ada_b, logits[:6])  # stopped mid-interval
    state, pipe_state = ada_b.state_dict(), pipe_b.state_dict()
    assert all(isinstance(v, (int, float, type(None))) for v in state.values())
    pipe_c = AugmentPipe()
    pipe_c.load_state_dict(pipe_state)
    ada_c = AdaController(pipe_c, target=0.6, batch_size=16)
    ada_c.load_state_dict(state)
    run(ada_c, logits[6:])
    assert ada_c.state_dict() == ada_a.state_dict()
    assert torch.equal(pipe_c.p, pipe_a.p) and pipe_a.p.item() > 0
    with pytest.raises(ValueError, match="keys"):
        ada_c.load_state_dict({"sign_sum": 0})


@pytest.mark.parametrize("name", ["bgc", "bgcfnc"])
def test_no_tensor_is_made_from_python_data_per_call(monkeypatch, name):
    """On a GPU each tensor built from Python numbers is a blocking host-to-device copy (the
    CPU waits for the GPU's queue to drain); the pipe runs on every D pass of every round, so
    after its first call it builds none: numbers are filled in on the device, constants kept."""
    pipe = build_augment_pipe(name)
    pipe.p.fill_(0.7)
    images = _images((4, 3, 32, 32))
    controller = AdaController(pipe, target=0.6, batch_size=4)
    pipe(images)  # the first call may make the constants it keeps
    made = []

    def counting(original):
        def wrapper(data, *args, **kwargs):
            if not isinstance(data, torch.Tensor):
                made.append(data)
            return original(data, *args, **kwargs)
        return wrapper

    monkeypatch.setattr(torch, "tensor", counting(torch.tensor))
    monkeypatch.setattr(torch, "as_tensor", counting(torch.as_tensor))
    new_tensor = torch.Tensor.new_tensor
    monkeypatch.setattr(torch.Tensor, "new_tensor",
                        lambda self, data, *a, **k: counting(lambda d, *a, **k: new_tensor(
                            self, d, *a, **k))(data, *a, **k))
    for _ in range(2):
        out = pipe(images)
        controller.accumulate(out.mean(dim=[1, 2, 3]))
    assert made == []
