"""The resume guards as a user meets them: `sg2 train` in a real process on a run folder."""
import os
import shutil
import subprocess
import sys

import pytest
import torch

from sg2_container.training import checkpoint as ckpt
from sg2_container.training.loop import train
from tests.training.conftest import StopAfter, folder_bytes


def _flags(options):
    """The `sg2 train` command line for the tiny_options fixture's values."""
    return ["--data", options.data, "--outdir", options.outdir, "--cfg", options.cfg,
            "--kimg", str(options.kimg), "--batch", str(options.batch), "--cbase", str(options.cbase),
            "--cmax", str(options.cmax), "--map", str(options.map), "--workers", "0",
            "--snap", str(options.snap), "--kimg-per-tick", str(options.kimg_per_tick),
            "--aug", options.aug, "--p", str(options.p), "--augpipe", options.augpipe,
            "--mirror", str(int(options.mirror)), "--gamma", str(options.gamma),
            "--seed", str(options.seed), "--device", "cpu"]


def _sg2_train(options, *extra, prefix=()):
    command = [*prefix, sys.executable, "-m", "sg2_container.cli.main", "train", *_flags(options), *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1")  # PYTHONPATH included: this tree's code
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    return result.returncode, result.stdout + result.stderr


def test_a_newer_checkpoint_fails_the_job_and_is_left_byte_identical(tiny_options, tmp_path):
    options = tiny_options()
    train(options, stop_event=StopAfter(1))
    path = ckpt.list_checkpoints(tmp_path / "run")[-1]
    torch.save(dict(ckpt.load_checkpoint(path).payload, format_version=99), path)
    before = folder_bytes(tmp_path / "run")
    code, out = _sg2_train(options)
    assert code == 1, out
    assert "written by a newer sg2-container (format_version 99; this build reads up to " \
           f"{ckpt.FORMAT_VERSION}): upgrade sg2-container" in out
    assert "Traceback" not in out
    assert folder_bytes(tmp_path / "run") == before


def test_a_corrupt_checkpoint_is_moved_aside_and_the_job_resumes_from_the_previous(tiny_options, tmp_path):
    options = tiny_options()
    train(options, stop_event=StopAfter(2))  # checkpoints at 4 and 8
    newest = tmp_path / "run" / "checkpoint-000000000008.pt"
    torn = newest.read_bytes()[:5000]  # a copy cut short
    newest.write_bytes(torn)
    code, out = _sg2_train(options)
    assert code == 0, out
    assert "moved unreadable checkpoint checkpoint-000000000008.pt to corrupt/" in out
    assert "continuing from checkpoint-000000000004.pt" in out and "done: kimg 0.024" in out
    assert (tmp_path / "run" / "corrupt" / newest.name).read_bytes() == torn
    assert [p.name for p in ckpt.list_checkpoints(tmp_path / "run")] == [
        "checkpoint-000000000004.pt", "checkpoint-000000000020.pt", "checkpoint-000000000024.pt"]


def test_changed_gamma_is_refused_with_the_list_then_accepted_on_purpose(tiny_options, tmp_path):
    options = tiny_options()
    train(options, stop_event=StopAfter(1))
    before = folder_bytes(tmp_path / "run")
    changed = tiny_options(gamma=2.0)
    code, out = _sg2_train(changed)
    assert code == 1, out
    assert "gamma: 1.0 -> 2.0" in out and "--allow-changed-options" in out
    assert folder_bytes(tmp_path / "run") == before

    code, out = _sg2_train(changed, "--allow-changed-options")
    assert code == 0, out
    assert "continuing with changed options" in out and "done: kimg 0.024" in out


def _read_only(folder):
    """A command prefix under which `folder` is read-only, for root too (a private read-only
    bind mount); None where that is impossible."""
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return ()
    if shutil.which("unshare") is None:
        return None
    script = f'mount --bind "{folder}" "{folder}" && mount -o remount,bind,ro "{folder}" && exec "$@"'
    prefix = ("unshare", "-m", "sh", "-c", script, "sh")
    probe = subprocess.run([*prefix, "touch", str(folder / "probe")], capture_output=True, text=True)
    return prefix if probe.returncode != 0 and "Read-only" in probe.stderr else None


def test_a_read_only_run_folder_is_a_named_user_error(tiny_options, tmp_path):
    prefix = _read_only(tmp_path / "run")
    if prefix is None:
        pytest.skip("cannot make a read-only folder here (root without mount namespaces)")
    code, out = _sg2_train(tiny_options(), prefix=prefix)
    assert code == 1, out
    assert f"cannot write checkpoints to {tmp_path / 'run'}: read-only file system" in out \
        or f"cannot write checkpoints to {tmp_path / 'run'}: permission denied" in out
    assert "Traceback" not in out
