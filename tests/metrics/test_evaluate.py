"""The whole path with a random Inception-v3 on tiny images: sizes checked up front, dataset
features cached and reused, `sg2 metrics` prints the values."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from sg2_container.cli.main import cli
from sg2_container.errors import UserError
from sg2_container.metrics import formulas
from sg2_container.metrics.detector import load_detector
from sg2_container.metrics.evaluate import EvaluationSettings, MetricEvaluator
from sg2_container.metrics.features import extract_dataset
from sg2_container.models.files import load_model
from sg2_container.data.dataset import ImageFolderDataset


@pytest.fixture(scope="module")
def detector(detector_file):
    return load_detector(detector_file)


def test_fid_of_the_dataset_against_itself_through_the_detector(detector, metric_data):
    dataset = ImageFolderDataset(metric_data)
    features = extract_dataset(dataset, range(4), detector, batch=2)
    assert features.shape == (4, 2048)
    assert abs(formulas.fid(features, features)) < 1e-6
    # ...which holds for any features: they must also depend on the image and not on the batch.
    assert np.asarray(features).std(axis=0).max() > 0
    np.testing.assert_allclose(extract_dataset(dataset, range(4), detector, batch=4), features,
                               rtol=1e-4, atol=1e-5)


def test_sizes_are_checked_before_any_image_is_made(detector, metric_data):
    with pytest.raises(UserError, match=r"fid50k compares against 50000 real images but the "
                                        r"dataset .* has 6: give --allow-small"):
        MetricEvaluator(["fid50k"], detector, EvaluationSettings(data=str(metric_data)))
    with pytest.raises(UserError, match="unknown metric 'fid5k' .*; valid names: fid50k_full, "):
        MetricEvaluator(["fid5k"], detector, EvaluationSettings(data=str(metric_data)))
    with pytest.raises(UserError, match="ppl2_wend need the LPIPS VGG16 distance"):
        MetricEvaluator(["ppl2_wend"], detector, EvaluationSettings(data=str(metric_data)))
    # Allowed: computed on the 6 images there are (12 with x-flips).
    evaluator = MetricEvaluator(["fid50k"], detector, EvaluationSettings(
        data=str(metric_data), allow_small=True, mirror=True, num_images=2))
    assert evaluator.real_sets["fid50k"].count == 2
    evaluator = MetricEvaluator(["fid50k"], detector, EvaluationSettings(
        data=str(metric_data), allow_small=True, mirror=True))
    assert evaluator.real_sets["fid50k"].count == 12


def test_dataset_features_are_cached_and_reused(detector, metric_data, network_file, tmp_path):
    G = load_model(network_file).G_ema
    settings = EvaluationSettings(data=str(metric_data), num_images=2, batch=4,
                                  cache_dir=tmp_path / "cache")
    first = MetricEvaluator(["fid50k_full"], detector, settings).evaluate(G)
    value = first["fid50k_full"]["results"]["fid50k_full"]
    assert np.isfinite(value) and value > 0 and first["fid50k_full"]["num_real"] == 6
    (cache,) = (tmp_path / "cache").glob("reals-*-n6.npy")
    assert detector.identity[:16] in cache.name
    # Plant other features in the cache: a second evaluation must use them, not the dataset.
    generated = MetricEvaluator(["fid50k_full"], detector, settings)
    planted = np.load(cache) + 5.0
    np.save(cache, planted)
    second = generated.evaluate(G)["fid50k_full"]["results"]["fid50k_full"]
    assert second > value + 2048 * 20  # the mean gap alone adds 2048 * 5^2
    # Same generated images both times (fixed latents): the difference is the planted shift.


def test_sg2_metrics_prints_values_and_refuses_bad_input(detector_file, metric_data, network_file,
                                                         tmp_path, monkeypatch):
    monkeypatch.delenv("SG2_DETECTOR", raising=False)
    base = ["metrics", "--network", str(network_file), "--data", str(metric_data),
            "--device", "cpu", "--cache-dir", str(tmp_path / "c")]
    result = CliRunner().invoke(cli, base + ["--metrics", "fid50k_full,kid50k_full",
                                             "--detector", str(detector_file),
                                             "--num-images", "3", "--json"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["metric"] for r in records] == ["fid50k_full", "kid50k_full"]
    assert all(np.isfinite(list(r["results"].values())).all() for r in records)

    result = CliRunner().invoke(cli, base + ["--metrics", "fid50k_full", "--num-images", "2",
                                             "--detector", str(detector_file)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("metric fid50k_full=")
    result = CliRunner().invoke(cli, base + ["--metrics", "fid50"])
    assert result.exit_code != 0 and "fid50k_full, kid50k_full, pr50k3_full" in result.output
    result = CliRunner().invoke(cli, base)
    assert result.exit_code == 1 and "--detector" in result.output and "SG2_DETECTOR" in result.output
    result = CliRunner().invoke(cli, base + ["--metrics", "pr50k3", "--detector", str(detector_file)])
    assert result.exit_code == 1 and "has 6" in result.output and "--allow-small" in result.output


def test_cache_files_tell_datasets_subsets_and_detectors_apart():
    from sg2_container.metrics.features import cache_name

    base = dict(dataset_fingerprint="sha256:" + "a" * 64, detector_identity="b" * 64,
                selection="n6")
    name = cache_name(**base)
    assert name == "reals-" + "a" * 16 + "-" + "b" * 16 + "-n6.npy"
    assert cache_name(**{**base, "dataset_fingerprint": "sha256:" + "c" * 64}) != name
    assert cache_name(**{**base, "detector_identity": "d" * 64}) != name
    assert cache_name(**{**base, "selection": "n6-xflip-subset3-seed0"}) != name


@pytest.mark.parametrize("kind", ["model.tar.gz", "folder"])
def test_sg2_metrics_takes_a_training_jobs_model_as_the_other_commands_do(
        detector_file, metric_data, network_file, tmp_path, kind):
    """A model.tar.gz was 'not a model file', an existing folder 'no such file'."""
    import tarfile

    if kind == "folder":
        network = tmp_path / "model"
        network.mkdir()
        (network / "model.pt").write_bytes(network_file.read_bytes())
    else:
        network = tmp_path / "model.tar.gz"
        with tarfile.open(network, "w:gz") as archive:
            archive.add(network_file, arcname="model.pt")
    result = CliRunner().invoke(cli, [
        "metrics", "--network", str(network), "--data", str(metric_data), "--device", "cpu",
        "--cache-dir", str(tmp_path / "c"), "--metrics", "fid50k_full", "--num-images", "2",
        "--detector", str(detector_file), "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["network"] == ("model.tar.gz/model.pt" if kind != "folder" else "model/model.pt")


@pytest.mark.parametrize("c_dim,channels,words", [
    (5, 3, "conditional on 5 labels, and the dataset"),
    (0, 4, "the network makes 4-channel images"),
])
def test_sg2_metrics_refuses_a_network_its_dataset_or_detector_cannot_measure(
        detector_file, metric_data, tmp_path, c_dim, channels, words):
    """These crashed as 'a bug' after the detector, data and network had loaded."""
    from sg2_container.models.files import save_model
    from sg2_container.models.networks import Generator

    torch.manual_seed(1)
    G = Generator(z_dim=8, w_dim=8, c_dim=c_dim, img_resolution=16, img_channels=channels,
                  mapping_kwargs=dict(num_layers=1),
                  synthesis_kwargs=dict(channel_base=64, channel_max=8, num_fp16_res=0))
    network = save_model(tmp_path / "odd.pt", G_ema=G.eval())
    result = CliRunner().invoke(cli, [
        "metrics", "--network", str(network), "--data", str(metric_data), "--device", "cpu",
        "--cache-dir", str(tmp_path / "c"), "--metrics", "fid50k_full", "--num-images", "2",
        "--detector", str(detector_file)])
    assert result.exit_code == 1, result.output
    assert words in result.output and "Traceback" not in result.output


def test_is50k_needs_two_images_in_each_of_its_ten_splits(detector, metric_data):
    """With 19 images or fewer some split held one image, and a split of one scores exactly 1:
    --num-images 2 gave is50k_mean=1, whatever the network."""
    settings = EvaluationSettings(data=str(metric_data), num_images=19)
    with pytest.raises(UserError, match=r"is50k needs at least 20 generated images \(10 splits "
                                        r"of at least 2 images; .* exactly 1 .*\), got 19"):
        MetricEvaluator(["is50k"], detector, settings)
    MetricEvaluator(["is50k"], detector, EvaluationSettings(data=str(metric_data), num_images=20))
    with pytest.raises(UserError, match=r"pr50k3_full needs at least 4 generated images \(each "
                                        r"image needs 3 neighbours besides itself\), got 3"):
        MetricEvaluator(["pr50k3_full"], detector, EvaluationSettings(data=str(metric_data),
                                                                      num_images=3))


def test_a_dataset_of_another_size_or_channel_count_is_refused(detector, network_file, tmp_path):
    """The detector resizes everything to 299 px, so a 32 px dataset against a 16 px network
    (or gray against RGB) was measured silently: almost surely the wrong dataset."""
    from PIL import Image

    from sg2_container.data.synthetic import write_synthetic_dataset

    G = load_model(network_file).G_ema  # 16 x 16 RGB
    larger = write_synthetic_dataset(tmp_path / "larger.zip", count=4, resolution=32)
    gray = tmp_path / "gray"
    gray.mkdir()
    for i in range(4):
        Image.fromarray(np.full([16, 16], 40 * i, np.uint8), mode="L").save(gray / f"{i}.png")
    for data, found in [(larger, "32 x 32 px RGB"), (gray, "16 x 16 px gray")]:
        evaluator = MetricEvaluator(["fid50k_full", "kid50k_full"], detector,
                                    EvaluationSettings(data=str(data), num_images=2))
        with pytest.raises(UserError) as caught:
            evaluator.evaluate(G)
        assert str(caught.value).startswith(
            f"the network makes 16 x 16 px RGB images and the dataset {str(data)!r} holds "
            f"{found} images: fid50k_full, kid50k_full compare the two"), str(caught.value)
    # is50k never looks at the dataset's images: nothing to refuse.
    MetricEvaluator(["is50k"], detector, EvaluationSettings(data=str(larger), num_images=20)
                    ).check_generator(G)


class _PixelDistance:
    """PPL's distance on the pixels themselves: enough to carry a NaN through."""

    @staticmethod
    def features(images):
        return images.flatten(1)


