"""The training job as SageMaker runs it: the real entrypoint in a subprocess, a fake /opt/ml."""
import json
import logging
import os
import signal
import time

import pytest
import torch

from sg2_container.training import checkpoint as ckpt
from tests.sagemaker.conftest import ARTICLE, SMALL


def _raw(v):
    return v if isinstance(v, str) else json.dumps(v)


@pytest.mark.parametrize("encode", [json.dumps, str, _raw], ids=["json.dumps", "v2-str", "v3-raw"])
def test_article_hyperparameters_train_and_write_the_model(opt_ml, encode):
    opt_ml.hyperparameters({**ARTICLE, **SMALL}, encode=encode)
    code, out = opt_ml.run("train")
    assert code == 0, out
    model = opt_ml.base / "model"
    assert {"model.pt", "samples.png", "README.md", "training_options.json"} <= {p.name for p in model.iterdir()}
    assert "0.008 kimg" in (model / "README.md").read_text()
    assert opt_ml.checkpoints()  # checkpoints land in /opt/ml/checkpoints for S3 sync
    assert "tick=0 kimg=0.004" in out  # the metric line, on stdout
    assert opt_ml.failure is None


def test_sigterm_saves_and_a_second_job_resumes_to_the_same_state(opt_ml, tmp_path, animeface_zip):
    values = {**ARTICLE, **SMALL, "kimg": 0.048, "snap": 100}
    opt_ml.hyperparameters(values)
    job = opt_ml.start("train")
    assert opt_ml.wait_for(lambda: opt_ml.checkpoints())  # tick 0 has been saved
    time.sleep(0.3)
    job.send_signal(signal.SIGTERM)
    start = time.monotonic()
    out, _ = job.communicate(timeout=60)
    assert job.returncode == 130, out
    assert time.monotonic() - start < 10
    assert "SIGTERM: stopping cleanly" in out
    assert opt_ml.failure.startswith("Stopped: train stopped by a signal")
    stopped_at = ckpt.load_checkpoint(opt_ml.base / "checkpoints" / opt_ml.checkpoints()[-1])["loop"]["cur_nimg"]
    assert 4 <= stopped_at < 48
    assert not (opt_ml.base / "model" / "model.pt").exists()

    code, out = opt_ml.run("train")  # the spot restart: same checkpoints folder
    assert code == 0, out
    assert "continuing from checkpoint-" in out
    resumed = ckpt.load_checkpoint(opt_ml.base / "checkpoints" / opt_ml.checkpoints()[-1])

    from tests.sagemaker.conftest import FakeOptMl

    straight = FakeOptMl(tmp_path / "straight", animeface_zip)
    straight.hyperparameters(values)
    code, out = straight.run("train")
    assert code == 0, out
    reference = ckpt.load_checkpoint(straight.base / "checkpoints" / straight.checkpoints()[-1])
    assert resumed["loop"]["cur_nimg"] == reference["loop"]["cur_nimg"] == 48
    for part in ("G", "D", "G_ema"):
        for name, value in reference[part].items():
            assert torch.equal(resumed[part][name], value), f"{part}.{name}"
    assert resumed["augment"] == reference["augment"]


def test_sigkill_mid_write_leaves_the_previous_checkpoint_usable(opt_ml):
    opt_ml.hyperparameters({**ARTICLE, **SMALL, "kimg": 0.032, "snap": 1})
    job = opt_ml.start("train")
    assert opt_ml.wait_for(lambda: len(opt_ml.checkpoints()) >= 2)
    job.send_signal(signal.SIGKILL)
    job.communicate(timeout=30)
    # What a kill during torch.save leaves: a partial temp file beside the committed ones.
    newest = opt_ml.base / "checkpoints" / opt_ml.checkpoints()[-1]
    torn = newest.with_name(f".checkpoint-000000009999.pt.{'ab' * 8}.tmp")
    torn.write_bytes(newest.read_bytes()[:1000])
    code, out = opt_ml.run("train")
    assert code == 0, out
    assert "continuing from checkpoint-" in out
    assert (opt_ml.base / "model" / "model.pt").exists()
    assert not torn.exists()  # not uploaded to S3 again and again


