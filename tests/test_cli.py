"""The `sg2` CLI as a user meets it: help everywhere, info, generate."""
import json
import subprocess
import sys

import click
import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

from sg2_container.cli.main import cli
from sg2_container.models.files import save_model
from sg2_container.models.networks import Generator

TINY_G = dict(z_dim=16, w_dim=16, img_resolution=16, mapping_kwargs=dict(num_layers=2),
              synthesis_kwargs=dict(channel_base=256, channel_max=16))


def _walk(group, prefix=()):
    for name, command in group.commands.items():
        yield prefix + (name,), command
        if isinstance(command, click.Group):
            yield from _walk(command, prefix + (name,))


def test_every_command_and_option_has_help():
    for path, command in _walk(cli):
        assert command.help, f"sg2 {' '.join(path)} has no help text"
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"sg2 {' '.join(path)} {param.opts[0]} has no help"
        result = CliRunner().invoke(cli, list(path) + ["--help"])
        assert result.exit_code == 0, result.output


def test_info_reports_versions_and_active_ops():
    result = CliRunner().invoke(cli, ["info", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["torch"] == torch.__version__
    if torch.cuda.is_available():
        assert report["ops active"] in ("reference", "cuda on CUDA tensors, reference on CPU tensors")
    else:
        assert report["ops active"] == "reference"
        assert report["ops kernels"] == "no CUDA device visible to PyTorch"


def test_info_honours_forced_reference_path(monkeypatch):
    monkeypatch.setenv("SG2_OPS", "reference")
    report = json.loads(CliRunner().invoke(cli, ["info", "--json"]).output)
    assert report["ops requested ($SG2_OPS)"] == "reference"
    assert report["ops active"].startswith("reference")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without a GPU")
def test_info_says_sg2_ops_cuda_cannot_run_without_a_gpu(monkeypatch):
    monkeypatch.setenv("SG2_OPS", "cuda")
    result = CliRunner().invoke(cli, ["info"])
    assert result.exit_code == 0, result.output
    active = next(line for line in result.output.splitlines() if line.startswith("ops active"))
    assert "none: $SG2_OPS=cuda forces the CUDA kernels, but they are unusable: no CUDA " \
           "device visible to PyTorch; every command refuses to run" in active


def test_info_shows_an_invalid_sg2_ops_and_commands_refuse_it(monkeypatch, tmp_path):
    """A bad $SG2_OPS failed at the first op call, as 'internal error (a bug)' (exit 2)."""
    monkeypatch.setenv("SG2_OPS", "fast")
    result = CliRunner().invoke(cli, ["info", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["ops requested ($SG2_OPS)"].startswith("invalid: ")
    _, path = _model(tmp_path)
    generate = ["generate", "--network", str(path), "--seeds", "0", "--outdir",
                str(tmp_path / "out"), "--device", "cpu"]
    result = CliRunner().invoke(cli, generate)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "$SG2_OPS='fast' is not one of auto, reference, cuda; unset SG2_OPS" in result.output
    monkeypatch.setenv("SG2_OPS", "cuda")
    result = CliRunner().invoke(cli, generate)
    assert result.exit_code == 1, result.output
    assert "$SG2_OPS=cuda forces the CUDA kernels, but the work runs on cpu" in result.output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def _model(tmp_path, c_dim=0, channels=3, seed=0):
    torch.manual_seed(seed)
    G = Generator(c_dim=c_dim, img_channels=channels, **TINY_G).eval()
    path = tmp_path / "model.pt"
    save_model(path, G_ema=G)
    return G, path


def test_generate_writes_the_same_images_as_the_network(tmp_path):
    G, path = _model(tmp_path)
    outdir = tmp_path / "out"
    result = CliRunner().invoke(cli, ["generate", "--network", str(path), "--seeds", "3,0-1",
                                      "--trunc", "0.5", "--batch", "2", "--outdir", str(outdir)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in outdir.iterdir()) == ["seed0000.png", "seed0001.png", "seed0003.png"]
    # The reference's recipe, by hand: z from RandomState(seed), const noise, x*127.5+128.
    z = torch.from_numpy(np.random.RandomState(3).randn(1, G.z_dim)).float()
    with torch.no_grad():
        expected = G(z, None, truncation_psi=0.5, noise_mode="const")
    expected = (expected * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()
    with PIL.Image.open(outdir / "seed0003.png") as image:
        written = np.asarray(image)
    assert written.shape == (16, 16, 3)
    assert np.abs(written.astype(int) - expected.astype(int)).max() <= 1


def test_generate_grayscale_network_writes_grayscale_png(tmp_path):
    _, path = _model(tmp_path, channels=1)
    result = CliRunner().invoke(cli, ["generate", "--network", str(path), "--seeds", "0",
                                      "--outdir", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    with PIL.Image.open(tmp_path / "out" / "seed0000.png") as image:
        assert image.mode == "L"


@pytest.mark.parametrize("args,message", [
    (["--seeds", "5-2"], "seed range '5-2' is empty"),
    (["--seeds", "a,b"], "bad seed 'a'"),
    (["--class", "1"], None),  # unconditional: ignored with a warning, still succeeds
])
def test_generate_seed_and_class_errors(tmp_path, args, message):
    _, path = _model(tmp_path)
    result = CliRunner().invoke(cli, ["generate", "--network", str(path), "--outdir",
                                      str(tmp_path / "o")] + args)
    if message is None:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code == 1 and message in result.output


def test_conditional_network_needs_a_valid_class(tmp_path):
    _, path = _model(tmp_path, c_dim=3)
    base = ["generate", "--network", str(path), "--seeds", "0", "--outdir", str(tmp_path / "o")]
    result = CliRunner().invoke(cli, base)
    assert result.exit_code == 1 and "conditional (3 classes): pass --class 0..2" in result.output
    result = CliRunner().invoke(cli, base + ["--class", "3"])
    assert result.exit_code == 1 and "--class=3 is out of range" in result.output
    assert CliRunner().invoke(cli, base + ["--class", "2"]).exit_code == 0


def test_generate_runs_as_a_real_process(tmp_path):
    _, path = _model(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "sg2_container.cli.main", "generate", "--network", str(path),
         "--seeds", "0-1", "--outdir", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "wrote 2 image(s)" in result.stdout
    assert "reference PyTorch path active" in result.stderr  # the op choice, logged once
    assert result.stderr.count("path active") == 1


def test_cli_reference_is_current():
    """docs/cli.md is generated from --help; regenerate it when a command changes."""
    import pathlib

    from sg2_container.cli.reference import render

    path = pathlib.Path(__file__).parent.parent / "docs" / "cli.md"
    assert path.read_text() == render(), "run: python -m sg2_container.cli.reference > docs/cli.md"


def test_generate_max_seeds_raises_the_cap_on_purpose(tmp_path):
    from sg2_container.inference.seeds import DEFAULT_MAX_SEEDS, parse_seeds

    assert len(parse_seeds(f"0-{DEFAULT_MAX_SEEDS - 1}")) == DEFAULT_MAX_SEEDS  # the cap itself
    assert len(parse_seeds(f"0-{DEFAULT_MAX_SEEDS}", max_seeds=DEFAULT_MAX_SEEDS + 1)) == \
        DEFAULT_MAX_SEEDS + 1
    _, path = _model(tmp_path)
    args = ["generate", "--network", str(path), "--seeds", "0-2", "--outdir", str(tmp_path / "o")]
    refused = CliRunner().invoke(cli, args + ["--max-seeds", "2"])
    assert refused.exit_code != 0
    assert "at most 2 are allowed here (raise max_seeds, --max-seeds" in refused.output
    assert not (tmp_path / "o").exists()
    accepted = CliRunner().invoke(cli, args + ["--max-seeds", "3"])
    assert accepted.exit_code == 0, accepted.output
    assert len(list((tmp_path / "o").iterdir())) == 3


@pytest.mark.parametrize("command, quiet", [
    (["generate", "--seeds", "0-3"], []),
    (["generate", "--seeds", "0-3"], ["-q"]),
    (["interpolate", "--seeds", "1,2", "--frames", "4", "--format", "gif"], []),
])
def test_progress_lines_reach_the_terminal_unless_quiet(tmp_path, command, quiet):
    """A real `sg2` process: the progress lines (logged at INFO, every 30 s; here every 0 s)
    are on stderr by default, and -q hides them."""
    _, path = _model(tmp_path)
    outdir = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "sg2_container.cli.main", *quiet, *command, "--network",
         str(path), "--outdir", str(outdir), "--progress-every-s", "0"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    progress = [line for line in result.stderr.splitlines()
                if f"{command[0]} -> {outdir}: 1/" in line]
    if quiet:
        assert not progress, result.stderr
    else:
        noun = "images" if command[0] == "generate" else "frames"
        assert progress and "INFO" in progress[0] and f" {noun} (" in progress[0], result.stderr


@pytest.mark.parametrize("psi, allowed", [(-5.0, False), (-2.01, False), (2.5, False),
                                          (-2.0, True), (0.7, True), (2.0, True)])
def test_the_cli_and_the_endpoint_allow_the_same_truncation(tmp_path, psi, allowed):
    """One range: `--trunc -5` was accepted by the CLI while the endpoint said -2 to 2."""
    from sg2_container.serving.request import NetworkInfo, RequestError, parse_request

    body = json.dumps({"seed": 1, "truncation_psi": psi}).encode()
    net = NetworkInfo(num_ws=6, w_dim=16, c_dim=0)
    _, path = _model(tmp_path)
    outdir = tmp_path / "out"
    for command in (["generate", "--seeds", "1"],
                    ["style-mix", "--rows", "1", "--cols", "2", "--styles", "0-1"],
                    ["interpolate", "--seeds", "1,2", "--frames", "2", "--format", "gif"]):
        result = CliRunner().invoke(cli, command + ["--network", str(path), "--outdir",
                                                    str(outdir), "--trunc", str(psi)])
        if allowed:
            assert result.exit_code == 0, result.output
        else:
            assert result.exit_code == 1 and f"--trunc={psi} is not allowed: a number " \
                "from -2 to 2 (1 = no truncation)" in result.output, result.output
            assert not outdir.exists()
    if allowed:
        assert parse_request(body, net, 4).truncation_psi == psi
    else:
        with pytest.raises(RequestError, match="a number from -2 to 2"):
            parse_request(body, net, 4)


def test_style_mix_names_layers_out_of_range_as_ranges(tmp_path):
    """`--styles 0-99` on a 6-layer network: the error says 0-99 and 6-99, not 100 numbers
    twice."""
    from sg2_container.inference.seeds import format_seeds, parse_seeds

    for text in ("0-3,7", "5,3,99", "0", "1-2,4-6,8"):
        assert format_seeds(parse_seeds(text)) == text
    assert parse_seeds(format_seeds([2, 2, 3, 1])) == [2, 2, 3, 1]
    _, path = _model(tmp_path)
    result = CliRunner().invoke(cli, ["style-mix", "--network", str(path), "--rows", "1",
                                      "--cols", "2", "--styles", "0-99", "--outdir",
                                      str(tmp_path / "out")])
    assert result.exit_code == 1
    assert ("--styles=0-99: layer indices must be in 0..5 for this network (6 ws); out of "
            "range: 6-99") in result.output, result.output
    assert "7, 8" not in result.output
    # Refused before any image: the seeds alone were written first, then the error.
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("seeds", ["\u0663", "1,\u0663", "0-\u0663", "\uff11", "1_000", "+3"])
def test_seeds_are_ascii_digits_only(tmp_path, seeds):
    """`--seeds ٣` rendered seed 3 (int() reads any script's digits): refused by name, on the
    command line and at the endpoint alike."""
    from sg2_container.serving.request import NetworkInfo, RequestError, parse_request

    _, path = _model(tmp_path)
    result = CliRunner().invoke(cli, ["generate", "--network", str(path), "--seeds", seeds,
                                      "--outdir", str(tmp_path / "out")])
    assert result.exit_code == 1 and "bad seed" in result.output, result.output
    assert "use numbers (digits 0-9)" in result.output
    assert not (tmp_path / "out").exists()
    body = json.dumps({"seeds": seeds}).encode()
    with pytest.raises(RequestError, match="bad seed"):
        parse_request(body, NetworkInfo(num_ws=6, w_dim=16, c_dim=0), 4)


def test_dataset_synthetic_replaces_an_existing_zip_only_when_forced(tmp_path):
    """It silently replaced a training zip of the same name."""
    dest = tmp_path / "animeface.zip"
    dest.write_bytes(b"the user's dataset")
    args = ["dataset", "synthetic", str(dest), "--count", "2", "--resolution", "8",
            "--format", "zip"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and "exists; give --force to replace it" in result.output
    assert dest.read_bytes() == b"the user's dataset"
    result = CliRunner().invoke(cli, args + ["--force"])
    assert result.exit_code == 0, result.output
    assert dest.read_bytes()[:2] == b"PK"


@pytest.mark.parametrize("args,message", [
    (["--resolution", "100000"], "resolution=100000 is not allowed: an integer from 4 to 4096"),
    (["--resolution", "6", "--format", "zip"],
     "resolution=6 is not allowed: with --format zip, a power of two from 8 to 4096"),
    (["--resolution", "4", "--format", "zip"],
     "resolution=4 is not allowed: with --format zip, a power of two from 8 to 4096"),
])
def test_dataset_synthetic_refuses_sizes_it_cannot_make_or_train(tmp_path, args, message):
    """--resolution 100000 crashed on a 149 GiB array (exit 2); a 6 px zip was written, and only
    training said that it cannot read it."""
    dest = tmp_path / "d.zip"
    result = CliRunner().invoke(cli, ["dataset", "synthetic", str(dest), "--count", "1", *args])
    assert result.exit_code == 1 and message in result.output, result.output
    assert not dest.exists()


URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/ffhq.pkl"


@pytest.mark.parametrize("command", [
    ["generate", "--seeds", "0"], ["style-mix", "--rows", "0", "--cols", "1"],
    ["interpolate", "--seeds", "0,1"], ["project", "--target", "t.png"]])
def test_a_network_url_is_named_as_one_and_a_missing_file_as_missing(tmp_path, command):
    """The reference's tools take URLs for --network; nothing is downloaded here."""
    for network, words in ((URL, "a URL, and nothing is downloaded at run time"),
                           (str(tmp_path / "nowhere.pkl"), "no such file or folder")):
        result = CliRunner().invoke(cli, [*command, "--network", network,
                                          "--outdir", str(tmp_path / "out")])
        assert result.exit_code == 1 and "Invalid value for '--network'" in result.output
        assert words in " ".join(result.output.split()), result.output
    assert not (tmp_path / "out").exists()


def test_metrics_and_resume_name_a_url_too(tmp_path):
    from sg2_container.errors import UserError
    from sg2_container.training.resume import resolve_resume_path

    result = CliRunner().invoke(cli, ["metrics", "--network", URL, "--data", str(tmp_path)])
    assert result.exit_code == 1 and "network https://" in result.output
    assert "a URL, and nothing is downloaded" in " ".join(result.output.split())
    with pytest.raises(UserError, match="resume s3://bucket/run/model.tar.gz: a URL"):
        resolve_resume_path("s3://bucket/run/model.tar.gz")
