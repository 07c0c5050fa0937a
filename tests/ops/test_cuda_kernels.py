"""The compiled kernels: custom-op wiring on CPU (always), kernels vs the PyTorch path on a GPU.

The CPU tests register a test-only CPU implementation of the three ops that follows the
kernels' contract (float64 math, derivative formulas as in bias_act_kernel.cu, the clamp mask
|y| >= clamp), so the schemas, fake impls and autograd formulas of stylegan2_ops._kernels are
checked here without a GPU. The `gpu` tests compare the real kernels with the reference path.
"""
import math

import pytest
import torch

from stylegan2_ops import _kernels, bias_act, setup_filter, upfirdn2d
from stylegan2_ops._backend import kernel_status
from stylegan2_ops._reference import (
    ACTIVATIONS,
    activation,
    bias_act_reference,
    upfirdn2d_reference,
)

OPS = torch.ops.stylegan2_ops
SELU_SCALE, SELU_ALPHA = 1.0507009873554805, 1.6732632423543772


# ---------------------------------------------------------------------------------------------
# A CPU stand-in for the kernels (test only)


def _derivative(act, z, alpha, order):
    """act'(z) or act''(z): the formulas bias_act_kernel.cu uses."""
    s = torch.sigmoid(z)
    t = torch.tanh(z)
    one, zero = torch.ones_like(z), torch.zeros_like(z)
    if order == 1:
        table = {
            "linear": one,
            "relu": torch.where(z > 0, one, zero),
            "lrelu": torch.where(z > 0, one, one * alpha),
            "tanh": 1 - t * t,
            "sigmoid": s * (1 - s),
            "elu": torch.where(z > 0, one, torch.exp(z)),
            "selu": SELU_SCALE * torch.where(z > 0, one, SELU_ALPHA * torch.exp(z)),
            "softplus": s,
            "swish": s * (1 + z * (1 - s)),
        }
    else:
        table = {
            "linear": zero,
            "relu": zero,
            "lrelu": zero,
            "tanh": -2 * t * (1 - t * t),
            "sigmoid": s * (1 - s) * (1 - 2 * s),
            "elu": torch.where(z > 0, zero, torch.exp(z)),
            "selu": torch.where(z > 0, zero, SELU_SCALE * SELU_ALPHA * torch.exp(z)),
            "softplus": s * (1 - s),
            "swish": s * (1 - s) * (2 + z * (1 - 2 * s)),
        }
    return table[act]


def _bias_shape(dim, ndim):
    return [-1 if i == dim else 1 for i in range(ndim)]


def _cpu_upfirdn2d(x, f, up, down, padding, flip_filter, gain):
    y = upfirdn2d_reference(x, f, tuple(up), tuple(down), tuple(padding), flip_filter, gain)
    fmt = torch.channels_last if _kernels._channels_last_output(x) else torch.contiguous_format
    return y.contiguous(memory_format=fmt)


def _cpu_bias_act(x, b, dim, act, alpha, gain, clamp):
    z = x.double() + (0 if b is None else b.double().reshape(_bias_shape(dim, x.ndim)))
    y = activation(act).func(z, alpha) * gain
    if clamp is not None:
        y = y.clamp(-clamp, clamp)
    return torch.empty_like(x).copy_(y)


def _cpu_bias_act_grad(dy, y, x, b, dim, act, alpha, gain, clamp, order):
    yd = y.double()
    if x is None:
        assert act in ("linear", "relu", "lrelu")
        slope = {"linear": 1.0, "relu": 0.0, "lrelu": alpha}[act]
        ones = torch.ones_like(yd)
        d = torch.where(yd > 0, ones, ones * slope) if order == 1 else torch.zeros_like(yd)
    else:
        z = x.double() + (0 if b is None else b.double().reshape(_bias_shape(dim, x.ndim)))
        d = _derivative(act, z, alpha, order)
    dx = dy.double() * d * gain
    if clamp is not None:  # against the clamp as stored in y's dtype, like the kernel
        acc = torch.float64 if y.dtype == torch.float64 else torch.float32
        stored_clamp = float(torch.tensor(clamp, dtype=acc).to(y.dtype))
        dx = torch.where(yd.abs() >= stored_clamp, 0.0, dx)
    return torch.empty_like(y).copy_(dx)


