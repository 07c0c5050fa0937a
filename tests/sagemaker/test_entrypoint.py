"""`sg2-sagemaker` speaks for itself, and every mode follows one exit-code table."""
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from sg2_container.errors import Stopped, UserError
from sg2_container.sagemaker.jobs import (
    EXIT_INTERNAL_ERROR,
    EXIT_OK,
    EXIT_STOPPED,
    EXIT_USER_ERROR,
    run_job,
)


def _entrypoint(tmp_path, *args):
    env = dict(os.environ, SAGEMAKER_BASE_DIR=str(tmp_path / "ml"))
    return subprocess.run([sys.executable, "-m", "sg2_container.sagemaker.entrypoint", *args],
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_the_modes_and_touches_nothing(tmp_path, flag):
    result = _entrypoint(tmp_path, flag)
    assert result.returncode == 0, result.stderr
    for mode in ("train", "serve", "prepare"):
        assert f"\n  {mode} " in result.stdout
    assert "130" in result.stdout and "UserError" in result.stdout
    assert not (tmp_path / "ml").exists()


def test_train_help_starts_nothing(tmp_path):
    result = _entrypoint(tmp_path, "train", "--help")
    assert result.returncode == 0 and "hyperparameters.json" in result.stdout
    assert not (tmp_path / "ml").exists()


def test_prepare_help_is_generated_from_the_options(tmp_path):
    result = _entrypoint(tmp_path, "prepare", "--help")
    assert result.returncode == 0, result.stderr
    assert "--max-pixels INT" in result.stdout and "[default: center-crop]" in result.stdout
    assert not (tmp_path / "ml" / "output" / "message").exists()


@pytest.mark.parametrize("error,code,prefix", [
    (None, EXIT_OK, None),
    (UserError("cfg='x' is not allowed"), EXIT_USER_ERROR, "UserError: demo: cfg='x' is not allowed"),
    (Stopped("at kimg 1.000"), EXIT_STOPPED, "Stopped: demo stopped by a signal: at kimg 1.000"),
    (KeyError("boom"), EXIT_INTERNAL_ERROR, "InternalError: demo: KeyError: 'boom'"),
])
def test_one_exit_code_table_and_failure_format(tmp_path, error, code, prefix):
    failure = tmp_path / "output" / "failure"

    def body(stop):
        if error is not None:
            raise error

    assert run_job("demo", body, failure) == code
    if prefix is None:
        assert not failure.exists()
    else:
        text = failure.read_text()
        assert text.startswith(prefix) and "\n" not in text and len(text.encode()) <= 1023


def test_an_earlier_runs_failure_text_does_not_outlive_a_finished_rerun(tmp_path):
    failure = tmp_path / "output" / "failure"

    def fails(stop):
        raise UserError("bad")

    assert run_job("demo", fails, failure) == EXIT_USER_ERROR
    assert failure.read_text().startswith("UserError: demo: bad")
    assert run_job("demo", lambda stop: None, failure) == EXIT_OK
    assert not failure.exists()


def test_a_long_failure_is_cut_at_a_character_boundary(tmp_path):
    failure = tmp_path / "failure"

    def body(stop):
        raise UserError("é" * 2000)

    run_job("demo", body, failure)
    assert len(failure.read_bytes()) <= 1023
    failure.read_text(encoding="utf-8")  # still valid UTF-8


def test_first_signal_requests_a_stop_and_a_second_is_only_reported(tmp_path, caplog):
    """The handler sets the event; the work decides when to stop; a second signal changes
    nothing (what is being written must complete)."""
    seen = []

    def body(stop):
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(5)
        os.kill(os.getpid(), signal.SIGINT)  # the second: no KeyboardInterrupt here
        time.sleep(0.05)
        seen.append("finished the write")
        raise Stopped("after the write")

    previous = signal.getsignal(signal.SIGINT)
    assert run_job("demo", body, tmp_path / "failure") == EXIT_STOPPED
    assert seen == ["finished the write"]
    assert "SIGINT again: already stopping" in caplog.text
    assert signal.getsignal(signal.SIGINT) is previous  # handlers are restored


def test_outside_the_main_thread_signals_stay_the_callers(tmp_path):
    codes = []
    thread = threading.Thread(target=lambda: codes.append(run_job("demo", lambda stop: None,
                                                                  tmp_path / "f")))
    thread.start()
    thread.join()
    assert codes == [EXIT_OK]
