"""Networks: names/shapes/counts equal the reference's, outputs equal its golden values."""
import copy
import json

import pytest
import torch

from sg2_container.models.networks import (
    Discriminator,
    Generator,
    MinibatchStdLayer,
    modulated_conv2d,
    normalize_2nd_moment,
)
from sg2_container.options import CFG_NAMES, network_kwargs, resolve_preset
from tests.conftest import DATA_DIR

SHAPES = json.loads((DATA_DIR / "reference_param_shapes.json").read_text())
OPS = torch.load(DATA_DIR / "reference_ops.pt", weights_only=True)


def _entries(module):
    return [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in module.state_dict().items()]


def _num_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("config", sorted(SHAPES))
def test_state_dict_equals_reference_from_recorded_kwargs(config):
    ref = SHAPES[config]
    G, D = Generator(**ref["G_kwargs"]), Discriminator(**ref["D_kwargs"])
    assert _entries(G) == ref["G"]
    assert _entries(D) == ref["D"]
    assert _num_params(G) == ref["G_params"] and _num_params(D) == ref["D_params"]
    assert _num_params(G.mapping) == ref["G_mapping_params"]
    assert _num_params(G.synthesis) == ref["G_synthesis_params"]
    assert sum(b.numel() for b in G.buffers()) == ref["G_buffers"]
    assert sum(b.numel() for b in D.buffers()) == ref["D_buffers"]
    assert G.num_ws == ref["G_num_ws"]


@pytest.mark.parametrize("config,cfg,res,c_dim", [
    ("paper256_res256_c0", "paper256", 256, 0), ("cifar_res32_c10", "cifar", 32, 10)])
def test_presets_derive_the_reference_kwargs(config, cfg, res, c_dim):
    G_kwargs, D_kwargs = network_kwargs(resolve_preset(cfg, res), res, 3, c_dim)
    assert G_kwargs == SHAPES[config]["G_kwargs"]
    assert D_kwargs == SHAPES[config]["D_kwargs"]


# Facts sheet 6.6: parameter counts of every preset, computed on the reference.
PARAM_COUNTS = [
    ("auto", 128, 0, 12, 525_312, 22_423_965, 23_882_369),
    ("auto", 256, 0, 14, 525_312, 22_666_210, 24_001_089),
    ("auto", 512, 0, 16, 525_312, 28_175_335, 28_982_849),
    ("auto", 1024, 0, 18, 525_312, 28_268_812, 29_012_513),
    ("paper256", 256, 0, 14, 2_101_248, 22_666_210, 24_001_089),
    ("paper512", 512, 0, 16, 2_101_248, 28_175_335, 28_982_849),
    ("paper1024", 1024, 0, 18, 2_101_248, 28_268_812, 29_012_513),
    ("stylegan2", 1024, 0, 18, 2_101_248, 28_268_812, 29_012_513),
    ("cifar", 32, 0, 8, 525_312, 19_422_227, 20_720_641),
    ("cifar", 32, 10, 8, 793_088, 19_422_227, 23_089_664),
]


@pytest.mark.parametrize("cfg,res,c_dim,num_ws,mapping,synthesis,d_total", PARAM_COUNTS)
def test_every_preset_builds_with_reference_counts(cfg, res, c_dim, num_ws, mapping, synthesis, d_total):
    G_kwargs, D_kwargs = network_kwargs(resolve_preset(cfg, res), res, 3, c_dim)
    with torch.device("meta"):
        G, D = Generator(**G_kwargs), Discriminator(**D_kwargs)
    assert G.num_ws == num_ws
    assert _num_params(G.mapping) == mapping
    assert _num_params(G.synthesis) == synthesis
    assert _num_params(D) == d_total


def test_cfg_names_cover_the_table():
    assert set(CFG_NAMES) == {"auto", "stylegan2", "paper256", "paper512", "paper1024", "cifar"}


# ---- golden outputs of the tiny reference G and D -------------------------------------------

