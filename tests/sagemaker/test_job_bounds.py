"""Training-job inputs that would write in the wrong place or run on nonsense are refused with a
named UserError (exit 1) before anything is written."""
import pytest

from tests.sagemaker.conftest import ARTICLE, SMALL


@pytest.mark.parametrize("values,message", [
    ({"outdir": "/opt/ml"}, "UserError: train: outdir='/opt/ml' is not allowed: use /opt/ml/checkpoints"),
    ({"outdir": "/opt/ml/input/data/train"}, "UserError: train: outdir='/opt/ml/input/data/train' is not allowed"),
    ({"outdir": "/"}, "UserError: train: outdir='/' is not allowed: a system folder"),
    ({"kimg": "Infinity"}, "UserError: train: kimg=inf is not allowed: a number > 0 (finite)"),
    ({"kimg": "NaN"}, "UserError: train: kimg=nan is not allowed"),
    ({"gpus": 64, "batch": 64}, "UserError: train: gpus=64 is not allowed: no GPU is used"),
    ({"gamma": "-1"}, "UserError: train: gamma=-1.0 is not allowed: a number >= 0"),
])
def test_bad_job_inputs_fail_with_a_named_error(opt_ml, values, message):
    opt_ml.hyperparameters({**ARTICLE, **SMALL, **values})
    code, out = opt_ml.run("train")
    assert code == 1, out
    assert opt_ml.failure.startswith(message), opt_ml.failure
    assert not opt_ml.checkpoints()


def test_an_outdir_with_someone_elses_files_is_refused(opt_ml):
    (opt_ml.base / "model").mkdir(parents=True, exist_ok=True)
    (opt_ml.base / "model" / "thesis.docx").write_bytes(b"precious")
    opt_ml.hyperparameters({**ARTICLE, **SMALL, "outdir": "/opt/ml/model"})
    code, out = opt_ml.run("train")
    assert code == 1, out
    assert "holds files that are not this run's (thesis.docx)" in opt_ml.failure
    assert (opt_ml.base / "model" / "thesis.docx").read_bytes() == b"precious"


def test_resume_paths_under_opt_ml_are_translated_for_the_local_stand_in(opt_ml):
    opt_ml.hyperparameters({**ARTICLE, **SMALL, "resume": "/opt/ml/input/data/train/nothere.pkl"})
    code, out = opt_ml.run("train")
    assert code == 1, out
    assert str(opt_ml.base / "input" / "data" / "train" / "nothere.pkl") in opt_ml.failure