def test_a_network_whose_images_are_not_finite_gets_no_values(detector, metric_data,
                                                              network_file):
    """NaN images became arbitrary uint8 values before the detector: FID was a finite number."""
    G = load_model(network_file).G_ema
    with torch.no_grad():
        next(p for name, p in G.named_parameters() if "synthesis" in name).fill_(float("nan"))
    settings = EvaluationSettings(data=str(metric_data), num_images=3, batch=2)
    with pytest.raises(UserError, match=r"^fid50k_full, kid50k_full: the network's images are "
                                        r"not finite \(2 of a batch of 2 .*\): the network file "
                                        r"is damaged or its training diverged"):
        MetricEvaluator(["fid50k_full", "kid50k_full"], detector, settings).evaluate(G)
    with pytest.raises(UserError, match=r"^ppl2_wend: the network's images are not finite"):
        MetricEvaluator(["ppl2_wend"], None, settings, distance=_PixelDistance()).evaluate(G)


def test_every_batch_is_checked_for_non_finite_images():
    """A network that overflows for some latents only is caught at the batch that shows it."""
    from sg2_container.metrics.evaluate import FiniteImages

    class Overflowing:
        z_dim = 4

        def __call__(self, z):
            images = torch.zeros([len(z), 3, 2, 2])
            images[z[:, 0] > 1] = float("inf")
            return images

    checked = FiniteImages(Overflowing(), "fid50k_full")
    assert checked.z_dim == 4
    assert checked(torch.zeros([3, 4])).shape == (3, 3, 2, 2)
    with pytest.raises(UserError, match=r"\(1 of a batch of 3 hold NaN or infinite values\)"):
        checked(torch.tensor([[0.0] * 4, [2.0] * 4, [0.0] * 4]))