def _load_tiny(golden, conv_clamp="unset"):
    G_kwargs, D_kwargs = copy.deepcopy(golden["G_kwargs"]), copy.deepcopy(golden["D_kwargs"])
    if conv_clamp != "unset":
        G_kwargs["synthesis_kwargs"]["conv_clamp"] = conv_clamp
        D_kwargs["conv_clamp"] = conv_clamp
    G, D = Generator(**G_kwargs), Discriminator(**D_kwargs)
    G.load_state_dict(golden["G_state_dict"], strict=True)
    D.load_state_dict(golden["D_state_dict"], strict=True)
    return G.eval().requires_grad_(False), D.eval().requires_grad_(False)


def test_fresh_tiny_networks_have_the_files_names_and_filters(golden_tiny):
    G = Generator(**golden_tiny["G_kwargs"])
    D = Discriminator(**golden_tiny["D_kwargs"])
    for ours, ref in ((G.state_dict(), golden_tiny["G_state_dict"]), (D.state_dict(), golden_tiny["D_state_dict"])):
        assert [(k, v.shape) for k, v in ours.items()] == [(k, v.shape) for k, v in ref.items()]
        for name, value in ours.items():
            if name.endswith("resample_filter"):
                torch.testing.assert_close(value, ref[name], rtol=0, atol=0)
    assert G.num_ws == golden_tiny["G_num_ws"]


def test_mapping_matches_reference(golden_tiny):
    G, _ = _load_tiny(golden_tiny)
    z, c, out = golden_tiny["inputs"]["z"], golden_tiny["inputs"]["c"], golden_tiny["outputs"]
    tol = dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(G.mapping(z, c), out["ws_psi1"], **tol)
    torch.testing.assert_close(G.mapping(z, c, truncation_psi=0.7), out["ws_psi07"], **tol)
    torch.testing.assert_close(G.mapping(z, c, truncation_psi=0.5, truncation_cutoff=2),
                               out["ws_psi05_cutoff2"], **tol)


def test_w_avg_update_in_training_mode(golden_tiny):
    G, _ = _load_tiny(golden_tiny)
    mapping = copy.deepcopy(G.mapping).train()
    mapping(golden_tiny["inputs"]["z"], golden_tiny["inputs"]["c"])
    torch.testing.assert_close(mapping.w_avg, golden_tiny["outputs"]["w_avg_after_train_mapping"],
                               rtol=0, atol=1e-6)
    assert not torch.equal(mapping.w_avg, G.mapping.w_avg)


