"""All three client encodings of the article's hyperparameters decode to the same options."""
import json

import pytest

from sg2_container.errors import UserError
from sg2_container.sagemaker.hyperparameters import decode_hyperparameters

ARTICLE = {"data": "/opt/ml/input/data/train/animeface.zip", "gpus": 1, "augpipe": "bg",
           "gamma": 10, "cfg": "paper256", "mirror": 1, "snap": 10, "kimg": 2000,
           "metrics": "none", "outdir": "/opt/ml/checkpoints"}

JSON_DUMPS = {k: json.dumps(v) for k, v in ARTICLE.items()}  # the pipeline notebook
V2_STR = {k: str(v) for k, v in {**ARTICLE, "mirror": True, "gamma": 10.0}.items()}  # Estimator
V3_RAW = {k: v if isinstance(v, str) else json.dumps(v) for k, v in {**ARTICLE, "mirror": True}.items()}


@pytest.mark.parametrize("encoded", [JSON_DUMPS, V2_STR, V3_RAW], ids=["json.dumps", "v2-str", "v3-raw"])
def test_three_encodings_give_the_same_values(encoded):
    values = decode_hyperparameters({**encoded, "sagemaker_program": "x", "_tuning_objective_metric": "y"})
    assert values == {"data": "/opt/ml/input/data/train/animeface.zip", "gpus": 1, "augpipe": "bg",
                      "gamma": 10.0, "cfg": "paper256", "mirror": True, "snap": 10, "kimg": 2000.0,
                      "metrics": (), "outdir": "/opt/ml/checkpoints"}


@pytest.mark.parametrize("raw,message", [
    ({"gama": "10"}, "unknown hyperparameter 'gama' (did you mean 'gamma'?)"),
    ({"mirror": "maybe"}, "mirror='maybe' is not a boolean"),
    ({"snap": "2.5"}, "snap=2.5 is not an integer"),
    ({"kimg": "\"lots\""}, "kimg='lots' is not a number"),
])
def test_bad_keys_and_values_are_named(raw, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        decode_hyperparameters(raw)


def test_reference_spellings_are_accepted():
    assert decode_hyperparameters({"allow-tf32": "1", "batch-gpu": "4"}) == {"allow_tf32": True, "batch_gpu": 4}


def test_one_option_in_both_spellings_is_refused():
    with pytest.raises(UserError, match=r"'kimg-per-tick' and 'kimg_per_tick' are the same option"):
        decode_hyperparameters({"kimg-per-tick": "1", "kimg_per_tick": "4"})


def test_hyperparameters_and_the_cli_build_the_same_training_options(tmp_path, monkeypatch):
    """The job and `sg2 train` must agree on every option for the same user intent."""
    from click.testing import CliRunner

    from sg2_container.cli.main import cli
    from sg2_container.options import TrainingOptions

    data = tmp_path / "animeface.zip"
    data.write_bytes(b"")  # only has to exist for click
    captured = {}

    def fake_run(options, stop_event=None):
        captured["options"] = options
        raise SystemExit(0)

    import sg2_container.training.launch as launch
    monkeypatch.setattr(launch, "run_training", fake_run)
    CliRunner().invoke(cli, ["train", "--data", str(data), "--outdir", "/opt/ml/checkpoints",
                             "--gpus", "1", "--augpipe", "bg", "--gamma", "10", "--cfg", "paper256",
                             "--mirror", "1", "--snap", "10", "--kimg", "2000", "--metrics", "none"])
    from_hp = TrainingOptions(**{**decode_hyperparameters(JSON_DUMPS), "data": str(data)})
    assert captured["options"] == from_hp


@pytest.mark.parametrize("value", ["\"noresume\"", "None", "", "null"])
def test_no_resume_spellings_mean_no_resume(value):
    from sg2_container.options import TrainingOptions

    decoded = decode_hyperparameters({"resume": value, "metrics": "null"})
    options = TrainingOptions(data="d.zip", outdir="out", **decoded)
    assert options.resume is None and options.metrics == ()


def test_none_through_str_leaves_an_optional_file_unset():
    """The SDK v2's Estimator passes str(None): a detector named 'None' was looked for (and a
    `detector` channel or the image's copy passed over)."""
    from sg2_container.options import TrainingOptions

    decoded = decode_hyperparameters({"detector": "None", "vgg16": "None"})
    options = TrainingOptions(data="d.zip", outdir="out", **decoded)
    assert options.detector is None and options.vgg16 is None
    named = decode_hyperparameters({"detector": "\"none.pth\""})
    assert named["detector"] == "none.pth"
