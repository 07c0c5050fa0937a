"""generate, style-mix and interpolate against direct computations with a tiny generator."""
import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

from sg2_container.cli.main import cli
from sg2_container.errors import UserError
from sg2_container.inference.generate import generate_to_folder
from sg2_container.io.images import to_uint8
from sg2_container.inference.interpolate import slerp, walk
from sg2_container.inference.latents import mix_styles, ws_for_seeds
from sg2_container.inference.options import GenerateOptions, InterpolateOptions, StyleMixOptions
from sg2_container.inference.style_mix import style_mix_to_folder


def _read(path):
    with PIL.Image.open(path) as image:
        return np.asarray(image).astype(int)


def test_same_seed_same_image_whatever_the_batch_size(tmp_path, tiny_model):
    G, _ = tiny_model
    seeds = ("0-6",)
    outputs = {}
    for batch in (1, 3, 7):
        out = tmp_path / f"b{batch}"
        generate_to_folder(G, GenerateOptions(seeds=seeds, truncation_psi=0.7, batch_size=batch),
                           out, torch.device("cpu"))
        outputs[batch] = {p.name: _read(p) for p in sorted(out.glob("*.png"))}
    assert len(outputs[1]) == 7
    for batch in (3, 7):
        for name, image in outputs[1].items():
            assert np.abs(outputs[batch][name] - image).max() <= 1, (batch, name)
    # and the images differ between seeds (the comparison above can fail)
    assert np.abs(outputs[1]["seed0000.png"] - outputs[1]["seed0001.png"]).max() > 10


@pytest.mark.parametrize("noise_mode,rows", [("const", [8, 2]), ("none", [8, 2]), ("random", [1] * 10)])
def test_default_batch_on_a_cpu_keeps_random_noise_batches_to_one_image(tmp_path, tiny_model,
                                                                        noise_mode, rows):
    # A random-noise batch holds every image's activations at once (5.7 against 1.05 GiB at
    # 1024 px, and slower); const and none run the large blocks per sample, so 8 is cheap.
    G, _ = tiny_model
    seen = []
    G.synthesis.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    generate_to_folder(G, GenerateOptions(seeds=("0-9",), noise_mode=noise_mode), tmp_path,
                       torch.device("cpu"))
    assert seen == rows
    assert len(list(tmp_path.glob("seed*.png"))) == 10


def test_save_w_grid_and_projected_w_round_trip(tmp_path, tiny_model):
    G, path = tiny_model
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["generate", "--network", str(path), "--seeds", "2,5",
                                      "--trunc", "0.5", "--save-w", "--grid", "--outdir", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "grid.png", "seed0002.npz", "seed0002.png", "seed0005.npz", "seed0005.png"]
    with np.load(out / "seed0005.npz") as data:
        w = data["w"]
    assert w.shape == (1, G.num_ws, G.w_dim)
    expected = ws_for_seeds(G, [5], truncation_psi=0.5)
    assert np.allclose(w, expected.numpy(), atol=1e-6)
    grid = _read(out / "grid.png")
    assert grid.shape == (16, 32, 3)
    assert np.array_equal(grid[:, 16:], _read(out / "seed0005.png"))
    # Rendering the saved W gives the seed's image back.
    again = tmp_path / "again"
    result = CliRunner().invoke(cli, ["generate", "--network", str(path), "--projected-w",
                                      str(out / "seed0005.npz"), "--outdir", str(again)])
    assert result.exit_code == 0, result.output
    assert [p.name for p in again.iterdir()] == ["proj00.png"]
    assert np.abs(_read(again / "proj00.png") - _read(out / "seed0005.png")).max() <= 1


