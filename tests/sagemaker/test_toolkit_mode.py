"""The same job started the sagemaker-training toolkit's way (in-process module mode)."""
import signal
import subprocess
import sys

import pytest

from tests.sagemaker.conftest import ARTICLE, SMALL

pytest.importorskip("sagemaker_training", reason="the sagemaker-training package is not installed")


def _toolkit(opt_ml):
    return subprocess.Popen(
        [sys.executable, "-m", "sagemaker_training.cli.train"],
        env=opt_ml.env(SAGEMAKER_TRAINING_MODULE="sg2_container.sagemaker.job:main",
                       SM_STUDIO_LOCAL_MODE="true"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_toolkit_module_mode_trains_and_sigterm_reaches_our_handler(opt_ml):
    opt_ml.hyperparameters({**ARTICLE, **SMALL, "kimg": 0.2, "snap": 100})
    job = _toolkit(opt_ml)
    assert opt_ml.wait_for(lambda: opt_ml.checkpoints() or job.poll() is not None, timeout=180)
    assert job.poll() is None, job.communicate()[0]
    job.send_signal(signal.SIGTERM)
    out, _ = job.communicate(timeout=60)
    assert job.returncode == 130, out  # the job table's "stopped"; the toolkit passes it on
    assert "SIGTERM: stopping cleanly" in out
    assert opt_ml.failure.startswith("Stopped: train stopped by a signal: at kimg")
    assert len(opt_ml.checkpoints()) == 2  # tick 0, then the one written on SIGTERM


def test_toolkit_keeps_our_failure_reason_and_exit_code(opt_ml):
    opt_ml.hyperparameters({**ARTICLE, **SMALL, "cfg": "paper257"})
    job = _toolkit(opt_ml)
    out, _ = job.communicate(timeout=120)
    assert job.returncode == 1, out
    assert opt_ml.failure.startswith("UserError: train: cfg='paper257'")