def test_each_metric_is_charged_the_shared_extraction_it_uses(detector, metric_data,
                                                              network_file, monkeypatch):
    """The first metric's total_time held all the generated (and real) features that the
    others reused, so kid50k_full looked almost free next to fid50k_full."""
    import time

    from sg2_container.metrics import evaluate as evaluate_module

    calls = []

    def slow(real):
        def work(*args, **kwargs):
            calls.append(real.__name__)
            time.sleep(0.4)
            return real(*args, **kwargs)
        return work

    monkeypatch.setattr(evaluate_module, "extract_generated",
                        slow(evaluate_module.extract_generated))
    monkeypatch.setattr(MetricEvaluator, "_real_features", slow(MetricEvaluator._real_features))
    G = load_model(network_file).G_ema
    records = MetricEvaluator(["fid50k_full", "kid50k_full"], detector, EvaluationSettings(
        data=str(metric_data), num_images=2, batch=4)).evaluate(G)
    assert calls == ["extract_generated", "_real_features"]  # still extracted once each
    assert [records[name]["total_time"] >= 0.8 for name in records] == [True, True], records


def test_a_stop_names_the_finished_abandoned_and_unstarted_metrics(detector, metric_data,
                                                                   network_file):
    """A stop used to end the evaluation with a bare EvaluationStopped: an on-demand run
    could not tell which values it had. Finished metrics are reported as they finish."""
    from sg2_container.metrics.features import EvaluationStopped, Workers

    asked = []

    def stop_at_third_check() -> bool:
        asked.append(True)
        return len(asked) >= 3  # ppl2_wend's two batches pass; fid50k_full's first stops

    reported = []
    evaluator = MetricEvaluator(
        ["ppl2_wend", "fid50k_full", "kid50k_full"], detector,
        EvaluationSettings(data=str(metric_data), num_images=2, batch=2),
        Workers(stop_requested=stop_at_third_check), distance=_PixelDistance())
    with pytest.raises(EvaluationStopped) as caught:
        evaluator.evaluate(load_model(network_file).G_ema,
                           on_record=lambda name, record: reported.append(name))
    assert len(asked) == 3 and reported == ["ppl2_wend"]
    assert list(caught.value.finished) == ["ppl2_wend"]
    assert caught.value.finished["ppl2_wend"]["results"]["ppl2_wend"] > 0
    assert caught.value.abandoned == "fid50k_full"
    assert caught.value.not_started == ("kid50k_full",)