@pytest.mark.parametrize("change,words", [
    ({"gama": 10}, ["unknown hyperparameter 'gama'", "did you mean 'gamma'"]),
    ({"mirror": "sometimes"}, ["mirror='sometimes' is not a boolean"]),
    ({"cfg": "paper257"}, ["cfg='paper257'", "paper256"]),
    ({"augpipe": "bgx"}, ["augpipe='bgx'", "bgc"]),
    ({"kimg": -1}, ["kimg=-1.0", "> 0"]),
    ({"data": "/opt/ml/input/data/train/missing.zip"}, ["data='/opt/ml/input/data/train/missing.zip' does not exist"]),
    ({"outdir": "s3://my-bucket/sg2/checkpoints"},
     ["outdir='s3://my-bucket/sg2/checkpoints' is not allowed", "checkpoint_s3_uri"]),
    ({"outdir": "runs/x"}, ["outdir='runs/x' is not allowed: a relative path", "/opt/ml/checkpoints"]),
    ({"data": "s3://my-bucket/sg2/animeface.zip"}, ["is not allowed", "input channel"]),
    ({"batch": 100000}, ["batch=100000 is larger than the dataset",
                         "gives 64 images (mirror doubles them)", "at most 64"]),
])
def test_bad_hyperparameters_fail_with_a_reason_and_lose_nothing(opt_ml, change, words):
    keep = opt_ml.base / "checkpoints" / "checkpoint-000000000004.pt"
    keep.write_bytes(b"precious")
    opt_ml.hyperparameters({**ARTICLE, **SMALL, **change})
    code, out = opt_ml.run("train")
    assert code == 1
    failure = opt_ml.failure
    assert failure.startswith("UserError: ") and len(failure) < 1024
    for word in words:
        assert word in failure, failure
    assert keep.read_bytes() == b"precious"


@pytest.mark.parametrize("content,words", [
    (b'{"gamma": "\xff10"}', ["hyperparameters.json is not valid UTF-8", "byte 11"]),
    (b'{"gamma": 10', ["hyperparameters.json is not valid JSON"]),
    (b'["gamma", 10]', ["hyperparameters.json must hold a JSON object"]),
])
def test_an_unreadable_hyperparameters_file_is_named(opt_ml, content, words):
    (opt_ml.base / "input" / "config" / "hyperparameters.json").write_bytes(content)
    code, out = opt_ml.run("train")
    assert code == 1, out
    assert opt_ml.failure.startswith("UserError: train: ") and "Traceback" not in out
    for word in words:
        assert word in opt_ml.failure, opt_ml.failure


def test_missing_channel_names_what_is_needed(opt_ml):
    (opt_ml.base / "input" / "data" / "train" / "animeface.zip").unlink()
    (opt_ml.base / "input" / "data" / "train").rmdir()
    opt_ml.hyperparameters({k: v for k, v in {**ARTICLE, **SMALL}.items() if k != "data"})
    code, _ = opt_ml.run("train")
    assert code == 1
    assert "add an input channel named 'train'" in opt_ml.failure


@pytest.mark.parametrize("with_data", [False, True])
def test_a_pipe_mode_channel_is_named_as_such(opt_ml, with_data):
    """A Pipe-mode channel arrives as a FIFO (train_0), not a folder: the job said no channel
    was there at all (also with `data` naming the zip, as the article's job does)."""
    (opt_ml.base / "input" / "data" / "train" / "animeface.zip").unlink()
    (opt_ml.base / "input" / "data" / "train").rmdir()
    os.mkfifo(opt_ml.base / "input" / "data" / "train_0")
    (opt_ml.base / "input" / "config" / "inputdataconfig.json").write_text(
        json.dumps({"train": {"TrainingInputMode": "Pipe"}}))
    opt_ml.hyperparameters({k: v for k, v in {**ARTICLE, **SMALL}.items()
                            if k != "data" or with_data})
    code, _ = opt_ml.run("train")
    assert code == 1
    assert "'train' use" in opt_ml.failure and "Pipe input mode, which this image does not read" \
        in opt_ml.failure


@pytest.mark.parametrize("name", ["resourceconfig.json", "inputdataconfig.json"])
def test_a_damaged_platform_config_file_is_named(opt_ml, name):
    (opt_ml.base / "input" / "config" / name).write_text("{not json")
    opt_ml.hyperparameters({k: v for k, v in {**ARTICLE, **SMALL}.items() if k != "data"})
    code, out = opt_ml.run("train")
    assert code == 1, out
    assert opt_ml.failure.startswith(f"UserError: train: {name} (") and "cannot be read as JSON" \
        in opt_ml.failure


