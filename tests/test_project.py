"""Projection: the reference's schedule and regulariser, recovery of a generated image, files,
errors and stopping. Tiny networks (32 px, <= 32 channels) and a random VGG16 from a temp file."""
import io
import math
import threading
import time

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

from sg2_container.cli.main import cli
from sg2_container.errors import Stopped, UserError
from sg2_container.io.atomic import temp_path
from sg2_container.inference.latents import ws_for_seeds
from sg2_container.inference.lpips_vgg import load_distance_network
from sg2_container.inference.project import (
    ProjectOptions,
    folder_names,
    learning_rate,
    load_target,
    noise_regularisation,
    project,
    project_images,
    w_noise_scale,
)
from sg2_container.models.files import save_model
from sg2_container.models.networks import Generator

FAST = {"w_avg_samples": 500}


def tiny_generator(c_dim: int = 0) -> Generator:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return Generator(z_dim=32, c_dim=c_dim, w_dim=32, img_resolution=32, img_channels=3,
                         mapping_kwargs={"num_layers": 2},
                         synthesis_kwargs={"channel_base": 256, "channel_max": 32}).eval()


@torch.no_grad()
def render(G, ws) -> np.ndarray:
    images = G.synthesis(ws, noise_mode="const")
    return (images * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()


@pytest.fixture(scope="module")
def G():
    return tiny_generator()


@pytest.fixture(scope="module")
def distance(random_vgg16_file):
    return load_distance_network(random_vgg16_file)[0]


def as_batch(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None].float()


# ---- the schedule and the regulariser, against the facts sheet's formulas ----

def test_learning_rate_ramps_up_then_down_along_a_cosine():
    options = ProjectOptions()
    assert learning_rate(0.0, options) == 0.0
    assert learning_rate(0.025, options) == pytest.approx(0.05)  # half-way up the warm-up
    assert learning_rate(0.5, options) == pytest.approx(0.1)
    assert learning_rate(0.875, options) == pytest.approx(0.1 * (0.5 - 0.5 * math.cos(math.pi * 0.5)))
    assert learning_rate(0.999, options) < 1e-5


def test_exploration_noise_fades_quadratically_to_zero_at_three_quarters():
    options = ProjectOptions()
    assert w_noise_scale(0.0, 2.0, options) == pytest.approx(2.0 * 0.05)
    assert w_noise_scale(0.375, 2.0, options) == pytest.approx(2.0 * 0.05 * 0.25)
    assert w_noise_scale(0.75, 2.0, options) == 0.0 == w_noise_scale(0.9, 2.0, options)


def test_noise_regulariser_sums_shifted_products_over_the_pyramid():
    ones = torch.ones([16, 16])  # every level's two mean products are 1: levels 16 and 8
    assert float(noise_regularisation([ones])) == pytest.approx(4.0)
    assert float(noise_regularisation([torch.ones([4, 4])])) == pytest.approx(2.0)
    stripes = torch.tensor([1.0, -1.0]).repeat(8).expand(16, 16)  # x: -1 per level, y: +1
    assert float(noise_regularisation([stripes])) == pytest.approx(2.0 + 2.0 * 0)  # pooled: 0
    white = torch.randn([64, 64], generator=torch.Generator().manual_seed(0))
    assert float(noise_regularisation([white])) < 0.05


# ---- the optimisation ----

def test_projection_of_a_generated_image_lowers_the_distance_and_recovers_w(G, distance):
    true_ws = ws_for_seeds(G, [5])
    target = render(G, true_ws)
    options = ProjectOptions(num_steps=40, **FAST)
    projection = project(G, target, distance, options=options)
    curve = projection.distances
    assert len(curve) == 40 and projection.w_steps.shape == (40, G.w_dim)
    assert np.mean(curve[-5:]) < 0.5 * np.mean(curve[:5])
    start_ws = projection.w_avg.reshape(1, 1, -1).repeat(1, G.num_ws, 1)
    final_image, start_image = render(G, projection.ws()), render(G, start_ws)
    with torch.no_grad():
        final = float(distance.distance(as_batch(final_image), as_batch(target)))
        start = float(distance.distance(as_batch(start_image), as_batch(target)))
    assert final < 0.5 * start
    # and w itself moved towards the one that drew the target
    assert (projection.w_steps[-1] - true_ws[0, 0]).norm() < (projection.w_avg - true_ws[0, 0]).norm()


def test_same_seed_same_projection_and_the_model_is_left_untouched(G, distance):
    before = {k: v.clone() for k, v in G.state_dict().items()}
    target = render(G, ws_for_seeds(G, [9]))
    one = project(G, target, distance, options=ProjectOptions(num_steps=3, seed=1, **FAST))
    two = project(G, target, distance, options=ProjectOptions(num_steps=3, seed=1, **FAST))
    other = project(G, target, distance, options=ProjectOptions(num_steps=3, seed=2, **FAST))
    assert torch.equal(one.w_steps, two.w_steps)
    assert not torch.equal(one.w_steps, other.w_steps)
    for name, value in G.state_dict().items():  # noise maps are optimised on a copy
        assert torch.equal(value, before[name]), name


def test_stop_event_stops_between_steps(G, distance):
    stop = threading.Event()
    seen = []

    def on_step(step, dist):
        seen.append(step)
        if step == 2:
            stop.set()

    target = render(G, ws_for_seeds(G, [1]))
    with pytest.raises(Stopped, match="before step 3 of 50"):
        project(G, target, distance, options=ProjectOptions(num_steps=50, **FAST), stop=stop,
                on_step=on_step)
    assert seen == [1, 2]


# ---- targets ----

def test_targets_are_centre_cropped_and_resized(tmp_path):
    wide = np.zeros([20, 60, 3], dtype=np.uint8)
    wide[:, 20:40] = (200, 100, 50)  # the centre square; red-ish sides are cropped away
    wide[:, :20] = wide[:, 40:] = (255, 0, 0)
    PIL.Image.fromarray(wide).save(tmp_path / "wide.png")
    image = load_target(tmp_path / "wide.png", 8, 3)
    assert image.shape == (8, 8, 3) and image.dtype == np.uint8
    assert np.abs(image.astype(int) - (200, 100, 50)).max() <= 2
    gray = load_target(tmp_path / "wide.png", 8, 1)
    assert gray.shape == (8, 8, 1)


@pytest.mark.parametrize("channels", [3, 1])
def test_a_transparent_target_looks_as_prepare_writes_the_image(tmp_path, channels):
    """Transparent pixels (stored black here, as many exporters do) once came out black: the
    model trained on the same file after `sg2 prepare` saw them on its white background."""
    from sg2_container.data.convert import convert_image
    from sg2_container.data.options import PrepareOptions

    logo = np.zeros([16, 16, 4], dtype=np.uint8)
    logo[4:12, 4:12] = (200, 30, 30, 255)
    PIL.Image.fromarray(logo, "RGBA").save(tmp_path / "logo.png")
    options = PrepareOptions(source=str(tmp_path), dest=str(tmp_path / "d.zip"), width=16,
                             channels=channels)
    prepared = convert_image((tmp_path / "logo.png").read_bytes(), options)
    trained_on = np.asarray(PIL.Image.open(io.BytesIO(prepared.png))).reshape(16, 16, channels)
    target = load_target(tmp_path / "logo.png", 16, channels)
    assert target[0, 0].tolist() == [255] * channels
    assert np.array_equal(target, trained_on)


def test_a_target_that_is_not_an_image_is_a_named_error(tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(UserError, match="notes.png is not an image"):
        load_target(bad, 32, 3)
    with pytest.raises(UserError, match="missing.png: no such file"):
        load_target(tmp_path / "missing.png", 32, 3)


def test_folder_names_are_stems_made_unique():
    assert folder_names(["a/x.png", "b/x.jpg", "y.png", "c/x.png"]) == ["x", "x-2", "y", "x-3"]


def test_a_conditional_model_needs_a_class(tmp_path):
    G = tiny_generator(c_dim=3)
    with pytest.raises(UserError, match=r"conditional \(3 classes\).*--class 0..2"):
        project_images(G, [tmp_path / "any.png"], tmp_path / "out", ProjectOptions(), device="cpu")
    with pytest.raises(UserError, match="class=5"):
        project_images(G, [tmp_path / "any.png"], tmp_path / "out", ProjectOptions(class_idx=5),
                       device="cpu")


@pytest.mark.parametrize("channels", [2, 4])
def test_a_network_vgg16_cannot_compare_is_refused_before_any_work(tmp_path, channels):
    """A 4-channel network ended as 'a bug' (the RGB target against RGBA renderings)."""
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=channels,
                  mapping_kwargs={"num_layers": 1},
                  synthesis_kwargs={"channel_base": 64, "channel_max": 8}).eval()
    image = tmp_path / "face.png"
    PIL.Image.new("RGB", (8, 8)).save(image)
    with pytest.raises(UserError, match=f"1- or 3-channel networks, and this one makes "
                                        f"{channels}-channel images"):
        project_images(G, [image], tmp_path / "out", ProjectOptions(), device="cpu")
    assert not (tmp_path / "out").exists()


def test_stopping_keeps_finished_targets_and_writes_nothing_half(G, random_vgg16_file, tmp_path):
    for name, seed in (("first", 1), ("second", 2)):
        PIL.Image.fromarray(render(G, ws_for_seeds(G, [seed]))).save(tmp_path / f"{name}.png")
    outdir = tmp_path / "out"
    stop = threading.Event()

    def stop_when_the_first_is_written():
        deadline = time.monotonic() + 120
        while not (outdir / "first" / "projected_w.npz").exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        stop.set()

    watcher = threading.Thread(target=stop_when_the_first_is_written, daemon=True)
    watcher.start()
    options = ProjectOptions(num_steps=25, vgg16=str(random_vgg16_file), **FAST)
    with pytest.raises(Stopped):
        project_images(G, [tmp_path / "first.png", tmp_path / "second.png"], outdir, options,
                       device="cpu", stop=stop, progress=False)
    watcher.join()
    assert sorted(p.name for p in outdir.iterdir()) == ["first"]
    assert sorted(p.name for p in (outdir / "first").iterdir()) == [
        "proj.png", "projected_w.npz", "target.png"]

    # A killed projection (no chance to clean up) leaves a temporary folder; the next run in
    # that folder removes it and leaves the finished targets alone.
    # Another writer's temporary (for a target this run does not project) is left alone.
    killed, other = temp_path(outdir / "second"), temp_path(outdir / "third")
    for folder in (killed, other):
        folder.mkdir()
        (folder / "target.png").write_bytes(b"half")
    stop = threading.Event()
    stop.set()
    with pytest.raises(Stopped):
        project_images(G, [tmp_path / "second.png"], outdir, options, device="cpu", stop=stop,
                       progress=False)
    assert sorted(p.name for p in outdir.iterdir()) == sorted(["first", other.name])


# ---- sg2 project ----

def test_sg2_project_writes_the_reference_files(G, random_vgg16_file, tmp_path):
    model = save_model(tmp_path / "model.pt", G_ema=G)
    target = tmp_path / "face.jpg"
    PIL.Image.fromarray(render(G, ws_for_seeds(G, [3]))).resize((48, 40)).save(target)
    outdir = tmp_path / "out"
    result = CliRunner().invoke(cli, [
        "project", "--network", str(model), "--target", str(target), "--outdir", str(outdir),
        "--num-steps", "4", "--w-avg-samples", "200", "--vgg16", str(random_vgg16_file),
        "--device", "cpu", "--save-video"])
    assert result.exit_code == 0, result.output
    folder = outdir / "face"
    assert sorted(p.name for p in folder.iterdir()) == [
        "proj.mp4", "proj.png", "projected_w.npz", "target.png"]
    w = np.load(folder / "projected_w.npz")["w"]
    assert w.shape == (1, G.num_ws, G.w_dim) and w.dtype == np.float32
    # projected_w.npz alone reproduces proj.png (rendered with the model's stored noise)
    proj = np.asarray(PIL.Image.open(folder / "proj.png"))
    assert np.array_equal(proj, render(G, torch.from_numpy(w)))
    assert np.asarray(PIL.Image.open(folder / "target.png")).shape == (32, 32, 3)
    assert "distance" in result.output and "face" in result.output


def test_sg2_project_without_vgg16_weights_names_what_to_supply(G, tmp_path, monkeypatch):
    monkeypatch.delenv("SG2_VGG16_WEIGHTS", raising=False)
    model = save_model(tmp_path / "model.pt", G_ema=G)
    PIL.Image.fromarray(render(G, ws_for_seeds(G, [3]))).save(tmp_path / "t.png")
    result = CliRunner().invoke(cli, ["project", "--network", str(model), "--target",
                                      str(tmp_path / "t.png"), "--outdir", str(tmp_path / "o"),
                                      "--device", "cpu"])
    assert result.exit_code == 1
    assert "vgg16-397923af.pth" in result.output and "--vgg16" in result.output
    assert "Traceback" not in result.output
    not_image = tmp_path / "readme.txt"
    not_image.write_text("hello")
    result = CliRunner().invoke(cli, ["project", "--network", str(model), str(not_image),
                                      "--outdir", str(tmp_path / "o"), "--device", "cpu",
                                      "--allow-random-vgg16"])
    assert result.exit_code == 1 and "readme.txt is not an image" in result.output
    result = CliRunner().invoke(cli, ["project", "--network", str(model), "--outdir",
                                      str(tmp_path / "o"), "--num-steps", "0"])
    assert result.exit_code == 1
    assert "--num-steps=0 is not allowed: an integer >= 1" in result.output
    result = CliRunner().invoke(cli, ["project", "--network", str(model), "--outdir",
                                      str(tmp_path / "o")])
    assert result.exit_code == 1 and "no target image: give --target IMG" in result.output