def test_sg2_metrics_without_data_measures_against_the_training_set_the_file_records(
        detector_file, metric_data, network_file, tmp_path):
    """As the reference's calc_metrics.py without --data: the file's training_set_kwargs give
    the reals and their x-flips; a file without them, or naming a path not here, is told to
    give --data."""
    from sg2_container.models.files import load_model, save_model

    G = load_model(network_file).G_ema

    def network(name, metadata):
        return save_model(tmp_path / name, G_ema=G, metadata=metadata)

    recorded = network("recorded.pt", {"training_set_kwargs": {
        "class_name": "training.dataset.ImageFolderDataset", "path": str(metric_data),
        "use_labels": False, "max_size": 6, "xflip": True, "resolution": 16}})

    def measure(model, *extra):
        cache = tmp_path / f"cache-{model.stem}-{len(extra)}"
        result = CliRunner().invoke(cli, [
            "metrics", "--network", str(model), "--device", "cpu", "--cache-dir", str(cache),
            "--metrics", "fid50k", "--allow-small", "--num-images", "2",
            "--detector", str(detector_file), *extra])
        return result, sorted(p.name for p in cache.glob("reals-*")) if cache.exists() else []

    result, caches = measure(recorded)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("metric fid50k=")
    assert len(caches) == 1 and caches[0].endswith("-xflip.npy")  # the reals and their mirrors
    result, caches = measure(recorded, "--no-mirror")
    assert result.exit_code == 0 and "xflip" not in caches[0], result.output
    subset = network("subset.pt", {"training_set_kwargs": {
        "path": str(metric_data), "max_size": 3, "random_seed": 7, "xflip": False}})
    result, caches = measure(subset)
    assert result.exit_code == 0 and caches[0].endswith("-subset3-seed7.npy"), result.output

    result, _ = measure(network("bare.pt", {}))
    assert result.exit_code == 1 and "bare.pt records no training set" in result.output
    assert "--data" in result.output
    elsewhere = network("elsewhere.pt", {"training_set_kwargs": {
        "path": "/opt/ml/input/data/train/animeface.zip", "xflip": False}})
    result, _ = measure(elsewhere)
    assert result.exit_code == 1 and "was trained on /opt/ml/input/data/train/animeface.zip, " \
        "which is not on this machine" in result.output and "--data" in result.output
