"""`sg2 local`: the stand-in must behave as the platform does (paths, exit codes, fresh model)."""
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from sg2_container.cli.main import cli
from sg2_container.errors import UserError
from sg2_container.sagemaker.local import LocalJob, lay_out, run_entrypoint
from tests.sagemaker.conftest import ARTICLE, SMALL


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.parametrize("as_folder", [False, True])
def test_a_linked_channel_is_not_called_outside_the_channels(tmp_path, animeface_zip, caplog,
                                                             monkeypatch, as_folder):
    from sg2_container.sagemaker.job import resolve_options

    source = animeface_zip.parent if as_folder else animeface_zip
    base = lay_out(LocalJob(base_dir=tmp_path / "sm", hyperparameters={},
                            channels={"train": source}))
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(base))
    caplog.set_level(logging.WARNING)
    options = resolve_options({"outdir": "/opt/ml/checkpoints", "gpus": 1})
    assert options.data == str(base / "input" / "data" / "train" / "animeface.zip")
    assert "outside the job's input channels" not in caplog.text
    resolve_options({"data": str(animeface_zip), "outdir": "/opt/ml/checkpoints", "gpus": 1})
    assert "outside the job's input channels" in caplog.text  # a path that is outside still is


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_a_job_killed_by_sigkill_exits_137_as_docker_reports(tmp_path, animeface_zip):
    base = tmp_path / "sm"
    lay_out(LocalJob(base_dir=base, hyperparameters={**ARTICLE, **SMALL, "kimg": 10},
                     channels={"train": animeface_zip}))
    killed = []
    before = set(_children(os.getpid()))  # e.g. another test's helper under the same worker

    def kill_the_job():
        deadline = time.monotonic() + 60
        while not killed and time.monotonic() < deadline:
            for pid in set(_children(os.getpid())) - before:
                if b"sg2_container.sagemaker.entrypoint" in _cmdline(pid):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.02)

    killer = threading.Thread(target=kill_the_job)
    killer.start()
    code = run_entrypoint(base, ["train"])
    killer.join()
    assert killed and code == 137


