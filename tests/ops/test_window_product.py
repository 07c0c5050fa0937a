"""stylegan2_ops.window_product: strided convs' weight gradients as one matrix product, against
torch's in float64, and where stylegan2_ops.conv takes it."""
import pytest
import torch
import torch.nn.functional as F

from stylegan2_ops import window_product
from stylegan2_ops.convolution import ConvSpec, conv

CL = torch.channels_last


def _channels_last(*shape, gen):
    return torch.randn(*shape, generator=gen).contiguous(memory_format=CL)


def _torch_weight_grad(x, grad, weight_shape, stride, transpose):
    w = torch.zeros(weight_shape, dtype=torch.float64, requires_grad=True)
    op = F.conv_transpose2d if transpose else F.conv2d
    (grad_w,) = torch.autograd.grad(op(x.double(), w, stride=stride), w, grad.double())
    return grad_w


def _relative_error(ours, reference):
    return ((ours.double() - reference).abs().max() / reference.abs().max()).item()


# (x shape, weight shape, stride): the discriminator's stride-2 3x3 conv (after its blur: odd
# size), a filter and stride that differ by axis, windows that leave the last rows unused.
FORWARD = [((3, 6, 13, 13), (5, 6, 3, 3), (2, 2)),
           ((2, 4, 11, 8), (7, 4, 3, 2), (2, 1)),
           ((2, 3, 10, 10), (4, 3, 3, 3), (3, 3))]


@pytest.mark.parametrize("x_shape,w_shape,stride", FORWARD)
@pytest.mark.parametrize("pieces", ["row", "rows", "images", "all"])
def test_forward_conv_weight_grad_equals_torchs(x_shape, w_shape, stride, pieces):
    # The windows go through in pieces: one output row of one image at a time, blocks of 4 rows
    # (an uneven last block), 2 images at a time (an uneven last chunk), all at once.
    gen = torch.Generator().manual_seed(sum(x_shape))
    x = _channels_last(*x_shape, gen=gen)
    y_shape = F.conv2d(x, torch.zeros(w_shape), stride=stride).shape
    grad = _channels_last(*y_shape, gen=gen)
    row_bytes = y_shape[3] * w_shape[1] * w_shape[2] * w_shape[3] * 4
    chunk_bytes = {"row": row_bytes, "rows": 4 * row_bytes, "images": 2 * y_shape[2] * row_bytes,
                   "all": window_product.CHUNK_BYTES}[pieces]
    ours = window_product.weight_grad(x, grad, w_shape[2:], stride, transpose=False,
                                      chunk_bytes=chunk_bytes)
    assert ours.shape == w_shape
    assert _relative_error(ours, _torch_weight_grad(x, grad, w_shape, stride, False)) < 1e-6


@pytest.mark.parametrize("chunk_bytes", [1, window_product.CHUNK_BYTES])
def test_transposed_conv_weight_grad_equals_torchs(chunk_bytes):
    # The generator's upsampling conv: conv_transpose2d with stride 2, weight [in, out, 3, 3].
    gen = torch.Generator().manual_seed(4)
    x = _channels_last(3, 6, 5, 4, gen=gen)
    w_shape = (6, 5, 3, 3)
    y_shape = F.conv_transpose2d(x, torch.zeros(w_shape), stride=2).shape
    grad = _channels_last(*y_shape, gen=gen)
    ours = window_product.weight_grad(x, grad, (3, 3), (2, 2), transpose=True,
                                      chunk_bytes=chunk_bytes)
    assert ours.shape == w_shape
    assert _relative_error(ours, _torch_weight_grad(x, grad, w_shape, (2, 2), True)) < 1e-6


def test_an_empty_batch_gives_zeros():
    gen = torch.Generator().manual_seed(5)
    x = _channels_last(0, 4, 9, 9, gen=gen)
    grad = _channels_last(0, 3, 4, 4, gen=gen)
    assert torch.equal(window_product.weight_grad(x, grad, (3, 3), (2, 2), transpose=False),
                       torch.zeros(3, 4, 3, 3))


def test_suits_only_what_it_was_measured_on():
    gen = torch.Generator().manual_seed(6)
    x, grad, w = _channels_last(2, 4, 9, 9, gen=gen), _channels_last(2, 3, 4, 4, gen=gen), \
        torch.zeros(3, 4, 3, 3)
    plain = dict(stride=(2, 2), padding=(0, 0), groups=1, output_padding=(0, 0))
    assert window_product.suits(x, grad, w, **plain)
    assert not window_product.suits(x, grad, w, **{**plain, "stride": (1, 1)})
    assert not window_product.suits(x, grad, w, **{**plain, "padding": (1, 1)})
    assert not window_product.suits(x, grad, w, **{**plain, "groups": 2})
    assert not window_product.suits(x, grad, w, **{**plain, "output_padding": (1, 1)})
    assert not window_product.suits(x, grad, w[:, :, :1, :1], **plain)  # 1x1: already a product
    assert not window_product.suits(x.contiguous(), grad, w, **plain)
    assert not window_product.suits(x.double(), grad.double(), w.double(), **plain)


@pytest.mark.parametrize("transpose", [False, True], ids=["strided", "transposed"])
def test_conv_takes_it_for_the_weight_gradient_in_training(monkeypatch, transpose):
    # R1-shaped: the input gradient, then a backward through it, as the discriminator's and
    # the generator's strided convs see it in a training step.
    calls = []
    real = window_product.weight_grad
    monkeypatch.setattr(window_product, "weight_grad",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    gen = torch.Generator().manual_seed(7)
    x = _channels_last(2, 6, 9 if not transpose else 4, 9 if not transpose else 4, gen=gen)
    w = torch.randn(*((6, 5) if transpose else (5, 6)), 3, 3, generator=gen)
    spec = ConvSpec(stride=(2, 2), transpose=transpose)
    op = F.conv_transpose2d if transpose else F.conv2d
    results = []
    for fn, dtype in ((lambda a, b: conv(a, b, spec), torch.float32),
                      (lambda a, b: op(a, b, stride=2), torch.float64)):
        xs = x.detach().to(dtype).requires_grad_()
        ws = w.detach().to(dtype).requires_grad_()
        y = fn(xs, ws)
        (grad_x,) = torch.autograd.grad(y.square().sum(), xs, create_graph=True)
        (grad_x.square().sum() + y.sum()).backward()
        results.append((grad_x.detach(), ws.grad))
    assert calls, "the window product was not used"
    for ours, reference in zip(*results):
        assert _relative_error(ours, reference) < 1e-5
