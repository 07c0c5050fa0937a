"""Perceptual path length: the percentile filter, the per-sample values against closed forms and
direct float64 computations on generators linear in w, invariance to batch size and process
split, and `sg2 metrics` / a training run with ppl2_wend (random VGG16 from the fixture)."""
import json
import logging

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from sg2_container.cli.main import cli
from sg2_container.data.synthetic import write_synthetic_dataset
from sg2_container.errors import UserError
from sg2_container.metrics import formulas
from sg2_container.metrics.features import Workers
from sg2_container.metrics.ppl import path_lengths, sample_paths
from sg2_container.options.metric_specs import SPECS, PathLength


def test_path_length_keeps_the_values_between_the_1st_and_99th_percentile():
    rng = np.random.default_rng(0)
    # 101 values: 0..99 and one huge step. The 1st percentile (rounded down to a sample) is the
    # second smallest value, 1; the 99th (rounded up) is 99: the 0 and the outlier are dropped.
    values = rng.permutation(np.append(np.arange(100.0), 1e6))
    assert formulas.path_length(values) == pytest.approx(50.0, abs=1e-12)
    assert formulas.path_length(np.array([1.0, 3.0])) == pytest.approx(2.0)
    assert formulas.path_length(np.full(7, 4.5)) == pytest.approx(4.5)