def test_synthesis_and_generator_match_reference(golden_tiny):
    G, _ = _load_tiny(golden_tiny)
    inputs, out = golden_tiny["inputs"], golden_tiny["outputs"]
    tol = dict(rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(G.synthesis(out["ws_psi1"], noise_mode="const"), out["img_ws_const"], **tol)
    torch.testing.assert_close(G.synthesis(out["ws_psi1"], noise_mode="none"), out["img_ws_none"], **tol)
    img = G(inputs["z"], inputs["c"], truncation_psi=0.7, noise_mode="const")
    torch.testing.assert_close(img, out["img_full_psi07_const"], **tol)


def test_unfused_training_path_matches_fused(golden_tiny):
    G, _ = _load_tiny(golden_tiny)
    ws = golden_tiny["outputs"]["ws_psi1"]
    img = G.synthesis(ws, noise_mode="const", fused_modconv=False)
    torch.testing.assert_close(img, golden_tiny["outputs"]["img_ws_const"], rtol=1e-4, atol=1e-4)


def test_discriminator_matches_reference(golden_tiny):
    _, D = _load_tiny(golden_tiny)
    inputs = golden_tiny["inputs"]
    torch.testing.assert_close(D(inputs["d_img"], inputs["d_c"]), golden_tiny["outputs"]["d_logits"],
                               rtol=1e-5, atol=1e-5)


def test_path_length_gradients_match_reference(golden_tiny):
    G, _ = _load_tiny(golden_tiny)
    out = golden_tiny["outputs"]
    ws = out["ws_psi1"].clone().requires_grad_(True)
    img = G.synthesis(ws, noise_mode="const")
    (grads,) = torch.autograd.grad((img * golden_tiny["inputs"]["pl_noise"]).sum(), ws)
    torch.testing.assert_close(grads, out["pl_grads"], rtol=1e-4, atol=1e-5)
    lengths = grads.square().sum(dim=2).mean(dim=1).sqrt()
    torch.testing.assert_close(lengths, out["pl_lengths"], rtol=1e-4, atol=1e-5)


def test_r1_gradients_match_reference(golden_tiny):
    _, D = _load_tiny(golden_tiny)
    inputs, out = golden_tiny["inputs"], golden_tiny["outputs"]
    img = inputs["d_img"].clone().requires_grad_(True)
    (grads,) = torch.autograd.grad(D(img, inputs["d_c"]).sum(), img)
    torch.testing.assert_close(grads, out["r1_grads"], rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(grads.square().sum(dim=[1, 2, 3]), out["r1_penalty"], rtol=1e-4, atol=1e-7)


def test_conv_clamp_variant_matches_reference(golden_tiny):
    variant = golden_tiny["conv_clamp_variant"]
    G, D = _load_tiny(golden_tiny, conv_clamp=variant["conv_clamp"])
    inputs = golden_tiny["inputs"]
    img = G(inputs["z"], inputs["c"], truncation_psi=0.7, noise_mode="const")
    torch.testing.assert_close(img, variant["img_full_psi07_const"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(D(inputs["d_img"], inputs["d_c"]), variant["d_logits"], rtol=1e-5, atol=1e-5)
    unclamped = G(inputs["z"], inputs["c"], truncation_psi=0.7, noise_mode="const")
    assert unclamped.abs().max() <= 2 * variant["conv_clamp"] * 4  # the clamp is really active


def _golden_with_fp16_blocks(golden_tiny):
    """The golden tiny G with its top two blocks marked fp16."""
    kwargs = copy.deepcopy(golden_tiny["G_kwargs"])
    kwargs["synthesis_kwargs"]["num_fp16_res"] = 2
    G = Generator(**kwargs).eval()
    G.load_state_dict(golden_tiny["G_state_dict"])
    return G


def _marked_and_forced(G, golden_tiny):
    """Images as the blocks' marks say, and with force_fp32."""
    ws = golden_tiny["outputs"]["ws_psi1"]
    with torch.no_grad():
        return (G.synthesis(ws, noise_mode="const"),
                G.synthesis(ws, noise_mode="const", force_fp32=True))


def test_fp16_blocks_compute_in_float32_on_a_cpu(golden_tiny):
    """Half precision is a GPU speed-up; on a CPU it is slower and less exact, so blocks marked
    fp16 compute there exactly as with force_fp32."""
    G = _golden_with_fp16_blocks(golden_tiny)
    marked, full = _marked_and_forced(G, golden_tiny)
    assert [b.use_fp16 for b in G.synthesis.blocks()] == [False, False, True, True]
    assert torch.equal(marked, full)
    torch.testing.assert_close(full, golden_tiny["outputs"]["img_ws_const"], rtol=1e-4, atol=1e-4)


def test_fp16_blocks_run_in_half_where_half_runs(golden_tiny, monkeypatch):
    """The GPU's half path (casts, clamps, the float32 image sum), run on a CPU by letting the
    blocks take half precision here."""
    from sg2_container.models.networks import synthesis

    monkeypatch.setattr(synthesis, "runs_in_half", lambda use_fp16, force_fp32, device:
                        use_fp16 and not force_fp32)
    half, full = _marked_and_forced(_golden_with_fp16_blocks(golden_tiny), golden_tiny)
    assert half.dtype == torch.float32 and torch.isfinite(half).all()
    torch.testing.assert_close(full, golden_tiny["outputs"]["img_ws_const"], rtol=1e-4, atol=1e-4)
    assert 0 < (half - full).abs().max() < 0.1


# ---- the other golden op cases ----------------------------------------------------------

@pytest.mark.parametrize("case", OPS["modulated_conv2d"], ids=lambda c: c["name"])
def test_modulated_conv2d_matches_reference(case):
    out = modulated_conv2d(case["x"], case["weight"], case["styles"], noise=case["noise"],
                           resample_filter=case["resample_filter"], **case["kwargs"])
    torch.testing.assert_close(out, case["out"], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", OPS["minibatch_std"], ids=lambda c: c["name"])
def test_minibatch_std_matches_reference(case):
    out = MinibatchStdLayer(case["group_size"], case["num_channels"])(case["x"])
    torch.testing.assert_close(out, case["out"], rtol=1e-12, atol=1e-12)


def test_normalize_2nd_moment_matches_reference():
    case = OPS["normalize_2nd_moment"]
    torch.testing.assert_close(normalize_2nd_moment(case["x"]), case["out"], rtol=1e-12, atol=1e-12)


# ---- architectures, conditioning, Freeze-D, bad input ------------------------------------

TINY = dict(channel_base=256, channel_max=16)


@pytest.mark.parametrize("g_arch", ["orig", "skip", "resnet"])
@pytest.mark.parametrize("d_arch", ["orig", "skip", "resnet"])
def test_architectures_train_step_gradients_flow(g_arch, d_arch):
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=3, w_dim=8, img_resolution=16, img_channels=1,
                  mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(architecture=g_arch, **TINY))
    D = Discriminator(c_dim=3, img_resolution=16, img_channels=1, architecture=d_arch,
                      mapping_kwargs=dict(num_layers=2), epilogue_kwargs=dict(mbstd_group_size=2), **TINY)
    z, c = torch.randn([4, 8]), torch.eye(3)[[0, 1, 2, 0]]
    img = G(z, c)
    assert img.shape == (4, 1, 16, 16)
    logits = D(img, c)
    assert logits.shape == (4, 1)
    torch.nn.functional.softplus(-logits).mean().backward()
    for name, param in G.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        if name.endswith(".weight") and g_arch == "skip":
            assert param.grad.abs().sum() > 0, name


def test_freeze_d_turns_first_layers_into_buffers_with_same_names():
    kwargs = dict(c_dim=0, img_resolution=16, img_channels=3, **TINY)
    D = Discriminator(**kwargs, block_kwargs=dict(freeze_layers=3))
    frozen = {n for n, _ in D.named_buffers()} - {n for n, _ in D.named_buffers() if "resample_filter" in n}
    assert frozen == {"b16.fromrgb.weight", "b16.fromrgb.bias", "b16.conv0.weight", "b16.conv0.bias",
                      "b16.conv1.weight", "b16.conv1.bias"}
    assert set(D.state_dict()) == set(Discriminator(**kwargs).state_dict())
    assert not any(n.startswith(("b16.fromrgb", "b16.conv")) for n, _ in D.named_parameters())
    assert any(n.startswith("b16.skip") for n, _ in D.named_parameters())


@pytest.mark.parametrize("call,match", [
    (lambda G: G(torch.randn([2, 7])), r"z must have shape \[N, 8\]"),
    (lambda G: G(torch.randn([2, 8])), r"this network needs c of shape \[N, 3\]"),
    (lambda G: G(torch.randn([2, 8]), torch.zeros([3, 3])), r"c must have shape \[2, 3\]"),
    (lambda G: G.synthesis(torch.randn([2, 3, 8])), r"ws must have shape \[N, 6, 8\]"),
    (lambda G: G(torch.randn([2, 8]), torch.zeros([2, 3]), noise_mode="loud"), "noise_mode 'loud'"),
])
def test_bad_inputs_are_named(call, match):
    G = Generator(z_dim=8, c_dim=3, w_dim=8, img_resolution=16, img_channels=3,
                  mapping_kwargs=dict(num_layers=1), synthesis_kwargs=TINY)
    with pytest.raises(ValueError, match=match):
        call(G)


@pytest.mark.parametrize("res", [0, 3, 48, 100])
def test_bad_resolution_is_named(res):
    with pytest.raises(ValueError, match=f"img_resolution must be a power of two >= 4, got {res}"):
        Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=res, img_channels=3)


def test_minibatch_std_group_must_divide_batch():
    with pytest.raises(ValueError, match=r"batch \(6\) divisible by the group size \(4\)"):
        MinibatchStdLayer(4)(torch.zeros([6, 2, 4, 4]))


# ---- speed paths, each held to the reference path ------------------------------------------
def test_default_modconv_form_on_cpu():
    from sg2_container.models.networks.synthesis import default_fused_modconv

    weight = torch.zeros([512, 512, 3, 3])
    low_res, high_res = torch.zeros([1, 512, 8, 8]), torch.zeros([1, 64, 256, 256])
    f32 = torch.float32
    # One sample: scale whichever is smaller, the activations (unfused) or the weight (fused).
    assert default_fused_modconv(False, f32, low_res, weight) is False
    assert default_fused_modconv(False, f32, high_res, weight[:64, :64]) is True
    # A batch shares one weight; training never fuses.
    assert default_fused_modconv(False, f32, high_res.expand(8, -1, -1, -1), weight[:64, :64]) is False
    assert default_fused_modconv(True, f32, high_res, weight[:64, :64]) is False
    # Where autograd records (projection through the styles), never fused.
    assert default_fused_modconv(False, f32, high_res, weight[:64, :64], records=True) is False


@pytest.mark.parametrize("batch", [1, 3])
def test_generator_default_form_matches_golden_images(golden_tiny, batch):
    # Whichever form the default picks for this batch, the images are the reference's.
    G, _ = _load_tiny(golden_tiny)
    ws = golden_tiny["outputs"]["ws_psi1"]
    ws = ws[[i % ws.shape[0] for i in range(batch)]]
    expected = golden_tiny["outputs"]["img_ws_const"][[i % ws.shape[0] for i in range(batch)]]
    with torch.inference_mode():
        img = G.synthesis(ws, noise_mode="const")
    torch.testing.assert_close(img, expected, rtol=1e-4, atol=1e-4)


def _per_sample_generator():
    # 32 px, 16 channels at the top: the top block holds 16 * 32 * 32 elements per sample.
    torch.manual_seed(3)
    return Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=32, img_channels=3,
                     mapping_kwargs=dict(num_layers=2),
                     synthesis_kwargs=dict(channel_base=512, channel_max=32)).eval()


def test_cpu_inference_runs_top_blocks_per_sample_with_the_batched_images(monkeypatch):
    from sg2_container.models.networks import synthesis

    G = _per_sample_generator()
    ws = G.mapping(torch.randn([5, 16]), None).detach()
    with torch.inference_mode():
        batched = G.synthesis(ws, noise_mode="const")
        monkeypatch.setattr(synthesis, "PER_SAMPLE_MIN_ELEMENTS", 16 * 32 * 32)
        assert G.synthesis.first_per_sample_block(ws, "const") == 3  # b32 of b4..b32
        split = G.synthesis(ws, noise_mode="const")
    torch.testing.assert_close(split, batched, rtol=1e-5, atol=1e-5)
    assert split.shape == (5, 3, 32, 32)


def test_per_sample_blocks_only_where_nothing_depends_on_the_batch(monkeypatch):
    from sg2_container.models.networks import synthesis

    monkeypatch.setattr(synthesis, "PER_SAMPLE_MIN_ELEMENTS", 1)
    G = _per_sample_generator()
    S, none = G.synthesis, len(G.synthesis.blocks())
    ws = torch.zeros([4, G.num_ws, 16])
    with torch.inference_mode():
        assert S.first_per_sample_block(ws, "const") == 0
        assert S.first_per_sample_block(ws, "none") == 0
        assert S.first_per_sample_block(ws, "random") == none  # one draw for the whole batch
        assert S.first_per_sample_block(ws[:1], "const") == none
    assert S.first_per_sample_block(ws, "const") == none  # autograd on: keep one graph
    with torch.no_grad():
        assert S.train().first_per_sample_block(ws, "const") == none


@pytest.mark.parametrize("up,demodulate,with_noise", [(1, True, True), (2, True, False),
                                                      (1, False, False)])
def test_modulated_conv_forms_agree_with_gradients(up, demodulate, with_noise):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn([3, 8, 6, 6], dtype=torch.float64, generator=gen, requires_grad=True)
    weight = torch.randn([5, 8, 3, 3], dtype=torch.float64, generator=gen, requires_grad=True)
    styles = torch.randn([3, 8], dtype=torch.float64, generator=gen, requires_grad=True)
    noise = torch.randn([3, 1, 6 * up, 6 * up], dtype=torch.float64, generator=gen) if with_noise else None
    f = torch.tensor([[1.0, 3, 3, 1]]).T @ torch.tensor([[1.0, 3, 3, 1]]) / 64
    outs = [modulated_conv2d(x, weight, styles, noise=noise, up=up, padding=1, resample_filter=f,
                             demodulate=demodulate, flip_weight=up == 1, fused_modconv=fused)
            for fused in (True, False)]
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-10, atol=1e-10)
    grads = [torch.autograd.grad(out.square().sum(), [x, weight, styles]) for out in outs]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("batch,up,demodulate,with_noise",
                         [(1, 2, True, True), (1, 1, True, True), (3, 2, True, True),
                          (3, 1, True, False), (1, 1, False, True)])
def test_modulated_conv_without_autograd_computes_in_place_the_same_values(
        batch, up, demodulate, with_noise):
    gen = torch.Generator().manual_seed(4)
    x = torch.randn([batch, 8, 6, 6], generator=gen)
    weight, styles = torch.randn([5, 8, 3, 3], generator=gen), torch.randn([batch, 8], generator=gen)
    noise = torch.randn([6 * up, 6 * up], generator=gen) if with_noise else None
    f = torch.tensor([[1.0, 3, 3, 1]]).T @ torch.tensor([[1.0, 3, 3, 1]]) / 64
    x = x.contiguous(memory_format=torch.channels_last) if batch == 3 else x
    inputs = [t.clone() for t in (x, weight, styles) + ((noise,) if with_noise else ())]
    for fused in (True, False):
        kwargs = dict(noise=noise, up=up, padding=1, resample_filter=f, demodulate=demodulate,
                      flip_weight=up == 1, fused_modconv=fused)
        want = modulated_conv2d(x, weight.requires_grad_(True), styles, **kwargs).detach()
        weight.requires_grad_(False)
        with torch.inference_mode():
            got = modulated_conv2d(x, weight, styles, **kwargs)
        torch.testing.assert_close(got, want, rtol=0, atol=2e-6)
        # Autograd on, but nothing to differentiate: the in-place path too.
        torch.testing.assert_close(modulated_conv2d(x, weight, styles, **kwargs), want,
                                   rtol=0, atol=2e-6)
        current = (x, weight, styles) + ((noise,) if with_noise else ())
        assert all(torch.equal(a, b) for a, b in zip(inputs, current))


def test_differentiating_through_the_styles_runs_no_weight_gradient(monkeypatch):
    # Projection: frozen G in eval mode, gradients w.r.t. ws. The unfused form needs only the
    # activations' gradients; a fused layer would add a weight-gradient conv for its
    # per-sample weights.
    from stylegan2_ops import convolution

    masks = []
    real = convolution._backend_grads
    monkeypatch.setattr(convolution, "_backend_grads",
                        lambda grad, x, w, spec, mask: masks.append(tuple(mask)) or
                        real(grad, x, w, spec, mask))
    G = _per_sample_generator().requires_grad_(False)
    ws = G.mapping(torch.randn([1, 16]), None).detach().requires_grad_(True)
    img = G.synthesis(ws, noise_mode="const")
    (grad,) = torch.autograd.grad(img.square().sum(), ws)
    assert masks and all(mask[0] and not mask[1] for mask in masks)
    assert grad.abs().sum() > 0


def test_batch_1_upsampling_layer_scales_the_activations_and_keeps_its_weight_order():
    # Weight (64*64*9) outnumbers the 4x4 activations: unfused, the transposed conv's weight
    # order kept by the layer's cache instead of copied at every call.
    from sg2_container.models.networks.synthesis import SynthesisLayer

    layer = SynthesisLayer(64, 64, w_dim=8, resolution=8, up=2).eval()
    x, w = torch.randn(1, 64, 4, 4), torch.randn(1, 8)
    with torch.no_grad():
        out = layer(x, w, noise_mode="const")
        fused = layer(x, w, noise_mode="const", fused_modconv=True)
    assert "in-out order" in layer.weight_cache._values
    assert torch.allclose(out, fused, atol=1e-5)


def test_modulated_weight_for_a_transposed_conv_is_written_in_its_order():
    from sg2_container.models.networks.layers import _modulated_weight

    weight, scale = torch.randn([5, 8, 3, 3]), torch.randn([1, 5, 8])
    want = weight.unsqueeze(0) * scale[..., None, None]
    with torch.no_grad():
        got = _modulated_weight(weight, scale, transposed=True)
    assert torch.equal(got, want)
    assert got[0].transpose(0, 1).is_contiguous()  # [in, out, kh, kw] in memory
    assert _modulated_weight(weight, scale, transposed=False).is_contiguous()


def test_bfloat16_generation_is_opt_in_and_close(golden_tiny):
    from sg2_container.errors import UserError
    from sg2_container.inference.generate import GenerateOptions, generate

    G, _ = _load_tiny(golden_tiny)
    images = {p: {seed: image for seed, image, _ in
                  generate(G, GenerateOptions(seeds=(1, 2), precision=p), "cpu")}
              for p in ("float32", "bfloat16")}
    for seed in (1, 2):
        a, b = (images[p][seed].astype(int) for p in ("float32", "bfloat16"))
        assert a.shape == b.shape
        assert abs(a - b).mean() < 8  # uint8 levels; bf16 keeps 8 bits of mantissa
    # ...and the option really changed the arithmetic.
    assert any((images["float32"][s] != images["bfloat16"][s]).any() for s in (1, 2))
    with pytest.raises(UserError, match="precision='fp8' is not allowed: one of float32, bfloat16"):
        GenerateOptions(seeds=(1,), precision="fp8")


def test_second_order_parameter_gradients_equal_torchs_own_convolution(monkeypatch):
    # R1 and path length backpropagate through a backward pass: the parameter gradients from
    # stylegan2_ops.convolution's derivative routines equal those of torch's own conv autograd.
    from stylegan2_ops import convolution as conv_module

    def gradients():
        torch.manual_seed(0)
        G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                      mapping_kwargs=dict(num_layers=1),
                      synthesis_kwargs=dict(channel_base=128, channel_max=16))
        D = Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=128,
                          channel_max=16, epilogue_kwargs=dict(mbstd_group_size=2))
        reals = torch.randn([2, 3, 16, 16], requires_grad=True)
        (r1,) = torch.autograd.grad(D(reals, None).sum(), reals, create_graph=True)
        ws = G.mapping(torch.randn([2, 8]), None)
        img = G.synthesis(ws, noise_mode="const")
        (pl,) = torch.autograd.grad((img * torch.randn_like(img)).sum(), ws, create_graph=True)
        (r1.square().sum() + pl.square().sum()).backward()
        return {n: p.grad for net in (G, D) for n, p in net.named_parameters()
                if p.grad is not None}

    ours = gradients()

    class TorchConv:
        @staticmethod
        def apply(x, w, spec):
            return conv_module._forward(x, w, spec)

    monkeypatch.setattr(conv_module, "_Conv", TorchConv)
    theirs = gradients()
    assert ours.keys() == theirs.keys() and len(ours) > 20
    # Float32 summation order differs between the two routes, so each gradient is compared at
    # its own scale (per element, a value near zero took 1.5e-4 relative on an AVX-512 CPU).
    for name, grad in ours.items():
        scale = theirs[name].abs().max().item()
        assert (grad - theirs[name]).abs().max().item() <= 1e-4 * scale + 1e-7, name


@pytest.mark.parametrize("use_fp16, force_fp32, device, half", [
    (True, False, "cuda", True), (True, True, "cuda", False), (False, False, "cuda", False),
    (True, False, "cpu", False), (True, False, "meta", False)])
def test_half_precision_only_on_gpus(use_fp16, force_fp32, device, half):
    from sg2_container.models.networks.layers import runs_in_half

    assert runs_in_half(use_fp16, force_fp32, torch.device(device)) is half