@pytest.fixture(scope="module")
def cpu_ops():
    """Registers the CPU stand-in for the duration of this module's CPU tests."""
    lib = torch.library.Library("stylegan2_ops", "IMPL")
    lib.impl("upfirdn2d", _cpu_upfirdn2d, "CPU")
    lib.impl("bias_act", _cpu_bias_act, "CPU")
    lib.impl("bias_act_grad", _cpu_bias_act_grad, "CPU")
    yield
    lib._destroy()


# ---------------------------------------------------------------------------------------------
# Wiring on CPU: fake impls, autograd formulas (any order for upfirdn2d, second for bias_act)

UPFIRDN_WIRING = [
    # (f taps or shape, up, down, padding, flip)
    ([1, 3, 3, 1], (2, 2), (1, 1), (2, 1, 2, 1), False),
    ([1, 3, 3, 1], (1, 1), (2, 2), (1, 1, 1, 1), True),
    ("rand3x4", (2, 1), (1, 2), (0, 1, -1, 2), False),
    ("sep5", (1, 2), (3, 1), (2, 2, 1, 3), True),
    (None, (2, 2), (1, 1), (0, 0, 0, 0), False),
]


def _filter(spec, gen):
    if spec is None:
        return None
    if spec == "rand3x4":
        return torch.rand([3, 4], generator=gen)
    if spec == "sep5":
        return torch.rand([5], generator=gen)
    return setup_filter(spec)


