"""stylegan2_ops.winograd: the CPU F(4x4, 3x3) path against torch's conv2d, when it is taken, and
the modulated conv and synthesis layer that use it."""
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from sg2_container.models.networks.layers import modulated_conv2d
from sg2_container.models.networks.synthesis import SynthesisLayer
from stylegan2_ops import WeightCache, cpu_kernels, winograd

BUILT = cpu_kernels.status().available
needs_build = pytest.mark.skipif(not BUILT, reason=f"CPU kernels: {cpu_kernels.status().reason}")


def _reference(x, w, styles=None, dcoefs=None, noise=None):
    x, w = x.double(), w.double()
    if styles is not None:
        x = x * styles.double()[:, :, None, None]
    y = F.conv2d(x, w, padding=1)
    if dcoefs is not None:
        y = y * dcoefs.double()[:, :, None, None]
    if noise is not None:
        y = y + (noise.double() if noise.ndim == 4 else noise.double()[None, None])
    return y


# The transforms' rounding: 7e-6 to 1.1e-5 relative over seeds and shapes on AVX-512; the
# other builds (AVX2, baseline) round differently.
TOLERANCE = 3e-5


def _relative_error(ours, reference):
    return ((ours.double() - reference).abs().max() / reference.abs().max()).item()


# (batch, in, out, height, width): tile edges that cut the image (13 x 7, 5 x 9), channel counts
# off the kernel's 64-channel blocks, one tile row, several samples; the last one has tiles
# enough (256 or more per image) to run in blocks of one image's tiles (the others run whole).
SHAPES = [(1, 16, 8, 8, 8), (2, 70, 130, 13, 7), (3, 5, 3, 5, 9), (1, 3, 65, 4, 17),
          (2, 64, 64, 66, 63)]


@needs_build
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("extras", ["plain", "styles", "all", "shared-noise", "noise-plane"])
def test_conv3x3_equals_conv2d(shape, extras):
    batch, in_channels, out_channels, height, width = shape
    gen = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(batch, in_channels, height, width, generator=gen)
    w = torch.randn(out_channels, in_channels, 3, 3, generator=gen)
    styles = dcoefs = noise = None
    if extras != "plain":
        styles = torch.randn(batch, in_channels, generator=gen)
    if extras in ("all", "shared-noise", "noise-plane"):
        dcoefs = torch.rand(batch, out_channels, generator=gen) + 0.5
    if extras == "all":
        noise = torch.randn(batch, 1, height, width, generator=gen)
    elif extras == "shared-noise":
        noise = torch.randn(1, 1, height, width, generator=gen)
    elif extras == "noise-plane":
        noise = torch.randn(height, width, generator=gen)
    ours = winograd.conv3x3(x, winograd.transform_filter(w), styles, dcoefs, noise)
    assert ours.shape == (batch, out_channels, height, width)
    assert ours.is_contiguous(memory_format=torch.channels_last)
    assert _relative_error(ours, _reference(x, w, styles, dcoefs, noise)) < TOLERANCE


@needs_build
def test_conv3x3_reads_either_layout_and_leaves_its_inputs_alone():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 8, 6, 10, generator=gen)
    w = torch.randn(4, 8, 3, 3, generator=gen)
    styles = torch.randn(2, 8, generator=gen)
    kept = x.clone()
    plain = winograd.conv3x3(x, winograd.transform_filter(w), styles)
    channels_last = winograd.conv3x3(x.contiguous(memory_format=torch.channels_last),
                                     winograd.transform_filter(w), styles)
    assert torch.equal(plain, channels_last)
    assert torch.equal(x, kept)


def test_transform_filter_layout():
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(5, 3, 3, 3, generator=gen, dtype=torch.float64)
    g = torch.tensor(winograd._FILTER_TRANSFORM, dtype=torch.float64)
    transformed = winograd.transform_filter(w)
    assert transformed.shape == (36, 3, 5)
    for out_channel, in_channel in [(0, 0), (4, 2), (2, 1)]:
        expected = (g @ w[out_channel, in_channel] @ g.t()).reshape(36)
        assert torch.allclose(transformed[:, in_channel, out_channel], expected)


def _fitting(batch=1, channels=winograd.MIN_CHANNELS, size=16):
    return torch.zeros(batch, channels, size, size), torch.zeros(channels, channels, 3, 3)


