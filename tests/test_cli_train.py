"""`sg2 train` as a user runs it: dry run, bad values, Ctrl-C and the same command again."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from click.testing import CliRunner

from sg2_container.cli.main import cli
from sg2_container.data.synthetic import write_synthetic_dataset

SMALL = ["--batch", "4", "--cbase", "128", "--cmax", "16", "--map", "2", "--workers", "0",
         "--device", "cpu"]


def _start_train(tmp_path, *extra, workers="0", **popen):
    """`sg2 train` as a real process on a tiny set, 0.4 kimg, one status line per step."""
    data = write_synthetic_dataset(tmp_path / "d.zip", count=16, resolution=16)
    small = [workers if opt == "0" else opt for opt in SMALL]
    command = [sys.executable, "-m", "sg2_container.cli.main", "train", "--data", str(data),
               "--outdir", str(tmp_path / "run"), "--kimg", "0.4", "--kimg-per-tick", "0.004",
               "--snap", "1000", *small, *extra]
    return subprocess.Popen(command, env=dict(os.environ, OMP_NUM_THREADS="1"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def _wait_for_checkpoint(run_dir, timeout=120):
    deadline = time.monotonic() + timeout
    while not list(run_dir.glob("checkpoint-*.pt")) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_dry_run_prints_the_resolved_plan(tmp_path):
    data = write_synthetic_dataset(tmp_path / "d.zip", count=8, resolution=16)
    result = CliRunner().invoke(cli, ["train", "--data", str(data), "--outdir", str(tmp_path / "run"),
                                      "--cfg", "paper256", "--gamma", "10", "--dry-run"])
    assert result.exit_code == 0, result.output
    resolved = json.loads(result.output)
    assert resolved["plan"]["batch_size"] == 64 and resolved["plan"]["batch_gpu"] == 8
    assert resolved["plan"]["loss_gamma"] == 10
    assert resolved["plan"]["G_kwargs"]["img_resolution"] == 16
    assert not (tmp_path / "run").exists()


def test_bad_values_name_what_is_allowed(tmp_path):
    data = write_synthetic_dataset(tmp_path / "d.zip", count=8, resolution=16)
    base = ["train", "--data", str(data), "--outdir", str(tmp_path / "run")]
    result = CliRunner().invoke(cli, base + ["--cfg", "paper257"])
    assert result.exit_code == 1 and "'paper257' is not one of 'auto', 'stylegan2', 'paper256'" in result.output
    result = CliRunner().invoke(cli, base + ["--gamma", "-1"])
    assert result.exit_code == 1 and "gamma=-1.0 is not allowed: a number >= 0" in result.output
    result = CliRunner().invoke(cli, base + ["--aug", "noaug", "--augpipe", "bg"])
    assert result.exit_code == 1 and "no augpipe with aug='noaug'" in result.output
    result = CliRunner().invoke(cli, base + ["--batch", "32", "--dry-run"])
    assert result.exit_code == 1 and "batch=32 is larger than the dataset" in result.output
    assert "gives 8 images; choose a batch of at most 8" in result.output
    result = CliRunner().invoke(cli, base + ["--metrics", "fid50k_fll"])
    assert result.exit_code == 1 and "metrics='fid50k_fll'" in result.output
    assert "fid50k_full, kid50k_full" in result.output


def test_a_dry_run_checks_what_the_start_would(tmp_path, monkeypatch):
    """--dry-run said all was well for a device, process count or metrics file the real start
    then refused."""
    monkeypatch.delenv("SG2_DETECTOR", raising=False)
    monkeypatch.delenv("SG2_VGG16_WEIGHTS", raising=False)
    data = write_synthetic_dataset(tmp_path / "d.zip", count=8, resolution=16)
    base = ["train", "--data", str(data), "--outdir", str(tmp_path / "run"), "--dry-run"]
    for extra, message in [
            (["--device", "tpu"], "device 'tpu' is not a device name"),
            (["--gpus", "1024"], "gpus=1024 is not allowed"),
            (["--metrics", "fid50k_full"], "metrics need a detector file and none was given"),
            (["--metrics", "ppl2_wend", "--vgg16", str(tmp_path / "no.pth")],
             f"VGG16 weights file {tmp_path / 'no.pth'} does not exist")]:
        result = CliRunner().invoke(cli, base + extra)
        assert result.exit_code == 1 and message in result.output, (extra, result.output)
    assert CliRunner().invoke(cli, base + ["--device", "cpu"]).exit_code == 0
    assert not (tmp_path / "run").exists()


def test_an_s3_outdir_is_refused_not_made_a_local_folder(tmp_path, monkeypatch):
    """s3://bucket/x as a path is the local folder ./s3:/bucket/x: the run trained there."""
    data = write_synthetic_dataset(tmp_path / "d.zip", count=8, resolution=16)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["train", "--data", str(data), "--outdir", "s3://bucket/x",
                                      "--kimg", "0.004", *SMALL])
    assert result.exit_code == 1, result.output
    assert ("outdir='s3://bucket/x' is not allowed: training writes to a local folder"
            in result.output)
    assert not (tmp_path / "s3:").exists()


