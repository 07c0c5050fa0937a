"""The one job runner every mode of the image uses (training, processing; later serve/infer).

It installs the stop signals, runs the mode, and turns the outcome into SageMaker's contract:
a failure text written last (most important words first) and one exit-code table:

| exit | meaning                          | failure text starts with |
|------|----------------------------------|--------------------------|
| 0    | finished                         | (none written)           |
| 1    | the user's to fix (UserError)    | `UserError:`             |
| 2    | a bug or crash (traceback in log)| `InternalError:`         |
| 130  | stopped by a signal, cleanly     | `Stopped:`               |
"""
from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from pathlib import Path

from sg2_container.errors import Stopped, UserError
from sg2_container.io.atomic import write_text_atomically
from sg2_container.io.signals import stop_on_signals

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_USER_ERROR = 1
EXIT_INTERNAL_ERROR = 2
EXIT_STOPPED = 130  # 128 + SIGINT, as a shell reports an interrupted command

EXIT_CODES = {
    EXIT_OK: "finished",
    EXIT_USER_ERROR: "UserError: bad input the user can fix (the failure text says what)",
    EXIT_INTERNAL_ERROR: "InternalError: a bug or crash (the traceback is in the log)",
    EXIT_STOPPED: "Stopped: a stop signal arrived; the job saved what it could and exited",
}

# SageMaker keeps the first 1024 bytes; stay below so nothing we write is cut mid-character.
MAX_FAILURE_BYTES = 1023


def failure_text(text: str) -> str:
    """One line (newlines folded), cut to fit MAX_FAILURE_BYTES of UTF-8."""
    line = " ".join(text.split())
    return line.encode("utf-8")[:MAX_FAILURE_BYTES].decode("utf-8", errors="ignore")


def write_failure(path: Path, text: str) -> None:
    """Writes the reason atomically; called last, just before exiting non-zero."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, failure_text(text))


def run_job(mode: str, body: Callable[[threading.Event], None], failure_file: Path, *,
            doing_on_stop: str = "finishing the current step") -> int:
    """Runs `body(stop_event)` as job `mode`; returns the exit code and never raises.

    `body` returns normally when finished, raises errors.Stopped when it honoured the stop
    event, UserError for bad input; anything else is an internal error.
    """
    # A failure text left by an earlier run in this folder would speak for this one (SageMaker
    # starts each job clean; a rerun of the container on the same folder does not).
    if failure_file.is_file():
        log.info("removing %s, an earlier run's failure text", failure_file)
        try:
            failure_file.unlink()
        except OSError as error:
            log.warning("cannot remove %s (%s): it may describe an earlier run", failure_file,
                        error.strerror)
    try:
        with stop_on_signals(doing=doing_on_stop) as stop:
            body(stop)
        return EXIT_OK
    except UserError as error:
        log.error("%s failed: %s", mode, error)
        write_failure(failure_file, f"UserError: {mode}: {error}")
        return EXIT_USER_ERROR
    except (Stopped, KeyboardInterrupt) as stopped:
        detail = str(stopped) or "before it finished"
        log.warning("%s stopped by a signal: %s", mode, detail)
        write_failure(failure_file, f"Stopped: {mode} stopped by a signal: {detail}")
        return EXIT_STOPPED
    # A missing package lands here too, unlike in `sg2` (cli/errors.py): the image installs every
    # package a mode imports, so there it is a broken image, ours to fix, not the job's input.
    # (serve's require_packages stays a UserError, for `sg2-sagemaker serve` outside the image;
    # in it the Dockerfile runs that check at build time.)
    except Exception as error:  # the traceback goes to the log, the reason to the failure file
        log.error("%s crashed:\n%s", mode, traceback.format_exc())
        write_failure(failure_file, f"InternalError: {mode}: {type(error).__name__}: {error} "
                                    "(the traceback is in the job log)")
        return EXIT_INTERNAL_ERROR