def test_projected_w_of_another_network_is_a_named_error(tmp_path, tiny_model):
    G, path = tiny_model
    bad = tmp_path / "w.npz"
    np.savez(bad, w=np.zeros([1, G.num_ws + 1, G.w_dim], np.float32))
    result = CliRunner().invoke(cli, ["generate", "--network", str(path), "--projected-w",
                                      str(bad), "--outdir", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert f"'w' has shape [1, {G.num_ws + 1}, {G.w_dim}]" in result.output
    assert "Traceback" not in result.output


def test_style_mix_cells_equal_a_direct_computation(tmp_path, tiny_model):
    G, path = tiny_model
    out = tmp_path / "mix"
    result = CliRunner().invoke(cli, ["style-mix", "--network", str(path), "--rows", "1,2",
                                      "--cols", "3-5", "--styles", "0,2", "--trunc", "0.8",
                                      "--outdir", str(out)])
    assert result.exit_code == 0, result.output
    rows, cols = [1, 2], [3, 4, 5]
    row_ws = ws_for_seeds(G, rows, truncation_psi=0.8)
    col_ws = ws_for_seeds(G, cols, truncation_psi=0.8)
    mixed = mix_styles(row_ws, col_ws, [0, 2])
    names = {f"{r}-{c}.png" for r in rows for c in cols} | {f"{s}-{s}.png" for s in rows + cols}
    assert {p.name for p in out.iterdir()} == names | {"grid.png"}
    grid = _read(out / "grid.png")
    assert grid.shape == (16 * 3, 16 * 4, 3)
    assert grid[:16, :16].max() == 0  # the black corner
    with torch.no_grad():
        for i, r in enumerate(rows):
            for j, c in enumerate(cols):
                expected = to_uint8(G.synthesis(mixed[i, j][None], noise_mode="const"))[0]
                cell = _read(out / f"{r}-{c}.png")
                assert np.abs(cell - expected).max() <= 1, (r, c)
                assert np.array_equal(grid[16 * (i + 1):16 * (i + 2), 16 * (j + 1):16 * (j + 2)], cell)
            alone = to_uint8(G.synthesis(row_ws[i][None], noise_mode="const"))[0]
            assert np.abs(_read(out / f"{r}-{r}.png") - alone).max() <= 1
            assert np.array_equal(grid[16 * (i + 1):16 * (i + 2), :16], _read(out / f"{r}-{r}.png"))
        for j, c in enumerate(cols):
            assert np.array_equal(grid[:16, 16 * (j + 1):16 * (j + 2)], _read(out / f"{c}-{c}.png"))
    # a mixed cell differs from both of its parents
    assert np.abs(_read(out / "1-3.png") - _read(out / "1-1.png")).max() > 0
    assert np.abs(_read(out / "1-3.png") - _read(out / "3-3.png")).max() > 0


def test_style_mix_layer_out_of_range_is_named(tmp_path, tiny_model):
    G, _ = tiny_model
    with pytest.raises(UserError, match=f"0..{G.num_ws - 1}"):
        style_mix_to_folder(G, StyleMixOptions(rows=("1",), cols=("2",), styles=(str(G.num_ws),)),
                            tmp_path, torch.device("cpu"))


def test_style_mix_default_layers_are_the_references_cut_to_the_network(tmp_path, tiny_model):
    # 0-6 on a 14-ws (256 px) network; a 16 px network has 6 ws, so all of them (0-5): every
    # mixed cell is then the column seed's image. (It refused the default before.)
    G, path = tiny_model
    assert StyleMixOptions(rows=("1",), cols=("2",)).style_layers(14) == list(range(7))
    assert StyleMixOptions(rows=("1",), cols=("2",)).style_layers(4) == list(range(4))
    assert StyleMixOptions(rows=("1",), cols=("2",), styles=("8-13",)).style_layers(14) == \
        list(range(8, 14))
    out = tmp_path / "mix"
    result = CliRunner().invoke(cli, ["style-mix", "--network", str(path), "--rows", "1",
                                      "--cols", "2", "--outdir", str(out)])
    assert result.exit_code == 0, result.output
    assert G.num_ws == 6
    assert np.abs(_read(out / "1-2.png") - _read(out / "2-2.png")).max() <= 1
    assert np.abs(_read(out / "1-1.png") - _read(out / "2-2.png")).max() > 1


def test_walk_visits_the_keys_and_loops():
    keys = torch.randn(3, 4, 5)
    frames = walk(keys, 4, "lerp", loop=False)
    assert frames.shape == (2 * 4 + 1, 4, 5)
    assert torch.equal(frames[0], keys[0]) and torch.equal(frames[4], keys[1])
    assert torch.equal(frames[-1], keys[2])
    assert torch.allclose(frames[2], (keys[0] + keys[1]) / 2)
    looped = walk(keys, 4, "slerp", loop=True)
    assert looped.shape == (3 * 4, 4, 5)
    assert torch.allclose(looped[8], keys[2], atol=1e-6)


def test_slerp_keeps_the_angle_rate_and_interpolates_norms():
    a = torch.tensor([2.0, 0.0])
    b = torch.tensor([0.0, 4.0])
    mid = slerp(a, b, torch.tensor([0.5]))[0]
    assert torch.allclose(mid, torch.tensor([3.0, 3.0]) / 2**0.5 * 1.0, atol=1e-5)  # 45 deg, |3|
    same = slerp(a, a, torch.tensor([0.0, 0.3, 1.0]))
    assert torch.allclose(same, a.expand(3, 2))


def test_interpolate_writes_videos_and_a_contact_sheet(tmp_path, tiny_model):
    G, path = tiny_model
    w_file = tmp_path / "key.npz"
    np.savez(w_file, w=ws_for_seeds(G, [9]).numpy())
    out = tmp_path / "walk"
    result = CliRunner().invoke(cli, ["interpolate", "--network", str(path), "--seeds", "1,2",
                                      "--projected-w", str(w_file), "--frames", "3",
                                      "--format", "mp4,gif", "--sheet-frames", "4",
                                      "--outdir", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["walk-sheet.png", "walk.gif", "walk.mp4"]
    with PIL.Image.open(out / "walk.gif") as gif:
        assert gif.n_frames == 2 * 3 + 1
    sheet = _read(out / "walk-sheet.png")
    assert sheet.shape == (32, 32, 3)
    # the sheet's last cell is the last key point: the projected W's image
    with torch.no_grad():
        last = to_uint8(G.synthesis(ws_for_seeds(G, [9]), noise_mode="const"))[0]
    assert np.abs(sheet[16:, 16:] - last).max() <= 1
    assert (out / "walk.mp4").stat().st_size > 0


@pytest.mark.parametrize("command,args,message", [
    ("generate", ["--seeds", "a,b"], "bad seed 'a'"),
    ("generate", ["--trunc", "nan"], "Error: --trunc=nan is not allowed"),
    ("generate", ["--trunc", "inf"], "Error: --trunc=inf is not allowed"),
    # the flag typed, not the field (class_idx, the batch job's name for it)
    ("generate", ["--seeds", "0", "--class", "-1"],
     "Error: --class=-1 is not allowed: an integer >= 0"),
    ("style-mix", ["--rows", "1", "--cols", "2", "--class", "-1"], "Error: --class=-1 is not"),
    ("interpolate", ["--seeds", "1,2", "--class", "-1"], "Error: --class=-1 is not allowed"),
    ("project", ["--class", "-1", "--allow-random-vgg16", "t.png"], "Error: --class=-1 is not"),
    ("generate", ["--seeds", "5-1"], "Error: --seeds: seed range '5-1' is empty"),
    ("style-mix", ["--rows", "1", "--cols", "2", "--styles", "x"],
     "Error: --styles='x' is not allowed"),
    ("style-mix", ["--rows", "1-", "--cols", "2"], "--rows"),
    ("interpolate", ["--seeds", "3"], "a walk needs at least 2"),
    ("interpolate", [], "no key points"),
    ("interpolate", ["--seeds", "1,2", "--format", "avi"], "avi"),
])
def test_bad_input_is_a_named_error_without_traceback(tmp_path, tiny_model, command, args, message):
    _, path = tiny_model
    result = CliRunner().invoke(cli, [command, "--network", str(path), "--outdir",
                                      str(tmp_path / "o")] + args)
    assert result.exit_code in (1, 2), result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_class_out_of_range_for_a_conditional_network(tmp_path):
    from sg2_container.models.files import save_model
    from tests.inference.conftest import tiny_generator

    path = tmp_path / "cond.pt"
    save_model(path, G_ema=tiny_generator(c_dim=3))
    for command, extra in (("generate", []), ("style-mix", ["--rows", "1", "--cols", "2"]),
                           ("interpolate", ["--seeds", "1,2"])):
        result = CliRunner().invoke(cli, [command, "--network", str(path), "--class", "3",
                                          "--outdir", str(tmp_path / "o")] + extra)
        assert result.exit_code == 1 and "--class=3 is out of range" in result.output, command
    result = CliRunner().invoke(cli, ["style-mix", "--network", str(path), "--class", "2", "--rows",
                                      "1", "--cols", "2", "--styles", "0-3", "--outdir",
                                      str(tmp_path / "ok")])
    assert result.exit_code == 0, result.output


def test_options_decode_like_requests():
    from sg2_container.options.schema import decode_hyperparameters

    values = decode_hyperparameters(StyleMixOptions, {"rows": [1, 2], "cols": [3], "styles": [0, 1]})
    options = StyleMixOptions(**values)
    assert options.row_seeds == [1, 2] and options.col_seeds == [3]
    assert options.style_layers(14) == [0, 1]
    options = InterpolateOptions(**decode_hyperparameters(InterpolateOptions, {"seeds": "1-3"}))
    assert options.seed_values == [1, 2, 3]


@pytest.mark.parametrize("args,words", [
    (["interpolate", "--seeds", "0-50000", "--frames", "1000"],
     "50001 seeds x frames=1000 make 50000001 frames; the limit is 100000"),
    (["style-mix", "--rows", "0-9999", "--cols", "0-9999"],
     "rows: seeds '0-9999' ask for 10000 images or more; at most 1024 are allowed here (a "
     "style-mixing grid has at most 1024 cells, rows x cols)"),
    (["style-mix", "--rows", "0-99", "--cols", "0-99"], "rows x cols = 10000 cells"),
    (["generate", "--seeds", "0-1024", "--grid"],
     "generate --grid: 1025 seeds, but grid.png holds at most 1024 images"),
    # The hint names the way to raise the cap only where there is one.
    (["generate", "--seeds", "0-100000"], "(raise max_seeds, --max-seeds, if you mean it)"),
    (["interpolate", "--seeds", "0-100000"], "(a walk has at most 100000 frames)"),
])
def test_work_beyond_the_caps_is_refused_before_loading_the_model(tmp_path, tiny_model, args,
                                                                   words):
    """These once ran out of memory (11 GB and growing, or 38 GB) with no output."""
    _, path = tiny_model
    result = CliRunner().invoke(cli, [*args, "--network", str(path), "--outdir",
                                      str(tmp_path / "o")])
    assert result.exit_code == 1, result.output
    assert words in result.output
    assert not (tmp_path / "o").exists()


def test_a_walk_is_rendered_in_chunks_not_all_at_once(tmp_path, tiny_model):
    """The walk's ws and frames stream to the writers: synthesis sees chunks of at most 64
    frames, and the sheet still holds the frames it names."""
    from sg2_container.inference.interpolate import interpolate_to_folder, walk_chunks

    G, _ = tiny_model
    keys = ws_for_seeds(G, [1, 2, 3])
    chunks = list(walk_chunks(iter(keys), 100, "slerp", loop=True))
    assert max(len(c) for c in chunks) == 64
    walked = torch.cat(chunks)  # the whole loop, passing through each key every 100 frames
    assert len(walked) == 300
    for i in range(3):
        torch.testing.assert_close(walked[100 * i], keys[i])
    seen = []
    G.synthesis.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    options = InterpolateOptions(seeds=("1,2",), frames=150, formats=("gif", "mp4"),
                                 sheet_frames=2, batch_size=100)
    written = interpolate_to_folder(G, options, tmp_path, torch.device("cpu"))
    assert sum(seen) == 151 and max(seen) == 64
    assert [p.name for p in written] == ["walk.gif", "walk.mp4", "walk-sheet.png"]
    sheet = _read(tmp_path / "walk-sheet.png")
    with torch.no_grad():
        last = to_uint8(G.synthesis(ws_for_seeds(G, [2]), noise_mode="const"))[0]
    assert np.abs(sheet[:, 16:] - last).max() <= 1


def test_a_repeated_seed_is_one_file(tmp_path, tiny_model):
    _, path = tiny_model
    result = CliRunner().invoke(cli, ["generate", "--network", str(path), "--seeds", "3,3",
                                      "--outdir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "wrote 1 image(s)" in result.output


def test_an_output_folder_that_cannot_be_made_is_named_before_the_model_loads(tmp_path):
    for command in (["generate", "--seeds", "1"], ["project", "--target", str(tmp_path / "f.png")]):
        # The network is a folder with no model in it: the folder check comes first.
        result = CliRunner().invoke(cli, [*command, "--network", str(tmp_path), "--outdir",
                                          "/proc/sg2-test/out"])
        assert result.exit_code == 1, result.output
        assert "output folder /proc/sg2-test/out: cannot create or write in it" in result.output


def test_a_four_channel_model_writes_rgba_pngs(tmp_path):
    from sg2_container.models.files import save_model
    from sg2_container.models.networks import Generator
    from tests.inference.conftest import TINY_G

    save_model(tmp_path / "rgba.pt", G_ema=Generator(c_dim=0, img_channels=4, **TINY_G).eval())
    result = CliRunner().invoke(cli, ["generate", "--network", str(tmp_path / "rgba.pt"),
                                      "--seeds", "1,2", "--grid", "--outdir", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    for name in ("seed0001.png", "grid.png"):
        with PIL.Image.open(tmp_path / "o" / name) as image:
            assert image.mode == "RGBA"


def test_project_takes_a_model_tar_gz(tmp_path, tiny_model):
    import tarfile

    _, path = tiny_model
    with tarfile.open(tmp_path / "model.tar.gz", "w:gz") as tar:
        tar.add(path, arcname="model.pt")
    PIL.Image.fromarray(np.full([16, 16, 3], 80, np.uint8)).save(tmp_path / "face.png")
    result = CliRunner().invoke(cli, ["project", "--network", str(tmp_path / "model.tar.gz"),
                                      "--target", str(tmp_path / "face.png"), "--num-steps", "1",
                                      "--allow-random-vgg16", "--outdir", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p" / "face" / "projected_w.npz").is_file()


def test_a_16_bit_target_keeps_its_levels(tmp_path):
    """A 16-bit gray PNG (mode I;16) once came out almost white: convert() clips at 255."""
    from sg2_container.inference.project import load_target

    levels = (np.arange(256, dtype=np.uint16).reshape(16, 16) * 257)
    PIL.Image.fromarray(levels).save(tmp_path / "deep.png")
    with PIL.Image.open(tmp_path / "deep.png") as image:
        assert image.mode.startswith("I")
    target = load_target(tmp_path / "deep.png", 16, 3)
    assert np.abs(target[:, :, 0].astype(int) - np.arange(256).reshape(16, 16)).max() <= 1