def test_outdir_in_the_model_dir_as_one_version_of_the_article_has_it(opt_ml):
    opt_ml.hyperparameters({**ARTICLE, **SMALL, "outdir": "/opt/ml/model"})
    code, out = opt_ml.run("train")
    assert code == 0, out
    model = {p.name for p in (opt_ml.base / "model").iterdir()}
    assert {"model.pt", "samples.png", "training_options.json", "network-final.pt"} <= model
    assert "will not be synced to S3" in out  # told that spot resume needs /opt/ml/checkpoints


def test_outdir_is_judged_after_dot_dot_is_resolved(opt_ml, monkeypatch, caplog):
    from sg2_container.sagemaker.job import resolve_options

    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(opt_ml.base))
    caplog.set_level(logging.WARNING)
    options = resolve_options({"gpus": 1, "outdir": "/opt/ml/checkpoints/../model"})
    assert options.outdir == str(opt_ml.base / "model")
    assert "will not be synced to S3" in caplog.text and "packed into model.tar.gz" in caplog.text
    caplog.clear()
    options = resolve_options({"gpus": 1, "outdir": "/opt/ml/model/../checkpoints/run"})
    assert options.outdir == str(opt_ml.base / "checkpoints" / "run")
    assert "will not be synced" not in caplog.text


def test_data_may_be_omitted_when_the_channel_holds_one_dataset(opt_ml):
    opt_ml.hyperparameters({k: v for k, v in {**ARTICLE, **SMALL}.items() if k != "data"})
    code, out = opt_ml.run()  # no `train` argument: ContainerEntrypoint overridden
    assert code == 0, out
    assert (opt_ml.base / "model" / "model.pt").exists()


def test_two_hosts_on_loopback_train_one_job(tmp_path, animeface_zip):
    from tests.sagemaker.conftest import FakeOptMl
    from sg2_container.training.distributed import free_port

    hosts = ["127.0.0.1", "localhost"]  # both resolve here; the first sorts first: master
    nodes = [FakeOptMl(tmp_path / f"host{i}", animeface_zip) for i in range(2)]
    port = str(free_port())
    jobs = []
    for node, host in zip(nodes, hosts):
        node.resources(hosts, host)
        node.hyperparameters({**ARTICLE, **SMALL, "kimg": 0.016})
        jobs.append(node.start("train", SG2_MASTER_PORT=port))
    outputs = [job.communicate(timeout=300)[0] for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], outputs
    assert (nodes[0].base / "model" / "model.pt").exists()
    assert not nodes[1].checkpoints()  # only rank 0 writes
    state = ckpt.load_checkpoint(nodes[0].base / "checkpoints" / nodes[0].checkpoints()[-1])
    assert state["loop"]["world_size"] == 2 and state["loop"]["cur_nimg"] == 16


def test_a_stopped_two_host_job_says_stopped_on_both_hosts(tmp_path, animeface_zip):
    """SageMaker sends SIGTERM to every host: each says Stopped (exit 130), the first keeps the
    checkpoint, and neither exports a model."""
    from tests.sagemaker.conftest import FakeOptMl
    from sg2_container.training.distributed import free_port

    hosts = ["127.0.0.1", "localhost"]
    nodes = [FakeOptMl(tmp_path / f"host{i}", animeface_zip) for i in range(2)]
    port = str(free_port())
    jobs = []
    for node, host in zip(nodes, hosts):
        node.resources(hosts, host)
        node.hyperparameters({**ARTICLE, **SMALL, "kimg": 1, "snap": 100})
        jobs.append(node.start("train", SG2_MASTER_PORT=port))
    assert nodes[0].wait_for(lambda: nodes[0].checkpoints())  # tick 0 has been saved
    for job in jobs:
        job.send_signal(signal.SIGTERM)
    outputs = [job.communicate(timeout=120)[0] for job in jobs]
    assert [job.returncode for job in jobs] == [130, 130], outputs
    assert nodes[0].failure.startswith("Stopped: train stopped by a signal: at kimg ")
    assert nodes[1].failure.startswith("Stopped: train stopped by a signal: with the other nodes")
    assert not (nodes[0].base / "model" / "model.pt").exists() and not nodes[1].checkpoints()