def test_processing_arguments_with_equals_are_moved_under_the_base_dir(tmp_path):
    from sg2_container.data.synthetic import write_synthetic_folder

    uploads = write_synthetic_folder(tmp_path / "uploads", count=4, resolution=16)
    result = CliRunner().invoke(cli, [
        "local", "process", "--base-dir", str(tmp_path / "opt_ml"), "--input", f"input={uploads}",
        "--output", f"train={tmp_path / 'out'}", "--", "--source=/opt/ml/processing/input/",
        "--dest=/opt/ml/processing/train/animeface.zip", "--width=16", "--height", "16"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "animeface.zip").exists()


def test_an_earlier_runs_channels_are_gone_and_its_sources_kept(tmp_path, animeface_zip):
    """The job finds its data by the channel folders: a left-over `train` won over this run's
    `training`, and a left-over `detector` channel failed every later run."""
    base = tmp_path / "sm"
    detector = tmp_path / "det"
    detector.mkdir()
    (detector / "weights.pth").write_bytes(b"w")
    lay_out(LocalJob(base_dir=base, hyperparameters={},
                     channels={"train": animeface_zip, "detector": detector}))
    lay_out(LocalJob(base_dir=base, hyperparameters={}, channels={"training": animeface_zip}))
    assert sorted(p.name for p in (base / "input" / "data").iterdir()) == ["training"]
    assert animeface_zip.is_file() and (detector / "weights.pth").read_bytes() == b"w"


def test_every_local_job_starts_with_an_empty_model_folder(tmp_path, animeface_zip):
    base = tmp_path / "sm"
    job = LocalJob(base_dir=base, hyperparameters={}, channels={"train": animeface_zip})
    lay_out(job)
    (base / "model" / "model.pt").write_bytes(b"the previous run's model")
    (base / "model" / "samples").mkdir()
    lay_out(job)
    assert (base / "model").is_dir() and not any((base / "model").iterdir())
    precious = base / "model" / "checkpoint-000000000004.pt"  # an outdir=/opt/ml/model run
    precious.write_bytes(b"state")
    with pytest.raises(UserError, match="holds checkpoints of an earlier run"):
        lay_out(job)
    assert precious.read_bytes() == b"state"


def test_local_train_passes_a_failed_jobs_code_on_with_a_fresh_model_folder(tmp_path,
                                                                             animeface_zip):
    """A failing second run must not leave the first run's model.pt as if it were its own."""
    base = tmp_path / "sm"
    (base / "model").mkdir(parents=True)
    (base / "model" / "model.pt").write_bytes(b"stale")
    hp = tmp_path / "hp.json"
    hp.write_text(json.dumps({**ARTICLE, **SMALL, "cfg": "paper257"}))
    result = CliRunner().invoke(cli, ["local", "train", "--hyperparameters", str(hp), "--channel",
                                      f"train={animeface_zip}", "--base-dir", str(base)])
    assert result.exit_code == 1 and "cfg='paper257'" in result.output
    assert not (base / "model" / "model.pt").exists()


def test_local_train_names_a_hyperparameters_file_that_is_not_utf8(tmp_path, animeface_zip):
    hp = tmp_path / "hp.json"
    hp.write_bytes(b'{"gamma": "\xff"}')
    result = CliRunner().invoke(cli, ["local", "train", "--hyperparameters", str(hp), "--channel",
                                      f"train={animeface_zip}", "--base-dir", str(tmp_path / "sm")])
    assert result.exit_code == 1 and f"{hp} is not valid UTF-8 text" in result.output


@pytest.mark.parametrize("outdir,where", [
    (None, "checkpoints"), ('"/opt/ml/model"', "model"),
    ("/opt/ml/checkpoints/run-1", "checkpoints/run-1"),
])
def test_local_train_names_the_folder_its_checkpoints_are_in(tmp_path, outdir, where):
    """With outdir=/opt/ml/model it named BASE/checkpoints, which stayed empty."""
    from sg2_container.sagemaker.local import run_folder

    hyperparameters = {**ARTICLE, "outdir": outdir} if outdir else {"kimg": "1"}
    job = LocalJob(base_dir=tmp_path / "sm", hyperparameters=hyperparameters, channels={})
    assert run_folder(job) == tmp_path / "sm" / where


@pytest.mark.parametrize("flags", [[], ["-q"]])
def test_sg2_q_local_passes_quiet_on_to_the_job(tmp_path, flags):
    """`sg2 -q local process` ran the job's entrypoint at INFO: its log lines all showed."""
    import subprocess
    import sys

    from sg2_container.data.synthetic import write_synthetic_folder

    uploads = write_synthetic_folder(tmp_path / "uploads", count=2, resolution=16)
    env = {k: v for k, v in os.environ.items() if k != "SG2_LOG_LEVEL"}
    run = subprocess.run(
        [sys.executable, "-m", "sg2_container.cli.main", *flags, "local", "process",
         "--base-dir", str(tmp_path / "opt_ml"), "--input", f"input={uploads}",
         "--output", f"train={tmp_path / 'out'}", "--", "prepare",
         "--source=/opt/ml/processing/input/", "--dest=/opt/ml/processing/train/data.zip",
         "--width=16", "--height=16"],
        capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "out" / "data.zip").exists()
    job_info = [line for line in (run.stdout + run.stderr).splitlines()
                if " INFO sg2_container." in line]
    assert bool(job_info) == (not flags), job_info


@pytest.mark.parametrize("arguments,words", [
    (["infer", "--device", "cpu"], "does not resume: running it again runs every request"),
    (["prepare", "--source", "x"], "run the same command again to prepare from the start"),
    (["--source", "x"], "run the same command again to prepare from the start"),
])
def test_a_stopped_processing_job_says_what_running_it_again_does(tmp_path, monkeypatch,
                                                                    arguments, words):
    """Batch inference does not resume; "run the same command again" told its users it did."""
    from sg2_container.sagemaker import local as local_module
    from sg2_container.sagemaker.jobs import EXIT_STOPPED

    monkeypatch.setattr(local_module, "run_local_processing", lambda *a, **k: EXIT_STOPPED)
    result = CliRunner().invoke(cli, ["local", "process", "--base-dir", str(tmp_path / "sm"),
                                      "--", *arguments])
    assert result.exit_code == EXIT_STOPPED
    assert "the job was stopped before the end" in result.output and words in result.output