def test_a_4px_dataset_is_refused_before_training(tmp_path):
    """prepare and dataset synthetic write 4x4 images, but D has no block to read them with: the
    first step crashed (exit 2) on a None activation."""
    data = write_synthetic_dataset(tmp_path / "d.zip", count=8, resolution=4)
    result = CliRunner().invoke(cli, ["train", "--data", str(data), "--outdir",
                                      str(tmp_path / "run"), "--kimg", "0.004", *SMALL])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert ("this dataset is 4x4: training needs images of at least 8x8" in result.output
            and "--width 8 or more" in result.output)
    assert not list((tmp_path / "run").glob("checkpoint-*.pt"))


@pytest.mark.parametrize("args,message", [
    (["train", "--data", "d.zip"], "Missing option '--outdir'"),
    (["train", "--data", "d.zip", "--outdir", "o", "--gpus", "two"],
     "Invalid value for '--gpus': 'two' is not an integer (a power of two >= 1)"),
    (["generate", "--network", "README.md", "--seeds", "1", "--class", "abc"],
     "Invalid value for '--class': 'abc' is not an integer (an integer >= 0)"),
    (["train", "--data", "d.zip", "--outdir", "o", "--cfg", "paper257"],
     "'paper257' is not one of"),
    (["train", "--data", "d.zip", "--outdir", "o", "--learning-rate", "1"],
     "No such option '--learning-rate'"),
    (["prepare", "--source", "s", "--dest", "d.zip", "--channels", "4"], "'4' is not one of"),
    (["tarin"], "No such command 'tarin'"),
    (["--bogus", "train"], "No such option '--bogus'"),
])
def test_usage_errors_exit_1_as_the_exit_code_table_says(args, message):
    """docs/sagemaker.md: 1 is the user's to fix, 2 a crash; click's own convention is 2."""
    result = subprocess.run([sys.executable, "-m", "sg2_container.cli.main", *args],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_crash_exits_2_with_one_error_line_after_the_traceback(tmp_path, monkeypatch):
    from sg2_container.data import prepare

    def crash(options, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", "/proc/.x.zip.work")

    monkeypatch.setattr(prepare, "prepare", crash)
    result = CliRunner().invoke(cli, ["prepare", "--source", str(tmp_path), "--dest",
                                      str(tmp_path / "x.zip"), "--width", "32"])
    assert result.exit_code == 2, result.output
    lines = result.output.rstrip().splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert result.output.count("Traceback") == 1
    assert lines[-1] == ("Error: internal error (a bug; please report it with the traceback "
                         "above): FileNotFoundError: [Errno 2] No such file or directory: "
                         "'/proc/.x.zip.work'")


def test_a_user_error_from_any_command_exits_1_not_as_a_crash(tmp_path):
    """dataset synthetic into a path under a file: the user's to fix (exit 1, one line)."""
    afile = tmp_path / "file"
    afile.write_text("")
    result = CliRunner().invoke(cli, ["dataset", "synthetic", str(afile / "sub"), "--count", "1"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output
    assert f"output folder {afile / 'sub'}: cannot create or write in it" in result.output


def test_a_reader_that_closes_the_pipe_is_not_a_crash():
    """`sg2 pipeline parameters | true`: the reader is gone before the output; no bug report."""
    result = subprocess.run(f"{sys.executable} -m sg2_container.cli.main pipeline parameters "
                            "| true", shell=True, capture_output=True, text=True, timeout=60,
                            executable="/bin/bash", env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr, \
        result.stderr


def test_ctrl_c_in_a_command_without_its_own_handler_exits_130(tmp_path, monkeypatch):
    from sg2_container.data import prepare

    def interrupted(options, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare, "prepare", interrupted)
    result = CliRunner().invoke(cli, ["prepare", "--source", str(tmp_path), "--dest",
                                      str(tmp_path / "x.zip"), "--width", "32"])
    assert result.exit_code == 130 and "stopped (Ctrl-C)" in result.output


def test_ctrl_c_saves_and_the_same_command_continues(tmp_path):
    data = write_synthetic_dataset(tmp_path / "d.zip", count=16, resolution=16)
    command = [sys.executable, "-m", "sg2_container.cli.main", "train", "--data", str(data),
               "--outdir", str(tmp_path / "run"), "--kimg", "0.1", "--kimg-per-tick", "0.004",
               "--snap", "1000", *SMALL]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for_checkpoint(tmp_path / "run")
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 130, out
    assert "stopped at kimg" in out
    stopped = sorted((tmp_path / "run").glob("checkpoint-*.pt"))[-1].name

    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"continuing from {stopped}" in again.stderr
    assert "done: kimg 0.100" in again.stdout


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_whole_process_group_with_data_workers_is_a_clean_stop(tmp_path, sig):
    """Ctrl-C in a terminal, or a supervisor stopping a container's processes, reaches every
    process of the group, data workers included."""
    process = _start_train(tmp_path, workers="2", start_new_session=True)
    _wait_for_checkpoint(tmp_path / "run")
    time.sleep(0.5)
    os.killpg(process.pid, sig)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 130, out
    assert "stopped at kimg" in out and "Traceback" not in out


def test_sigterm_reaches_every_worker_of_a_two_process_run(tmp_path):
    """The parent mirrors the stop into its gloo workers; they save together and exit."""
    process = _start_train(tmp_path, "--gpus", "2")
    _wait_for_checkpoint(tmp_path / "run")
    process.send_signal(signal.SIGTERM)
    start = time.monotonic()
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 130, out
    assert time.monotonic() - start < 15
    assert "stopped at kimg" in out
    checkpoints = sorted((tmp_path / "run").glob("checkpoint-*.pt"))
    assert len(checkpoints) == 2  # tick 0, and the one both ranks agreed to write on stop


def _spawned_workers(parent_pid):
    import pathlib

    children = pathlib.Path(f"/proc/{parent_pid}/task/{parent_pid}/children").read_text().split()
    workers = []
    for pid in children:
        try:
            cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except FileNotFoundError:
            continue
        if "multiprocessing" in cmdline and "resource_tracker" not in cmdline:
            workers.append(int(pid))
    return workers


def test_a_dead_worker_ends_the_run_instead_of_hanging_it(tmp_path):
    process = _start_train(tmp_path, "--gpus", "2")
    _wait_for_checkpoint(tmp_path / "run")
    workers = _spawned_workers(process.pid)
    assert len(workers) == 2
    os.kill(workers[1], signal.SIGKILL)  # e.g. the kernel's OOM killer
    out, _ = process.communicate(timeout=90)
    assert process.returncode != 0
    assert "training worker(s) failed" in out


def test_quiet_reaches_the_workers_of_a_two_process_run(tmp_path):
    """`sg2 -q train --gpus 2`: the spawned ranks log at the parent's level, not at INFO."""
    data = write_synthetic_dataset(tmp_path / "d.zip", count=8, resolution=16)
    command = [sys.executable, "-m", "sg2_container.cli.main", "-q", "train", "--data", str(data),
               "--outdir", str(tmp_path / "run"), "--kimg", "0.008", "--gpus", "2", *SMALL]
    result = subprocess.run(command, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "run" / "network-final.pt").is_file()
    assert " INFO " not in result.stdout + result.stderr
