"""stylegan2_ops.convolution: torch's values, and gradients of first, second and third order."""
import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

from stylegan2_ops import convolution as conv_module
from stylegan2_ops.convolution import ConvSpec, conv

# (spec, x shape, w shape): strided with dropped rows, depthwise, transposed with output padding.
CASES = [
    (ConvSpec(), (2, 3, 7, 6), (4, 3, 3, 3)),
    (ConvSpec(stride=(2, 2), padding=(1, 1)), (2, 3, 7, 8), (4, 3, 3, 3)),
    (ConvSpec(stride=(2, 1), padding=(0, 2), groups=3), (2, 6, 9, 5), (3, 2, 4, 3)),
    (ConvSpec(stride=(2, 2), groups=4), (1, 4, 9, 9), (4, 1, 4, 4)),
    (ConvSpec(stride=(2, 2), transpose=True), (2, 4, 4, 5), (4, 3, 3, 3)),
    (ConvSpec(stride=(2, 2), padding=(1, 0), transpose=True, output_padding=(1, 0), groups=2),
     (1, 4, 3, 4), (4, 2, 3, 2)),
]
IDS = ["plain", "strided", "grouped", "depthwise", "transposed", "transposed-grouped"]


def _torch_conv(x, w, spec):
    if spec.transpose:
        return F.conv_transpose2d(x, w, stride=spec.stride, padding=spec.padding,
                                  output_padding=spec.output_padding, groups=spec.groups)
    return F.conv2d(x, w, stride=spec.stride, padding=spec.padding, groups=spec.groups)


def _inputs(x_shape, w_shape, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(x_shape, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(w_shape, dtype=torch.float64, generator=gen, requires_grad=True)
    return x, w


@pytest.mark.parametrize("spec,x_shape,w_shape", CASES, ids=IDS)
def test_values_and_gradients_equal_torch(spec, x_shape, w_shape):
    x, w = _inputs(x_shape, w_shape)
    ours, theirs = conv(x, w, spec), _torch_conv(x, w, spec)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
    dy = torch.randn_like(ours)
    torch.testing.assert_close(torch.autograd.grad(ours, (x, w), dy),
                               torch.autograd.grad(theirs, (x, w), dy), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("spec,x_shape,w_shape", CASES, ids=IDS)
def test_first_and_second_derivatives_numerically(spec, x_shape, w_shape):
    x, w = _inputs(x_shape, w_shape)
    assert gradcheck(lambda a, b: conv(a, b, spec), (x, w))
    assert gradgradcheck(lambda a, b: conv(a, b, spec), (x, w))


def test_third_derivative_equals_torch():
    # R1 of an R1-like penalty: differentiate through two backward passes.
    spec = ConvSpec(stride=(2, 2), padding=(1, 1))
    results = []
    for fn in (conv, _torch_conv):
        x, w = _inputs((2, 3, 6, 6), (4, 3, 3, 3), seed=5)
        y = fn(x, w, spec).tanh()
        (gx,) = torch.autograd.grad(y.sum(), x, create_graph=True)
        (gw,) = torch.autograd.grad(gx.square().sum(), w, create_graph=True)
        results.append(torch.autograd.grad(gw.square().sum(), (x, w)))
    torch.testing.assert_close(results[0], results[1], rtol=1e-10, atol=1e-10)


def test_gradients_this_pass_does_not_use_are_not_computed(monkeypatch):
    # autograd.grad(inputs=x) must not run the weight-gradient routine (R1 asks for the
    # gradient w.r.t. the images only); backward() of a loss needs both.
    masks = []
    real = conv_module._backend_grads

    def recording(grad, x, w, spec, mask):
        masks.append(tuple(mask))
        return real(grad, x, w, spec, mask)

    monkeypatch.setattr(conv_module, "_backend_grads", recording)
    x, w = _inputs((2, 3, 6, 6), (4, 3, 3, 3))
    weight = w * 2  # a non-leaf weight, as the networks' scaled weights are
    y = conv(x, weight, ConvSpec(padding=(1, 1)))
    torch.autograd.grad(y.sum(), x, retain_graph=True)
    assert masks == [(True, False, False)]
    masks.clear()
    torch.autograd.grad(y.sum(), w, retain_graph=True)
    assert masks == [(False, True, False)]
    masks.clear()
    y.sum().backward()
    assert sorted(masks) == [(False, True, False), (True, False, False)]


@pytest.mark.parametrize("spec,x_shape,w_shape", CASES, ids=IDS)
def test_a_channels_last_input_gets_its_weight_converted_once(monkeypatch, spec, x_shape, w_shape):
    # The backend wants the weight in its input's layout; every routine of the forward and of
    # both backward passes must be handed it that way (no conversion of its own), and the
    # weight's gradient keeps the weight's layout.
    layouts = []
    real = conv_module._backend_grads

    def recording(grad, x, w, spec, mask):
        layouts.append(w.is_contiguous(memory_format=torch.channels_last))
        return real(grad, x, w, spec, mask)

    monkeypatch.setattr(conv_module, "_backend_grads", recording)
    results = []
    for channels_last in (True, False):
        x, w = _inputs(x_shape, w_shape, seed=2)
        x_in = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        y = conv(x_in, w, spec).tanh()
        (gx,) = torch.autograd.grad(y.sum(), x_in, create_graph=True)  # R1's double backward
        gx.square().sum().backward()
        results.append((y.detach(), gx.detach(), x.grad, w.grad))
        assert w.grad.is_contiguous()
        if channels_last:
            assert layouts and all(layouts), layouts
    for ours, plain in zip(*results):
        torch.testing.assert_close(ours, plain, rtol=1e-12, atol=1e-12)


def test_filters_without_gradient_get_none():
    x, _ = _inputs((1, 2, 5, 5), (2, 1, 3, 3))
    f = torch.ones([2, 1, 3, 3], dtype=torch.float64)
    y = conv(x, f, ConvSpec(groups=2))
    (gx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    gx.sum().backward()
    assert f.grad is None and x.grad is not None


def test_without_autograd_it_is_the_plain_op():
    x = torch.randn([1, 2, 5, 5])
    w = torch.randn([3, 2, 3, 3])
    with torch.no_grad():
        y = conv(x, w.requires_grad_(True), ConvSpec(padding=(1, 1)))
    assert y.grad_fn is None
    torch.testing.assert_close(y, F.conv2d(x, w, padding=1), rtol=0, atol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("spec,x_shape,w_shape", CASES, ids=IDS)
def test_cudnn_derivatives_equal_torch_to_second_order(spec, x_shape, w_shape):
    results = []
    for fn in (conv, _torch_conv):
        x, w = (t.detach().cuda().requires_grad_(True) for t in _inputs(x_shape, w_shape))
        (gx,) = torch.autograd.grad(fn(x, w, spec).tanh().sum(), x, create_graph=True)
        results.append(torch.autograd.grad(gx.square().sum(), (x, w)))
    torch.testing.assert_close(results[0], results[1], rtol=1e-10, atol=1e-10)
