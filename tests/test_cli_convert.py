"""`sg2 convert`: network pickle -> model file -> network pickle, via CliRunner and a real
process; bad directions and unsafe pickles end with a one-line error."""
import os
import pathlib
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from sg2_container.cli.main import cli
from sg2_container.models import files
from tests.models import refpickle_helpers as helpers

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def snapshot_pkl(golden_tiny, tmp_path):
    marker = tmp_path / "module_src_ran"
    path = tmp_path / "network-snapshot-000040.pkl"
    snapshot = helpers.golden_snapshot(golden_tiny, helpers.marker_source(marker),
                                       storage="legacy", numpy_scalars="old", easydict=True)
    helpers.write_reference_pickle(path, snapshot, protocol=3)
    yield path
    assert not marker.exists()


def _same_networks(a, b):
    for part in ("G", "D", "G_ema"):
        sa, sb = getattr(a, part).state_dict(), getattr(b, part).state_dict()
        assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa), part


def test_convert_both_ways_with_cli_runner(snapshot_pkl, tmp_path):
    runner = CliRunner()
    pt = tmp_path / "model.pt"
    result = runner.invoke(cli, ["convert", str(snapshot_pkl), str(pt)])
    assert result.exit_code == 0, result.output
    assert f"wrote {pt} (G_ema, G, D)" in result.output
    raw = torch.load(pt, weights_only=True)
    assert raw["format"] == "sg2-model"
    assert raw["metadata"]["kimg"] == 40 and raw["metadata"]["augment_p"] == 0.25

    back = tmp_path / "back.pkl"
    result = runner.invoke(cli, ["convert", str(pt), str(back)])
    assert result.exit_code == 0, result.output
    _same_networks(files.load_model(back), files.load_model(snapshot_pkl))
    assert files.load_model(back).metadata["training_set_kwargs"]["resolution"] == 32


def test_convert_in_a_real_process(snapshot_pkl, tmp_path):
    pt, back = tmp_path / "model.pt", tmp_path / "back.pkl"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for src, dst in ((snapshot_pkl, pt), (pt, back)):
        proc = subprocess.run(
            [sys.executable, "-m", "sg2_container.cli.main", "convert", str(src), str(dst)],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        assert f"wrote {dst}" in proc.stdout
        assert "reading" in proc.stderr and "writing" in proc.stderr  # progress log lines
    _same_networks(files.load_model(back), files.load_model(snapshot_pkl))


def test_direction_follows_content_not_name(snapshot_pkl, tmp_path):
    disguised = tmp_path / "really_a_pickle.pt"
    disguised.write_bytes(snapshot_pkl.read_bytes())
    result = CliRunner().invoke(cli, ["convert", str(disguised), str(tmp_path / "out.pt")])
    assert result.exit_code == 0, result.output
    assert files.sniff_kind(tmp_path / "out.pt") == "torch"


@pytest.mark.parametrize("dst_name", ["out.pkl", "out.bin"])
def test_wrong_destination_suffix(snapshot_pkl, tmp_path, dst_name):
    result = CliRunner().invoke(cli, ["convert", str(snapshot_pkl), str(tmp_path / dst_name)])
    assert result.exit_code == 1  # a usage error: the user's to fix (docs/sagemaker.md's table)
    assert "is a network pickle, so DST must end in .pt" in result.output
    assert not (tmp_path / dst_name).exists()


def test_refuses_to_overwrite_without_force(snapshot_pkl, tmp_path):
    pt = tmp_path / "model.pt"
    pt.write_bytes(b"keep me")
    result = CliRunner().invoke(cli, ["convert", str(snapshot_pkl), str(pt)])
    assert result.exit_code == 1 and "--force" in result.output
    assert pt.read_bytes() == b"keep me"
    result = CliRunner().invoke(cli, ["convert", "--force", str(snapshot_pkl), str(pt)])
    assert result.exit_code == 0, result.output
    assert files.sniff_kind(pt) == "torch"


def test_unsafe_pickle_is_a_one_line_error(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    helpers.write_reference_pickle(evil, {"G_ema": helpers.Evil(os.system, f"touch {marker}")})
    result = CliRunner().invoke(cli, ["convert", str(evil), str(tmp_path / "out.pt")])
    assert result.exit_code == 1
    assert "Error: refusing to load evil.pkl: it references" in result.output
    assert "Traceback" not in result.output
    assert not marker.exists() and not (tmp_path / "out.pt").exists()


def test_not_a_model_file(tmp_path):
    junk = tmp_path / "notes.txt"
    junk.write_text("hello")
    result = CliRunner().invoke(cli, ["convert", str(junk), str(tmp_path / "out.pt")])
    assert result.exit_code == 1 and "notes.txt: not a model file" in result.output


def test_help_explains_the_directions():
    result = CliRunner().invoke(cli, ["convert", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "without running any code" in text and "--force" in text


def test_non_finite_or_integer_weights_are_refused_both_ways(golden_tiny, tmp_path):
    golden = dict(golden_tiny)
    golden["G_state_dict"] = dict(golden["G_state_dict"])
    golden["G_state_dict"]["mapping.fc1.weight"] = torch.zeros(128, 128, dtype=torch.int64)
    pkl = helpers.write_reference_pickle(tmp_path / "ints.pkl",
                                         helpers.golden_snapshot(golden, ""))
    result = CliRunner().invoke(cli, ["convert", str(pkl), str(tmp_path / "out.pt")])
    assert result.exit_code == 1
    assert "ints.pkl: G: tensor 'mapping.fc1.weight' is int64" in result.output
    assert not (tmp_path / "out.pt").exists()

    G = files.load_model(helpers.write_reference_pickle(
        tmp_path / "good.pkl", helpers.golden_snapshot(golden_tiny, ""))).G_ema
    with torch.no_grad():
        G.mapping.w_avg[3] = float("nan")
    pt = files.save_model(tmp_path / "nan.pt", G_ema=G)
    result = CliRunner().invoke(cli, ["convert", str(pt), str(tmp_path / "out.pkl")])
    assert result.exit_code == 1
    assert "nan.pt: G_ema: tensor 'mapping.w_avg' has 1 non-finite values" in result.output
    assert not (tmp_path / "out.pkl").exists()