@needs_build
def test_suits_takes_only_what_it_is_measured_to_win():
    x, w = _fitting()
    assert winograd.suits(x, w, 1)
    assert winograd.suits(x, w, 1, torch.zeros(16, 16))
    assert not winograd.suits(x, w, 0)  # padding
    assert not winograd.suits(x, w[:, :, :1, :1], 1)  # 1x1 filter
    assert not winograd.suits(x.double(), w.double(), 1)
    assert not winograd.suits(*_fitting(channels=winograd.MIN_CHANNELS // 2), 1)
    assert winograd.suits(*_fitting(size=8), 1)  # 4 tiles
    assert not winograd.suits(*_fitting(size=4), 1)  # 1 tile
    # Tiles of one image: a batch never decides (the endpoint's bytes may not depend on it).
    assert not winograd.suits(*_fitting(batch=4, size=4), 1)
    assert winograd.suits(*_fitting(batch=4, size=4), 1, per_image=False)
    assert not winograd.suits(x, w, 1, torch.zeros(1, 2, 16, 16))  # noise per channel
    assert not winograd.suits(x, w.requires_grad_(), 1)  # autograd would record


@needs_build
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("noise_kind", ["none", "const", "random"])
def test_modulated_conv_takes_the_path_with_the_same_values(batch, noise_kind):
    channels = winograd.MIN_CHANNELS
    gen = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, channels, 16, 16, generator=gen)
    weight = torch.randn(channels, channels, 3, 3, generator=gen)
    styles = torch.randn(batch, channels, generator=gen)
    noise = {"none": None, "const": torch.randn(16, 16, generator=gen),
             "random": torch.randn(batch, 1, 16, 16, generator=gen)}[noise_kind]
    cache = WeightCache()
    with torch.no_grad():
        ours = modulated_conv2d(x, weight, styles, noise=noise, padding=1,
                                fused_modconv=False, weight_cache=cache)
        plain = modulated_conv2d(x, weight, styles, noise=noise, padding=1, fused_modconv=False)
    assert "winograd filter" in cache._values  # the path was taken
    assert ours.is_contiguous(memory_format=torch.channels_last)
    assert _relative_error(ours, plain.double()) < TOLERANCE


@needs_build
def test_synthesis_layer_at_inference_matches_training_mode_forward():
    channels = winograd.MIN_CHANNELS
    torch.manual_seed(3)
    layer = SynthesisLayer(channels, channels, w_dim=8, resolution=16, conv_clamp=256)
    with torch.no_grad():
        layer.noise_strength.fill_(0.3)
        layer.bias.normal_()
    x, w = torch.randn(1, channels, 16, 16), torch.randn(1, 8)
    recorded = layer(x, w, noise_mode="const")  # autograd records: oneDNN conv
    assert len(layer.weight_cache) == 0
    with torch.inference_mode():
        fast = layer.eval()(x, w, noise_mode="const")
    assert "winograd filter" in layer.weight_cache._values
    assert _relative_error(fast, recorded.detach().double()) < TOLERANCE
    with torch.no_grad():
        layer.weight.add_(1.0)  # a changed weight is seen at the next call
        changed = layer(x, w, noise_mode="const")
    with torch.enable_grad():
        expected = layer.train()(x, w, noise_mode="const").detach()
    assert _relative_error(changed, expected.double()) < TOLERANCE


# ---- training: conv()'s plain 3x3 convs, gradients of every order --------------------------
def _training_sized(seed):
    # Big enough for the per-call path (winograd.MIN_TILES_UNCACHED tiles), small for a CPU.
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, winograd.MIN_CHANNELS, 32, 32, generator=gen).requires_grad_()
    w = (torch.randn(winograd.MIN_CHANNELS, winograd.MIN_CHANNELS, 3, 3, generator=gen)
         / 34).requires_grad_()
    return x, w


@needs_build
def test_conv_takes_the_path_in_training_with_torchs_gradients(monkeypatch):
    from stylegan2_ops.convolution import ConvSpec, conv

    x, w = _training_sized(4)
    assert 2 * 8 * 8 >= winograd.MIN_TILES_UNCACHED
    calls, weight_grad_calls = [], []
    real_conv3x3, real_weight_grad = winograd.conv3x3, winograd.weight_grad
    monkeypatch.setattr(winograd, "conv3x3", lambda *a, **k: calls.append(1) or real_conv3x3(*a, **k))
    monkeypatch.setattr(winograd, "weight_grad",
                        lambda *a: weight_grad_calls.append(1) or real_weight_grad(*a))
    spec = ConvSpec(padding=(1, 1))
    # R1-shaped: the gradient w.r.t. the input, then a backward through it.
    ours = conv(x, w, spec)
    (grad_x,) = torch.autograd.grad(ours.square().sum(), x, create_graph=True)
    grad_w = torch.autograd.grad(grad_x.square().sum(), w)[0]
    forward_calls = len(calls)
    assert forward_calls >= 3  # forward, input gradient, and the input gradient's own conv
    assert weight_grad_calls  # grad_w: the weight gradient of the input gradient's own conv

    xd, wd = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    theirs = F.conv2d(xd, wd, padding=1)
    (grad_xd,) = torch.autograd.grad(theirs.square().sum(), xd, create_graph=True)
    grad_wd = torch.autograd.grad(grad_xd.square().sum(), wd)[0]
    assert _relative_error(ours, theirs.detach()) < TOLERANCE
    assert _relative_error(grad_x, grad_xd.detach()) < TOLERANCE
    assert _relative_error(grad_w, grad_wd) < TOLERANCE