def test_local_processing_stand_in_runs_the_articles_prepare_arguments(tmp_path):
    from click.testing import CliRunner

    from sg2_container.cli.main import cli
    from sg2_container.data.synthetic import write_synthetic_folder

    uploads = write_synthetic_folder(tmp_path / "uploads", count=6, resolution=16)
    base = ["local", "process", "--base-dir", str(tmp_path / "opt_ml"), "--input",
            f"input={uploads}", "--output", f"train={tmp_path / 'out'}", "--"]
    article = ["--source", "/opt/ml/processing/input/", "--dest",
               "/opt/ml/processing/train/animeface.zip", "--width", "16", "--height", "16"]
    result = CliRunner().invoke(cli, base + article)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "animeface.zip").exists()
    result = CliRunner().invoke(cli, base + ["--source", "/opt/ml/processing/missing/",
                                             "--dest", "/opt/ml/processing/train/x.zip",
                                             "--width", "16", "--height", "16"])
    assert result.exit_code == 1 and "UserError: prepare:" in result.output
    assert (tmp_path / "opt_ml" / "output" / "message").read_text().startswith("UserError: prepare:")


def test_local_stand_in_never_deletes_checkpoints(tmp_path, animeface_zip):
    from sg2_container.errors import UserError
    from sg2_container.sagemaker.local import LocalJob, lay_out

    base = tmp_path / "sm"
    (base / "checkpoints").mkdir(parents=True)
    precious = base / "checkpoints" / "checkpoint-000000000004.pt"
    precious.write_bytes(b"state")
    job = dict(base_dir=base, hyperparameters={}, channels={"train": animeface_zip})
    lay_out(LocalJob(**job, checkpoints=base / "checkpoints"))  # the default, named explicitly
    assert precious.read_bytes() == b"state"
    with pytest.raises(UserError, match="already holds checkpoints"):
        lay_out(LocalJob(**job, checkpoints=tmp_path / "elsewhere"))
    assert precious.read_bytes() == b"state"


def test_local_train_reports_a_stopped_job_as_interrupted(tmp_path, animeface_zip):
    import os
    import subprocess
    import sys

    hp = tmp_path / "hp.json"
    hp.write_text(json.dumps({**ARTICLE, **SMALL, "kimg": 0.4, "snap": 1000}))
    command = [sys.executable, "-m", "sg2_container.cli.main", "local", "train", "--hyperparameters",
               str(hp), "--channel", f"train={animeface_zip}", "--base-dir", str(tmp_path / "sm")]
    process = subprocess.Popen(command, env=dict(os.environ, OMP_NUM_THREADS="1"),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    checkpoints = tmp_path / "sm" / "checkpoints"
    deadline = time.monotonic() + 120
    while not list(checkpoints.glob("checkpoint-*.pt")) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)  # Ctrl-C: forwarded to the job
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 130, out
    assert "run the same command again to continue" in out


@pytest.mark.parametrize("config,words", [
    ({"current_host": "algo-1", "hosts": ["algo-1", "algo-1"]}, "names algo-1 more than once"),
    ({"current_host": "algo-3", "hosts": ["algo-1", "algo-2"]}, "not among hosts"),
])
def test_a_host_list_no_job_could_form_is_refused(tmp_path, config, words):
    """Two nodes listed under one name both took its rank and waited for a third forever."""
    import json

    from sg2_container.errors import UserError
    from sg2_container.sagemaker.resources import read_host_config

    path = tmp_path / "resourceconfig.json"
    path.write_text(json.dumps(config))
    with pytest.raises(UserError, match=words):
        read_host_config(path)


def test_a_model_folder_that_is_a_file_fails_the_job_before_training(opt_ml):
    """It was found only at the export, after the whole run, as an internal error."""
    opt_ml.hyperparameters({**ARTICLE, **SMALL})
    (opt_ml.base / "model").rmdir()
    (opt_ml.base / "model").write_text("not a folder")
    code, out = opt_ml.run("train")
    assert code == 1, out
    assert "model is not a folder" in opt_ml.failure and not opt_ml.checkpoints()


def test_the_train_channels_one_zip_is_found_beside_hidden_files(tmp_path):
    """macOS copies leave ._animeface.zip beside animeface.zip: that made 'holds 2 zips'."""
    from sg2_container.errors import UserError
    from sg2_container.sagemaker.job import find_dataset

    channel = tmp_path / "train"
    channel.mkdir()
    (channel / "animeface.zip").write_bytes(b"PK")
    (channel / "._animeface.zip").write_bytes(b"\x00\x05\x16\x07")
    assert find_dataset({"train": channel}) == channel / "animeface.zip"
    (channel / "second.zip").write_bytes(b"PK")
    with pytest.raises(UserError, match="holds 2 zips"):
        find_dataset({"train": channel})