@pytest.mark.parametrize("spec,up,down,padding,flip", UPFIRDN_WIRING)
def test_upfirdn2d_op_wiring_matches_reference_to_second_order(cpu_ops, spec, up, down, padding, flip):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn([2, 3, 5, 6], dtype=torch.float64, generator=gen, requires_grad=True)
    f = _filter(spec, gen)
    via_op = lambda t: _kernels.upfirdn2d(t, f, up, down, padding, flip, 1.5)
    ref = lambda t: upfirdn2d_reference(t, f, up, down, padding, flip, 1.5)
    torch.testing.assert_close(via_op(x), ref(x), rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(via_op, (x,))
    assert torch.autograd.gradgradcheck(via_op, (x,))


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
@pytest.mark.parametrize("dim,shape", [(1, [2, 3, 4]), (0, [5]), (2, [2, 2, 3, 2])])
def test_bias_act_op_wiring_matches_reference_to_second_order(cpu_ops, act, dim, shape):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(shape, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn([shape[dim]], dtype=torch.float64, generator=gen, requires_grad=True)
    spec = activation(act)
    args = (dim, act, spec.default_alpha or 0.2, 1.3, 1.1)
    via_op = lambda x, b: _kernels.bias_act(x, b, *args)
    ref = lambda x, b: bias_act_reference(x, b, dim, spec, *args[2:])
    torch.testing.assert_close(via_op(x, b), ref(x, b), rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(via_op, (x, b))
    assert torch.autograd.gradgradcheck(via_op, (x, b))


def test_piecewise_linear_gradient_stays_differentiable_in_dy(cpu_ops):
    """lrelu's backward reads y only; R1 needs its result differentiable w.r.t. dy."""
    x = torch.randn([3, 4], dtype=torch.float64, requires_grad=True)
    y = _kernels.bias_act(x, None, 1, "lrelu", 0.2, 2.0, 0.5)
    dy = torch.randn_like(y).requires_grad_(True)
    (g,) = torch.autograd.grad(y, x, dy, create_graph=True)
    slope = torch.where(y.abs() >= 0.5, 0.0, torch.where(y > 0, 2.0, 0.4)).detach().double()
    torch.testing.assert_close(g, dy * slope)
    (d_dy,) = torch.autograd.grad(g.sum(), dy)
    torch.testing.assert_close(d_dy, slope)


def test_third_derivative_is_a_clear_error(cpu_ops):
    x = torch.randn([4], dtype=torch.float64, requires_grad=True)
    y = _kernels.bias_act(x, None, 0, "tanh", 0.0, 1.0, None)
    (g1,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    (g2,) = torch.autograd.grad(g1.sum(), x, create_graph=True)
    with pytest.raises(NotImplementedError, match="third and higher derivatives"):
        torch.autograd.grad(g2.sum(), x)


# opcheck's own fake-tensor conversion reads .grad of cloned inputs (a torch-internal warning).
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")
@pytest.mark.parametrize("channels_last", [False, True])
def test_opcheck_schemas_fake_impls_and_autograd(cpu_ops, channels_last):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn([2, 3, 6, 5], dtype=torch.float64).to(memory_format=fmt).requires_grad_(True)
    f = torch.rand([3, 4])
    b = torch.randn([3], dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(OPS.upfirdn2d.default, (x, f, [2, 1], [1, 2], [1, 2, 0, 1], False, 2.0))
    torch.library.opcheck(OPS.bias_act.default, (x, b, 1, "swish", 0.0, 1.4, 0.8))
    torch.library.opcheck(OPS.bias_act.default, (x, b, 1, "lrelu", 0.2, 1.4, None))
    y = OPS.bias_act(x.detach(), b.detach(), 1, "tanh", 0.0, 1.0, 0.9)
    dy = torch.randn_like(y).requires_grad_(True)
    torch.library.opcheck(OPS.bias_act_grad.default,
                          (dy, y, x, b, 1, "tanh", 0.0, 1.0, 0.9, 1))


def test_ops_trace_under_torch_compile(cpu_ops):
    """fullgraph tracing goes through the fake impls and the registered autograd."""
    f = setup_filter([1, 3, 3, 1])
    b = torch.randn([4], requires_grad=True)

    def step(x):
        y = _kernels.upfirdn2d(x, f, (2, 2), (1, 1), (2, 1, 2, 1), False, 4.0)
        y = _kernels.bias_act(y, b, 1, "lrelu", 0.2, math.sqrt(2), 1.0)
        return _kernels.upfirdn2d(y, f, (1, 1), (2, 2), (1, 1, 1, 1), False, 1.0).square().sum()

    x = torch.randn([2, 4, 5, 5], requires_grad=True)
    compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
    loss = compiled(x)
    loss.backward()
    grads = (x.grad.clone(), b.grad.clone())
    x.grad = b.grad = None
    step(x).backward()
    torch.testing.assert_close(loss, step(x).detach())
    torch.testing.assert_close(grads[0], x.grad)
    torch.testing.assert_close(grads[1], b.grad)


def test_tensors_beyond_the_kernels_32_bit_indexing_take_the_reference_path(monkeypatch):
    """The kernel refuses tensors over 2^31 - 1 elements (e.g. generating batch 64 at 1024 px):
    those take the reference path instead of failing; the limit is scaled down here."""
    import importlib

    from stylegan2_ops import _backend

    module = importlib.import_module("stylegan2_ops.upfirdn2d")  # the package exports the op
    calls = []
    monkeypatch.setattr(_backend, "resolve", lambda x, impl=None: "cuda")
    monkeypatch.setattr(_kernels, "upfirdn2d", lambda x, *args: calls.append(x.shape) or x)
    monkeypatch.setattr(module, "KERNEL_MAX_NUMEL", 2 * 4 * 16 * 16)
    f = setup_filter([1, 3, 3, 1])
    upfirdn2d(torch.randn([2, 4, 8, 8]), f, up=2, padding=[2, 1, 2, 1], gain=4)
    assert calls == [torch.Size([2, 4, 8, 8])]  # output 2 x 4 x 16 x 16: at the limit
    out = upfirdn2d(torch.randn([2, 4, 9, 9]), f, up=2, padding=[2, 1, 2, 1], gain=4)
    assert calls == [torch.Size([2, 4, 8, 8])] and out.shape == (2, 4, 18, 18)
    with pytest.raises(RuntimeError, match="impl 'cuda' was forced but the kernel indexes"):
        upfirdn2d(torch.randn([2, 4, 9, 9]), f, up=2, padding=[2, 1, 2, 1], gain=4, impl="cuda")


def test_public_ops_trace_with_fullgraph():
    """The public wrappers choose their path inside traced code: the loader (imports, logging,
    the self-check) must stay out of the graph, or fullgraph=True fails on every machine."""
    f = setup_filter([1, 3, 3, 1])
    b = torch.randn([4])

    def layer(x):
        y = upfirdn2d(x, f, up=2, padding=[2, 1, 2, 1], gain=4)
        return bias_act(y, b, act="lrelu", clamp=256.0)

    x = torch.randn([2, 4, 8, 8])
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), layer(x))


# ---------------------------------------------------------------------------------------------
# GPU: the kernels against the PyTorch path

def gpu_test(fn):
    """Marked `gpu` (deselected by default) and skipped where no CUDA device is visible."""
    fn = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")(fn)
    return pytest.mark.gpu(fn)


TOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
# The reference path scales the float32 filter by the gain in float32 before casting, so a
# float64 upfirdn2d can only match to float32 precision.
UPFIRDN_TOL = {**TOL, torch.float64: 1e-6}
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]


@pytest.fixture(scope="module")
def kernels():
    status = kernel_status()
    if not status.available:
        pytest.fail(f"GPU tests need the compiled kernels: {status.reason}")
    return status


def _close(actual, expected, tol):
    """Relative to each value, with an absolute floor scaled by the largest magnitude."""
    actual, expected = actual.detach().double(), expected.detach().double()
    scale = max(float(expected.abs().max()), 1.0) if expected.numel() else 1.0
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol * scale)


def _layout(x, layout):
    if layout == "channels_last":
        return x.to(memory_format=torch.channels_last)
    if layout == "strided":  # neither layout: a transposed view
        return x.transpose(2, 3).contiguous().transpose(2, 3)
    return x.contiguous()


UPFIRDN_GPU = [
    # (filter, up, down, padding): the networks' cases first (tiled kernels), then the general one
    ([1, 3, 3, 1], 2, 1, [2, 1, 2, 1]),
    ([1, 3, 3, 1], 1, 2, [1, 1, 1, 1]),
    ([1, 3, 3, 1], 1, 1, [1, 1, 1, 1]),
    ([1, 3, 3, 1], 1, 1, [2, 2, 2, 2]),
    ([1, 3, 3, 1], 2, 2, [3, 0, -1, 2]),
    ("rand3x5", [2, 1], [1, 3], [0, 3, -1, 2]),
    ("sep12", 2, 1, [6, 5, 6, 5]),
    ("sep12", 1, 2, [6, -1, 5, 4]),
    (None, 3, 1, [0, 0, 0, 0]),
    ([1, 2, 1], 4, 4, [1, 2, 3, 4]),
]


def _gpu_filter(spec, gen):
    if spec == "rand3x5":
        return torch.rand([3, 5], generator=gen).cuda()
    if spec == "sep12":
        return setup_filter(torch.rand([12], generator=gen) + 0.1, device="cuda")
    return None if spec is None else setup_filter(spec, device="cuda")


@gpu_test
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("shape", [[2, 3, 9, 10], [1, 8, 40, 67]], ids=str)
@pytest.mark.parametrize("spec,up,down,padding", UPFIRDN_GPU)
@pytest.mark.parametrize("flip,gain", [(False, 1.0), (True, 2.5)])
def test_upfirdn2d_kernel_equals_reference(kernels, dtype, layout, shape, spec, up, down, padding,
                                           flip, gain):
    gen = torch.Generator().manual_seed(3)
    f = _gpu_filter(spec, gen)
    x = _layout(torch.randn(shape, generator=gen).cuda().to(dtype), layout).requires_grad_(True)
    out = upfirdn2d(x, f, up, down, padding, flip, gain, impl="cuda")
    x64 = x.detach().double().requires_grad_(True)
    ref = upfirdn2d(x64, f, up, down, padding, flip, gain, impl="reference")
    assert out.dtype == dtype and out.shape == ref.shape
    if layout == "channels_last" and out.shape[1] > 1:
        assert out.is_contiguous(memory_format=torch.channels_last)
    _close(out, ref, UPFIRDN_TOL[dtype])

    dy = torch.randn(out.shape, generator=gen).cuda()
    (dx,) = torch.autograd.grad(out, x, dy.to(dtype))
    (dx_ref,) = torch.autograd.grad(ref, x64, dy.to(dtype).double())
    _close(dx, dx_ref, UPFIRDN_TOL[dtype])


@gpu_test
@pytest.mark.parametrize("spec,up,down,padding", UPFIRDN_GPU[:2] + UPFIRDN_GPU[5:7])
def test_upfirdn2d_kernel_gradcheck(kernels, spec, up, down, padding):
    gen = torch.Generator().manual_seed(4)
    f = _gpu_filter(spec, gen)
    x = torch.randn([1, 2, 6, 7], generator=gen, dtype=torch.float64).cuda().requires_grad_(True)
    fn = lambda t: upfirdn2d(t, f, up, down, padding, False, 1.5, impl="cuda")
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


BIAS_ACT_SHAPES = [([4, 7], 1), ([2, 5, 6, 7], 1), ([3, 4, 5], 2), ([9], 0), ([2, 1, 3, 3], 1)]


@gpu_test
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
@pytest.mark.parametrize("shape,dim", BIAS_ACT_SHAPES, ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("with_bias,alpha,gain,clamp",
                         [(True, None, None, None), (True, 0.3, 1.7, 0.9), (False, None, 0.5, 0.0)])
def test_bias_act_kernel_equals_reference(kernels, dtype, act, shape, dim, layout, with_bias, alpha,
                                          gain, clamp):
    if layout == "channels_last" and len(shape) != 4:
        pytest.skip("channels_last is 4-D only")
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(shape, generator=gen).mul(3).cuda().to(dtype)
    x = _layout(x, layout).requires_grad_(True)
    b = torch.randn([shape[dim]], generator=gen).cuda().to(dtype) if with_bias else None
    out = bias_act(x, b, dim, act, alpha, gain, clamp, impl="cuda")
    x64 = x.detach().double().requires_grad_(True)
    b64 = None if b is None else b.double()
    ref = bias_act(x64, b64, dim, act, alpha, gain, clamp, impl="reference")
    assert out.dtype == dtype and out.stride() == x.stride()
    _close(out, ref, TOL[dtype])

    # Gradient (zero beyond the clamp on both paths); values within rounding of the clamp are
    # left out: the kernel zeroes |y| >= clamp, PyTorch passes the gradient at exactly +-clamp.
    dy = torch.randn(shape, generator=gen).cuda().to(dtype)
    (dx,) = torch.autograd.grad(out, x, dy)
    (dx_ref,) = torch.autograd.grad(ref, x64, dy.double())
    keep = torch.ones_like(dx_ref, dtype=torch.bool)
    if clamp is not None:
        unclamped = bias_act(x64.detach(), b64, dim, act, alpha, gain, None, impl="reference")
        keep = (unclamped.abs() - clamp).abs() > 4 * TOL[dtype] * max(clamp, 1.0)
        assert (dx_ref[unclamped.abs() > clamp] == 0).all()
    _close(dx[keep], dx_ref[keep], TOL[dtype] * 4)


@gpu_test
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_bias_act_kernel_gradcheck_and_double_backward(kernels, act):
    gen = torch.Generator().manual_seed(6)
    x = torch.randn([2, 3, 4], generator=gen, dtype=torch.float64).cuda().requires_grad_(True)
    b = torch.randn([3], generator=gen, dtype=torch.float64).cuda().requires_grad_(True)
    fn = lambda x, b: bias_act(x, b, act=act, gain=1.3, clamp=2.5, impl="cuda")
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


@gpu_test
def test_ops_compile_and_capture_in_cuda_graphs(kernels):
    f = setup_filter([1, 3, 3, 1], device="cuda")
    b = torch.randn([8], device="cuda")

    def layer(x):
        y = upfirdn2d(x, f, up=2, padding=[2, 1, 2, 1], gain=4, impl="cuda")
        return bias_act(y, b, act="lrelu", clamp=256.0, impl="cuda")

    x = torch.randn([2, 8, 16, 16], device="cuda")
    expected = layer(x)
    compiled = torch.compile(layer, fullgraph=True)
    _close(compiled(x), expected, 1e-5)

    static_x = x.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        layer(static_x)  # warm-up outside the graph
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = layer(static_x)
    static_x.copy_(x * 2)
    graph.replay()
    _close(static_out, layer(x * 2), 1e-6)


def _tiny_networks(use_fp16: bool):
    from sg2_container.models.networks import Discriminator, Generator

    common = {"channel_base": 512, "channel_max": 32, "num_fp16_res": 2 if use_fp16 else 0,
              "conv_clamp": 256 if use_fp16 else None}
    torch.manual_seed(0)
    G = Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3,
                  mapping_kwargs={"num_layers": 2}, synthesis_kwargs=dict(common)).cuda()
    D = Discriminator(c_dim=0, img_resolution=32, img_channels=3, **common).cuda()
    return G, D


@gpu_test
@pytest.mark.parametrize("use_fp16", [False, True])
def test_training_step_matches_reference_path(kernels, monkeypatch, use_fp16):
    """Every loss phase (G main, path length, D main, R1) on both paths from the same state."""
    import copy

    from sg2_container.training.loss import LossSettings, StyleGAN2Loss

    G0, D0 = _tiny_networks(use_fp16)
    gen = torch.Generator().manual_seed(7)
    real = torch.randn([4, 3, 32, 32], generator=gen).cuda()
    z = torch.randn([4, 32], generator=gen).cuda()
    c = torch.zeros([4, 0], device="cuda")

    results = {}
    for impl in ("reference", "cuda"):
        monkeypatch.setenv("SG2_OPS", impl)
        G, D = copy.deepcopy(G0), copy.deepcopy(D0)
        loss = StyleGAN2Loss(G, D, LossSettings(r1_gamma=1.0))
        stats = {}
        for phase in ("Gmain", "Greg", "Dmain", "Dreg"):
            torch.manual_seed(11)
            result = loss.accumulate_gradients(phase, real, c, z, c, gain=1.0)
            # Signs of near-zero logits may legitimately differ; compare the values only.
            stats.update({k: v.detach().float() for k, v in result.stats.items()
                          if "/signs/" not in k})
        grads = {f"G.{k}": p.grad.float() for k, p in G.named_parameters() if p.grad is not None}
        grads.update({f"D.{k}": p.grad.float() for k, p in D.named_parameters() if p.grad is not None})
        results[impl] = stats, grads

    (ref_stats, ref_grads), (cuda_stats, cuda_grads) = results["reference"], results["cuda"]
    tol = 2e-2 if use_fp16 else 1e-4
    assert ref_stats.keys() == cuda_stats.keys()
    for key in ref_stats:
        _close(cuda_stats[key], ref_stats[key], tol)
    assert ref_grads.keys() == cuda_grads.keys()
    for key in ref_grads:
        _close(cuda_grads[key], ref_grads[key], tol * 10)