@needs_build
def test_conv_keeps_onednn_where_the_per_call_transform_would_not_pay(monkeypatch):
    from stylegan2_ops.convolution import ConvSpec, conv

    monkeypatch.setattr(winograd, "conv3x3", lambda *a, **k: pytest.fail("Winograd path taken"))
    monkeypatch.setattr(winograd, "weight_grad", lambda *a: pytest.fail("Winograd path taken"))
    x, w = _training_sized(5)
    small = x[:1, :, :16, :16]  # 16 tiles: enough for a cached filter, not for one per call
    conv(small, w, ConvSpec(padding=(1, 1))).sum().backward()
    conv(x, w, ConvSpec(padding=(1, 1), stride=(2, 2)))  # strided
    conv(x, w[:, :, :2, :2], ConvSpec(padding=(1, 1)))  # 2x2 filter


def _torch_weight_grad(x, grad_y):
    """conv2d's weight gradient in float64: the reference for the Winograd one."""
    w = torch.zeros(grad_y.shape[1], x.shape[1], 3, 3, dtype=torch.float64, requires_grad=True)
    (grad_w,) = torch.autograd.grad(F.conv2d(x.double(), w, padding=1), w, grad_y.double())
    return grad_w


@needs_build
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_weight_grad_equals_conv2ds(shape):
    # Tiles cut by the image's edge (13 x 7, 5 x 9), channels off the 64-channel blocks, one
    # tile row, several samples summed; either layout in, the weight's shape out.
    batch, in_channels, out_channels, height, width = shape
    gen = torch.Generator().manual_seed(sum(shape) + 1)
    x = torch.randn(batch, in_channels, height, width, generator=gen)
    grad_y = torch.randn(batch, out_channels, height, width, generator=gen)
    reference = _torch_weight_grad(x, grad_y)
    ours = winograd.weight_grad(x, grad_y)
    assert ours.shape == (out_channels, in_channels, 3, 3) and ours.dtype == torch.float32
    assert _relative_error(ours, reference) < TOLERANCE
    channels_last = torch.channels_last
    assert torch.equal(winograd.weight_grad(x.contiguous(memory_format=channels_last),
                                            grad_y.contiguous(memory_format=channels_last)), ours)


@needs_build
@pytest.mark.parametrize("tiles_per_chunk", [1, 7, 64, 10_000])
def test_weight_grad_sums_its_chunks_of_tiles(tiles_per_chunk):
    # The tiles go through in chunks (scratch of bounded size), each chunk's products added
    # onto the last: uneven last chunk (7), one chunk per tile, everything at once.
    gen = torch.Generator().manual_seed(tiles_per_chunk)
    x = torch.randn(3, 20, 17, 10, generator=gen)
    grad_y = torch.randn(3, 12, 17, 10, generator=gen)
    ours = winograd.weight_grad(x, grad_y, tiles_per_chunk)
    assert _relative_error(ours, _torch_weight_grad(x, grad_y)) < TOLERANCE


@needs_build
def test_weight_grad_refuses_what_it_cannot_compute_and_handles_empty_work():
    module = cpu_kernels.status().module
    channels_last = torch.channels_last
    x = torch.randn(2, 4, 8, 8).contiguous(memory_format=channels_last)
    grad_y = torch.randn(2, 6, 8, 8).contiguous(memory_format=channels_last)
    with pytest.raises(RuntimeError, match="tiles_per_chunk must be -1 .* got 0"):
        module.conv3x3_weight_grad(x, grad_y, 0)
    with pytest.raises(RuntimeError, match="dy must be a 4-D channels_last tensor"):
        module.conv3x3_weight_grad(x, torch.randn(2, 6, 8, 8))
    with pytest.raises(RuntimeError, match="dy must have x's batch, height and width"):
        module.conv3x3_weight_grad(x, grad_y[:, :, :4].contiguous(memory_format=channels_last))
    with pytest.raises(RuntimeError, match="dy must be a float32 CPU tensor"):
        module.conv3x3_weight_grad(x, grad_y.double())
    assert torch.equal(winograd.weight_grad(x[:0], grad_y[:0]), torch.zeros(6, 4, 3, 3))
    assert torch.equal(winograd.weight_grad(x[:, :0], grad_y), torch.zeros(6, 0, 3, 3))


