"""Training options and training jobs: values that would run on nonsense or write in the wrong
place. Job rows run the real entrypoint against a fake /opt/ml and return its failure text."""
from click.testing import CliRunner

from sg2_container.cli.main import cli
from sg2_container.data.synthetic import write_synthetic_dataset
from sg2_container.options import TrainingOptions
from tests.hostile_inputs.table import Row, user_error
from tests.sagemaker.conftest import ARTICLE, SMALL, FakeOptMl


def _job(tmp_path, prepare=None, count=8, **values):
    """A training job on `count` images with the article's hyperparameters changed by `values`;
    its failure text (exit code 1 and no checkpoint asserted)."""
    dataset = write_synthetic_dataset(tmp_path / "animeface.zip", count=count, resolution=16)
    opt_ml = FakeOptMl(tmp_path / "opt_ml", dataset)
    if prepare is not None:
        prepare(opt_ml.base)
    opt_ml.hyperparameters({**ARTICLE, **SMALL, **values})
    code, out = opt_ml.run("train")
    assert code == 1, out
    assert not opt_ml.checkpoints()
    return opt_ml.failure


def _train_cli(tmp_path, *args):
    dataset = write_synthetic_dataset(tmp_path / "d.zip", count=8, resolution=16)
    result = CliRunner().invoke(cli, ["train", "--data", str(dataset), "--outdir",
                                      str(tmp_path / "run"), *args])
    assert result.exit_code != 0 and not (tmp_path / "run").exists()
    return result.output


def _foreign_file(base):
    (base / "model").mkdir(parents=True, exist_ok=True)
    (base / "model" / "thesis.docx").write_bytes(b"precious")


ROWS = [
    Row("kimg-nan", "`sg2 train --kimg nan`", "kimg=nan is not allowed: a number > 0 (finite)",
        lambda tmp: _train_cli(tmp, "--kimg", "nan")),
    Row("gamma-negative", "`TrainingOptions(gamma=-1)`", "gamma=-1.0 is not allowed: a number >= 0",
        lambda tmp: user_error(TrainingOptions, data="d.zip", outdir="o", gamma=-1)),
    Row("gpus-not-power", "`sg2 train --gpus 3`", "gpus=3 is not allowed: a power of two",
        lambda tmp: _train_cli(tmp, "--gpus", "3")),
    Row("cfg-typo", "hyperparameter `cfg: \"paper257\"`",
        "UserError: train: cfg='paper257' is not allowed: one of auto, stylegan2, paper256",
        lambda tmp: _job(tmp, cfg="paper257")),
    Row("job-kimg-inf", "hyperparameter `kimg: \"Infinity\"`",
        "UserError: train: kimg=inf is not allowed: a number > 0 (finite)",
        lambda tmp: _job(tmp, kimg="Infinity")),
    Row("job-outdir-root", "hyperparameter `outdir: \"/\"`",
        "UserError: train: outdir='/' is not allowed: a system folder", lambda tmp: _job(tmp, outdir="/")),
    Row("job-outdir-opt-ml", "hyperparameter `outdir: \"/opt/ml\"`",
        "outdir='/opt/ml' is not allowed: use /opt/ml/checkpoints", lambda tmp: _job(tmp, outdir="/opt/ml")),
    Row("job-outdir-input", "hyperparameter `outdir` inside the input channel",
        "outdir='/opt/ml/input/data/train' is not allowed",
        lambda tmp: _job(tmp, outdir="/opt/ml/input/data/train")),
    Row("job-outdir-foreign", "`outdir: \"/opt/ml/model\"` holding a user's other file",
        "holds files that are not this run's (thesis.docx)",
        lambda tmp: _job(tmp, prepare=_foreign_file, outdir="/opt/ml/model")),
    Row("job-gpus-over-devices", "`gpus: 64` on a machine without GPUs",
        "gpus=64 is not allowed: no GPU is used", lambda tmp: _job(tmp, count=32, gpus=64, batch=64)),
    Row("job-batch-over-dataset", "`batch: 100000` on 8 images (the memory killed the job)",
        "batch=100000 is larger than the dataset", lambda tmp: _job(tmp, batch=100000)),
    Row("job-outdir-s3", "`outdir: \"s3://my-bucket/sg2/checkpoints\"` (trained into ./s3:/...)",
        "is not allowed: outdir is a path in the container; to keep checkpoints in S3, set the "
        "estimator's checkpoint_s3_uri",
        lambda tmp: _job(tmp, outdir="s3://my-bucket/sg2/checkpoints")),
    Row("job-unknown-key", "hyperparameter `gama: 10` (a typo)",
        "unknown hyperparameter 'gama' (did you mean 'gamma'?)", lambda tmp: _job(tmp, gama=10)),
    Row("job-resume-missing", "`resume: \"/opt/ml/input/data/train/nothere.pkl\"`",
        "input/data/train/nothere.pkl", lambda tmp: _job(tmp, resume="/opt/ml/input/data/train/nothere.pkl")),
    Row("job-one-option-twice", "hyperparameters `kimg-per-tick` and `kimg_per_tick` both given "
        "(the last one won)", "'kimg-per-tick' and 'kimg_per_tick' are the same option",
        lambda tmp: _job(tmp, kimg_per_tick=0.016)),
    Row("job-resume-url", "`resume: \"https://.../ffhq.pkl\"` (the reference downloads it)",
        "resume https://example.com/ffhq.pkl: a URL, and nothing is downloaded at run time",
        lambda tmp: _job(tmp, resume="https://example.com/ffhq.pkl")),
]
