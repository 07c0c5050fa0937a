"""bias_act: every activation, gain and clamp, first and second derivatives, vs the reference."""
import pytest
import torch

from stylegan2_ops import ACTIVATIONS, bias_act
from tests.conftest import DATA_DIR

CASES = torch.load(DATA_DIR / "reference_ops.pt", weights_only=True)["bias_act"]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["name"])
def test_bias_act_matches_reference_to_second_order(case):
    x = case["x"].clone().requires_grad_(True)
    b = None if case["b"] is None else case["b"].clone().requires_grad_(True)
    g = case["g"].clone().requires_grad_(True)
    out = bias_act(x, b, case["dim"], case["act"], case["alpha"], case["gain"], case["clamp"])
    torch.testing.assert_close(out, case["out"], rtol=1e-13, atol=1e-13)

    inputs = [x] + ([b] if b is not None else [])
    grads = torch.autograd.grad((out * g).sum(), inputs, create_graph=True)
    torch.testing.assert_close(grads[0], case["grad_x"], rtol=1e-13, atol=1e-13)
    if b is not None:
        torch.testing.assert_close(grads[1], case["grad_b"], rtol=1e-13, atol=1e-13)

    s = grads[0].square().sum()
    second = torch.autograd.grad(s, [x, g] + ([b] if b is not None else []), allow_unused=True)
    second = [torch.zeros_like(t) if d is None else d for d, t in zip(second, [x, g, b])]
    torch.testing.assert_close(second[0], case["grad2_x"], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(second[1], case["grad2_g"], rtol=1e-12, atol=1e-12)
    if b is not None:
        torch.testing.assert_close(second[2], case["grad2_b"], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_gradgradcheck_every_activation(act):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn([2, 3, 4], dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn([3], dtype=torch.float64, generator=gen, requires_grad=True)
    fn = lambda x, b: bias_act(x, b, act=act, gain=1.3, clamp=2.5)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


def test_defaults_follow_the_table():
    x = torch.tensor([[-1.0, 2.0]])
    torch.testing.assert_close(bias_act(x, act="lrelu"), torch.tensor([[-0.2, 2.0]]) * 2**0.5)
    torch.testing.assert_close(bias_act(x, act="lrelu", clamp=1.0), torch.tensor([[-0.2 * 2**0.5, 1.0]]))


def test_half_precision_keeps_dtype():
    x = torch.randn([2, 4, 3, 3]).half()
    out = bias_act(x, torch.randn([4]), act="lrelu", clamp=256)
    assert out.dtype == torch.float16


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"act": "gelu"}, "unknown activation 'gelu'; allowed: linear"),
        ({"b": torch.zeros(5)}, "bias must be 1-D with 4 entries"),
        ({"clamp": -1.0}, "clamp must be >= 0"),
        ({"dim": 4}, "dim=4 is out of range"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bias_act(torch.zeros([2, 4, 3, 3]), **kwargs)


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
@pytest.mark.parametrize("with_bias", [True, False])
def test_inference_path_equals_autograd_path_and_leaves_input_alone(act, with_bias):
    gen = torch.Generator().manual_seed(5)
    x = torch.randn([2, 4, 3, 5], generator=gen)
    b = torch.randn([4], generator=gen) if with_bias else None
    original = x.clone()
    with torch.enable_grad():
        want = bias_act(x.clone().requires_grad_(True), b, act=act, gain=1.7, clamp=0.8)
    with torch.no_grad():
        got = bias_act(x, b, act=act, gain=1.7, clamp=0.8)
        plain = bias_act(x, b, act=act)
    assert torch.equal(got, want.detach())
    assert torch.equal(x, original)
    assert plain is not x or (act == "linear" and b is None)


@pytest.mark.parametrize("act", ["lrelu", "linear", "tanh"])
def test_overwrite_computes_into_x_only_without_a_graph(act):
    gen = torch.Generator().manual_seed(6)
    x, b = torch.randn([2, 4, 3, 5], generator=gen), torch.randn([4], generator=gen)
    want = bias_act(x, b, act=act, gain=1.7, clamp=0.8)
    with torch.no_grad():
        mine = x.clone()
        got = bias_act(mine, b, act=act, gain=1.7, clamp=0.8, overwrite=True)
    assert torch.equal(got, want)
    assert got.data_ptr() == mine.data_ptr() and torch.equal(mine, want)  # written into x
    # While autograd records, x stays as it was and the gradient is the plain path's.
    leaf = x.clone().requires_grad_(True)
    got = bias_act(leaf, b, act=act, gain=1.7, clamp=0.8, overwrite=True)
    assert torch.equal(leaf.detach(), x) and torch.equal(got.detach(), want)
    grad, = torch.autograd.grad(got.sum(), leaf)
    want_grad, = torch.autograd.grad(bias_act(leaf, b, act=act, gain=1.7, clamp=0.8).sum(), leaf)
    assert torch.equal(grad, want_grad)