def _conv_inputs(shape, seed, shared_noise=False):
    batch, in_channels, out_channels, height, width = shape
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, in_channels, height, width,
                    generator=gen).contiguous(memory_format=torch.channels_last)
    w = torch.randn(out_channels, in_channels, 3, 3, generator=gen)
    styles = torch.randn(batch, in_channels, generator=gen)
    dcoefs = torch.rand(batch, out_channels, generator=gen) + 0.5
    noise = torch.randn(1 if shared_noise else batch, height, width, generator=gen)
    return x, w, styles, dcoefs, noise


@needs_build
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape,shared_noise", [((1, 64, 64, 64, 64), False),
                                                ((3, 70, 130, 37, 29), True),
                                                ((2, 5, 3, 21, 9), False)],
                         ids=["64px", "odd-shared-noise", "few-channels"])
def test_every_form_computes_the_conv(shape, shared_noise, threads):
    # The kernel runs whole (one product per point over all tiles) or blocked (blocks of one
    # image's tiles, each through transforms and products in cache): forced here at sizes
    # that leave uneven blocks (7 tiles), one block per image (10000) and the chosen one (-1).
    x, w, styles, dcoefs, noise = _conv_inputs(shape, sum(shape), shared_noise)
    u = winograd.transform_filter(w)
    reference = _reference(x, w, styles, dcoefs, noise[:, None])
    module = cpu_kernels.status().module
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        blocked = (7, 32, 64, 10_000) if module.winograd_blocked_available() else ()
        for form in (0, -1, *blocked):
            for per_image in (True, False):
                ours = module.conv3x3(x, u, styles, dcoefs, noise, form=form, per_image=per_image)
                assert _relative_error(ours, reference) < TOLERANCE, (form, per_image)
    finally:
        torch.set_num_threads(previous)
    with pytest.raises(RuntimeError, match="form must be"):
        module.conv3x3(x, u, form=-2)


@needs_build
def test_blocked_bytes_depend_on_neither_batch_nor_threads():
    # 64 x 64 px is 256 tiles: the blocked form, whose products per block are the same
    # wherever the image sits and however many threads run.
    x, w, styles, dcoefs, noise = _conv_inputs((3, 64, 64, 64, 64), 11)
    u = winograd.transform_filter(w)
    module = cpu_kernels.status().module
    previous = torch.get_num_threads()
    try:
        results = {}
        for threads in (1, 2):
            torch.set_num_threads(threads)
            together = module.conv3x3(x, u, styles, dcoefs, noise)
            alone = [module.conv3x3(x[i:i + 1].contiguous(memory_format=torch.channels_last),
                                    u, styles[i:i + 1], dcoefs[i:i + 1], noise[i:i + 1])
                     for i in range(3)]
            assert torch.equal(together, torch.cat(alone))
            results[threads] = together
        assert torch.equal(results[1], results[2])
    finally:
        torch.set_num_threads(previous)


@needs_build
@pytest.mark.parametrize("mkl_code", ["default", "AVX2"])
def test_a_samples_bytes_do_not_depend_on_its_batch_on_any_blas_code(mkl_code):
    # MKL's AVX2 code (what AMD and older Intel CPUs run) rounds a product's rows differently
    # by the product's row count, which AVX-512 code here does not: a whole batch's product
    # then gave images other bits than alone (512 channels at 8-16 px, 64 at 16 px), so each
    # image gets products of its own. Run in a fresh process: MKL reads its setting once.
    check = textwrap.dedent("""
        import torch
        from stylegan2_ops import cpu_kernels, winograd
        module = cpu_kernels.status().module
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for channels, size in ((512, 8), (512, 16), (64, 16), (64, 64)):
                gen = torch.Generator().manual_seed(channels + size)
                x = torch.randn(6, channels, size, size, generator=gen)
                x = x.contiguous(memory_format=torch.channels_last)
                w = torch.randn(channels, channels, 3, 3, generator=gen) / channels
                u = winograd.transform_filter(w)
                styles = torch.randn(6, channels, generator=gen)
                together = winograd.conv3x3(x, u, styles)
                for i in range(6):
                    alone = winograd.conv3x3(x[i:i + 1], u, styles[i:i + 1])
                    assert torch.equal(together[i:i + 1], alone), (threads, channels, size, i)
        print("same bytes")
    """)
    # MKL_NUM_THREADS=1 (as this suite sets it) with torch at 2 threads is where MKL ran a
    # product threaded on torch's thread and not on the others: blocks rounded by which
    # thread took them, until the kernel pinned MKL to one thread per block.
    env = dict(os.environ, MKL_NUM_THREADS="1")
    env.pop("MKL_ENABLE_INSTRUCTIONS", None)
    if mkl_code != "default":
        env["MKL_ENABLE_INSTRUCTIONS"] = mkl_code
    root = pathlib.Path(__file__).resolve().parents[2]
    run = subprocess.run([sys.executable, "-c", check], cwd=root, env=env, capture_output=True,
                         text=True, timeout=300, check=False)
    assert run.returncode == 0 and "same bytes" in run.stdout, run.stderr[-3000:]