class _LinearGenerator(torch.nn.Module):
    """w = (z / rms(z)) M (scale-free in z, as the real mapping); image = bias + sum over layers
    of w_l A_l: linear in ws, so the distance along a W line has a closed form."""

    def __init__(self, resolution=16, z_dim=4, num_ws=2, seed=0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, 0, z_dim, num_ws
        self.img_resolution = resolution
        self.M = torch.nn.Parameter(torch.randn([z_dim, z_dim], generator=gen))
        self.A = torch.nn.Parameter(0.01 * torch.randn([num_ws, z_dim, 3 * resolution ** 2],
                                                       generator=gen))
        self.bias = torch.nn.Parameter(0.1 * torch.randn([3 * resolution ** 2], generator=gen))

    def mapping(self, z, c, skip_w_avg_update=False):
        w = (z / z.square().mean(dim=1, keepdim=True).sqrt()) @ self.M
        return w.unsqueeze(1).repeat([1, self.num_ws, 1])

    def synthesis(self, ws, noise_mode="random", force_fp32=False):
        flat = self.bias + torch.einsum("nlw,lwp->np", ws, self.A)
        return flat.reshape(-1, 3, self.img_resolution, self.img_resolution)


class _PixelDistance:
    """Squared Euclidean distance of the pixels themselves (values in [0, 255])."""

    @staticmethod
    def features(images):
        return images.flatten(1)


def _numpy_parts(G):
    return (G.M.detach().double().numpy(), G.A.detach().double().numpy(),
            G.bias.detach().double().numpy())


def _numpy_image(G, w):
    """The linear generator's image, float64, from one w shared by all layers."""
    _, A, bias = _numpy_parts(G)
    flat = bias + sum(w @ A[layer] for layer in range(G.num_ws))
    return flat.reshape(3, G.img_resolution, G.img_resolution)


def _numpy_w(G, z):
    M, _, _ = _numpy_parts(G)
    return (z / np.sqrt(np.mean(z ** 2))) @ M


@pytest.mark.parametrize("sampling", ["end", "full"])
def test_w_path_length_of_a_linear_generator_is_the_closed_form(sampling):
    """Linear in w: the image moves by eps * 127.5 * (image(w1) - image(w0) - bias) whatever t,
    so distance / eps^2 = 127.5^2 |image(w1) - image(w0)|^2."""
    G = _LinearGenerator()
    path = PathLength(space="w", sampling=sampling, crop=False)
    values = path_lengths(G, _PixelDistance(), path, count=5, batch=4, seed=11)
    z, t, _ = sample_paths(G, 5, 11, path)
    assert (t == 0).all() == (sampling == "end")
    z = z.double().numpy()
    expected = [127.5 ** 2 * np.sum((_numpy_image(G, _numpy_w(G, pair[1]))
                                     - _numpy_image(G, _numpy_w(G, pair[0]))) ** 2)
                for pair in z]
    np.testing.assert_allclose(values, expected, rtol=1e-2)  # float32 steps of 1e-4, as the metric takes them


def test_legacy_crop_and_box_downsampling_of_a_large_linear_generator():
    """512 px: the centre crop (rows 192..447, columns 128..383) box-downsampled by 2."""
    G = _LinearGenerator(resolution=512, seed=1)
    path = PathLength(space="w", sampling="end", crop=True)
    values = path_lengths(G, _PixelDistance(), path, count=3, batch=2, seed=5)
    z, _, _ = sample_paths(G, 3, 5, path)
    expected = []
    for pair in z.double().numpy():
        diff = _numpy_image(G, _numpy_w(G, pair[1])) - _numpy_image(G, _numpy_w(G, pair[0]))
        crop = diff[:, 192:448, 128:384]
        boxed = crop.reshape(3, 128, 2, 128, 2).mean(axis=(2, 4))
        expected.append(127.5 ** 2 * np.sum(boxed ** 2))
    np.testing.assert_allclose(values, expected, rtol=1e-2)  # float32 steps of 1e-4, as the metric takes them


def test_z_path_length_follows_the_great_circle():
    """Against a direct float64 computation per sample: the great circle through z0 and z1 as
    cos/sin of the angle in the plane they span, the two images eps apart, their distance."""
    G = _LinearGenerator(seed=2)
    path = PathLength(space="z", sampling="full", crop=False)
    values = path_lengths(G, _PixelDistance(), path, count=4, batch=8, seed=3)
    z, t, _ = sample_paths(G, 4, 3, path)
    expected = []
    for (a, b), position in zip(z.double().numpy(), t.double().numpy()):
        u = a / np.linalg.norm(a)
        v = b / np.linalg.norm(b) - (u @ b / np.linalg.norm(b)) * u
        v /= np.linalg.norm(v)
        angle = np.arccos(np.clip(u @ b / np.linalg.norm(b), -1, 1))

        def image(s, angle=angle, u=u, v=v):
            return _numpy_image(G, _numpy_w(G, np.cos(s * angle) * u + np.sin(s * angle) * v))

        step = 127.5 * (image(position + 1e-4) - image(position))
        expected.append(np.sum(step ** 2) / 1e-8)
    np.testing.assert_allclose(values, expected, rtol=1e-2)


@pytest.fixture(scope="module")
def tiny_G(network_file):
    from sg2_container.models.files import load_model

    return load_model(network_file, device="cpu").G_ema


@pytest.fixture(scope="module")
def random_distance(random_vgg16_file):
    from sg2_container.metrics.ppl import load_distance

    return load_distance(str(random_vgg16_file), "cpu")[0]


def test_values_depend_on_the_seed_only_not_on_batch_or_process_split(tiny_G, random_distance):
    path = SPECS["ppl2_wend"].path
    one = path_lengths(tiny_G, random_distance, path, count=5, batch=2, seed=4)
    again = path_lengths(tiny_G, random_distance, path, count=5, batch=10, seed=4)
    # Same latents, so the same values up to float32 rounding, which the 1e-4 step's difference
    # of two images magnifies: a batch's row count changes the BLAS kernels' summation order
    # (2e-3 relative on an AVX-512 machine). Other latents would differ by far more.
    np.testing.assert_allclose(again, one, rtol=1e-2)
    assert np.all(np.isfinite(one)) and np.all(one > 0)
    shares = [path_lengths(tiny_G, random_distance, path, count=5, batch=4, seed=4,
                           workers=Workers(rank=rank, world_size=2)) for rank in (0, 1)]
    assert [len(s) for s in shares] == [3, 2]
    # (Batches of 4 against 2: the same float32 rounding as above; 4.3e-3 relative seen with
    # MKL's and oneDNN's AVX2 code.)
    np.testing.assert_allclose(np.concatenate([one[0::2], one[1::2]]), np.concatenate(shares),
                               rtol=1e-2)
    other = path_lengths(tiny_G, random_distance, path, count=5, batch=2, seed=5)
    assert not np.allclose(other, one, rtol=1e-2)


def test_sg2_metrics_ppl2_wend_needs_vgg16_weights_not_a_detector(
        network_file, metric_data, random_vgg16_file, tmp_path, monkeypatch):
    monkeypatch.delenv("SG2_DETECTOR", raising=False)
    monkeypatch.delenv("SG2_VGG16_WEIGHTS", raising=False)
    base = ["metrics", "--network", str(network_file), "--data", str(metric_data),
            "--device", "cpu", "--cache-dir", str(tmp_path / "c"), "--num-images", "3"]
    result = CliRunner().invoke(cli, base + ["--metrics", "ppl2_wend",
                                             "--vgg16", str(random_vgg16_file)])
    assert result.exit_code == 0, result.output
    line = result.stdout.strip()
    assert line.startswith("metric ppl2_wend=")
    assert np.isfinite(float(line.split("=", 1)[1])) and float(line.split("=", 1)[1]) > 0

    result = CliRunner().invoke(cli, base + ["--metrics", "ppl2_wend"])
    assert result.exit_code == 1
    for name in ("perceptual path length", "--vgg16 FILE", "SG2_VGG16_WEIGHTS",
                 "--allow-random-vgg16"):
        assert name in result.output

    monkeypatch.setenv("SG2_VGG16_WEIGHTS", str(tmp_path / "nowhere.pth"))
    result = CliRunner().invoke(cli, base + ["--metrics", "ppl2_wend"])
    assert result.exit_code == 1 and "nowhere.pth does not exist" in result.output
    monkeypatch.delenv("SG2_VGG16_WEIGHTS")

    result = CliRunner().invoke(cli, base + ["--metrics", "ppl2_wend", "--allow-random-vgg16",
                                             "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["vgg16"] == "random (rehearsal)" and record["num_gen"] == 3
    assert "detector_sha256" not in record

    # The legacy metrics compare a centre crop: 8 px of this 16 px network is too small.
    result = CliRunner().invoke(cli, base + ["--metrics", "ppl_zend", "--allow-random-vgg16"])
    assert result.exit_code == 1 and "8 x 8 px for this 16 px network" in result.output


def test_training_with_ppl2_wend_writes_its_jsonl(random_vgg16_file, tmp_path, caplog,
                                                  monkeypatch):
    from sg2_container.options import TrainingOptions
    from sg2_container.training.loop import train

    monkeypatch.delenv("SG2_DETECTOR", raising=False)
    monkeypatch.delenv("SG2_VGG16_WEIGHTS", raising=False)
    data = write_synthetic_dataset(tmp_path / "d.zip", count=4, resolution=16)
    values = {"data": str(data), "outdir": str(tmp_path / "run"), "cfg": "paper256",
              "kimg": 0.004, "batch": 4, "cbase": 128, "cmax": 16, "map": 2, "workers": 0,
              "snap": 1, "kimg_per_tick": 0.004, "aug": "noaug", "gamma": 1.0, "seed": 3,
              "device": "cpu", "metrics": ("ppl2_wend",), "metrics_images": 2}
    with pytest.raises(UserError, match="--vgg16 FILE, the hyperparameter 'vgg16' .training., "
                                        "a training job input channel named 'vgg16', or set "
                                        "SG2_VGG16_WEIGHTS=FILE"):
        train(TrainingOptions(**values))
    assert not list((tmp_path / "run").glob("checkpoint-*"))

    with caplog.at_level(logging.INFO):
        assert train(TrainingOptions(**values, vgg16=str(random_vgg16_file))).finished
    (record,) = [json.loads(x) for x in
                 (tmp_path / "run" / "metric-ppl2_wend.jsonl").read_text().splitlines()]
    assert record["metric"] == "ppl2_wend" and record["num_gen"] == 2
    assert record["vgg16"] == random_vgg16_file.name
    assert np.isfinite(record["results"]["ppl2_wend"]) and record["results"]["ppl2_wend"] > 0
    assert "metric ppl2_wend=" in caplog.text