@needs_build
@pytest.mark.parametrize("form", [-1, 0, 32])
def test_empty_images_and_channels(form):
    # (Empty work never reaches the BLAS: no blocked form needed, even when forced.)
    module = cpu_kernels.status().module
    u = winograd.transform_filter(torch.randn(8, 4, 3, 3))
    flat = torch.randn(2, 4, 0, 70).contiguous(memory_format=torch.channels_last)
    assert module.conv3x3(flat, u, form=form).shape == (2, 8, 0, 70)
    none_in = torch.randn(2, 0, 64, 64).contiguous(memory_format=torch.channels_last)
    noise = torch.randn(1, 64, 64)
    out = module.conv3x3(none_in, winograd.transform_filter(torch.randn(8, 0, 3, 3)),
                         noise=noise, form=form)
    assert torch.equal(out, noise.expand(2, 8, 64, 64))


@needs_build
@pytest.mark.parametrize("size", [16, 32, 64])
def test_a_samples_bytes_do_not_depend_on_its_batch(size):
    # What the endpoint promises: a request batched with others gets the bytes it gets alone.
    # (16-32 px: the whole form; 64 px: the blocked form.)
    channels = winograd.MIN_CHANNELS
    gen = torch.Generator().manual_seed(6)
    batch = 8  # a product over 4 or more rows is where MKL's bits for a row change
    x = torch.randn(batch, channels, size, size, generator=gen)
    weight = torch.randn(channels, channels, 3, 3, generator=gen)
    styles = torch.randn(batch, channels, generator=gen)
    noise = torch.randn(batch, 1, size, size, generator=gen)
    cache = WeightCache()
    with torch.no_grad():
        together = modulated_conv2d(x, weight, styles, noise=noise, padding=1,
                                    fused_modconv=False, weight_cache=cache)
        for i in range(batch):
            alone = modulated_conv2d(x[i:i + 1], weight, styles[i:i + 1], noise=noise[i:i + 1],
                                     padding=1, fused_modconv=True, weight_cache=cache)
            assert torch.equal(together[i:i + 1], alone)
    assert "winograd filter" in cache._values


def test_conv_outside_autograd_keeps_onednn(monkeypatch):
    # Inference goes through the modulated conv's per-image rule; conv() alone, with nothing
    # recorded, must not pick the path by the batch's tile count.
    from stylegan2_ops.convolution import ConvSpec, conv

    monkeypatch.setattr(winograd, "conv3x3", lambda *a, **k: pytest.fail("Winograd path taken"))
    x, w = _training_sized(7)
    with torch.no_grad():
        conv(x, w, ConvSpec(padding=(1, 1)))


@needs_build
def test_the_conv_lets_other_python_threads_run():
    # The endpoint renders in a worker thread; its event loop must keep serving meanwhile.
    import threading
    import time

    gen = torch.Generator().manual_seed(8)
    x = torch.randn(4, 256, 64, 64, generator=gen).contiguous(memory_format=torch.channels_last)
    transformed = winograd.transform_filter(torch.randn(256, 256, 3, 3, generator=gen))
    start = time.perf_counter()
    winograd.conv3x3(x, transformed)
    one_conv = time.perf_counter() - start
    worker = threading.Thread(target=lambda: [winograd.conv3x3(x, transformed) for _ in range(3)])
    longest_gap, last = 0.0, time.perf_counter()
    worker.start()
    while worker.is_alive():
        now = time.perf_counter()
        longest_gap, last = max(longest_gap, now - last), now
    worker.join()
    # Holding the GIL would stall this loop for a whole conv at least once.
    assert longest_gap < 0.5 * one_conv, (longest_gap, one_conv)
