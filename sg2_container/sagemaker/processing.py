"""Processing-job mode: runs one processing command and reports failure the SageMaker way.

On failure the full traceback goes to the log (CloudWatch) and a short reason, most important
words first, to <base>/output/message, written last; then a non-zero exit.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

import click

from sg2_container.errors import UserError
from sg2_container.sagemaker import paths
from sg2_container.sagemaker.failure import write_failure

log = logging.getLogger(__name__)

EXIT_FAILED = 1
EXIT_STOPPED = 130  # 128 + SIGINT, as a shell reports it


class _Stopped(Exception):
    pass


def _prepare(args: list[str], stop: threading.Event) -> None:
    """Parses with the CLI's own `prepare` options (one definition), runs with our stop event."""
    from sg2_container.cli.data_commands import prepare_command
    from sg2_container.data.options import PrepareOptions
    from sg2_container.data.prepare import Stopped, prepare

    try:
        context = prepare_command.make_context("sg2-sagemaker prepare", list(args))
    except click.exceptions.Exit:  # --help was printed
        return
    try:
        report = prepare(PrepareOptions(**context.params), progress=False, stop=stop)
    except Stopped as e:
        raise _Stopped(str(e)) from e
    log.info("prepare: %s", report.summary())


# Processing commands by first argument; add new ones here.
COMMANDS: dict[str, Callable[[list[str], threading.Event], None]] = {"prepare": _prepare}
# Arguments that start with an option go to this command: the dataset tool's own argument list,
# as pipelines pass it (`--source ... --dest ... --width 256 --height 256`).
DEFAULT_COMMAND = "prepare"


def stop_on_signals() -> threading.Event:
    """SIGINT (how SageMaker stops a processing job) and SIGTERM (docker stop) set the returned
    event, which the command checks between files; a second signal interrupts at once.

    The handler only sets a flag: an exception raised from a handler can land anywhere (even in
    a fork hook that swallows it), so a stop would be lost.
    """
    stop = threading.Event()

    def handle(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt(f"signal {signum} (second)")
        log.warning("signal %d: stopping after the current files", signum)
        stop.set()

    try:
        signal.signal(signal.SIGINT, handle)
        signal.signal(signal.SIGTERM, handle)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        pass
    return stop


def run_processing(args: list[str], stop: threading.Event | None = None) -> int:
    """Runs `args` as a processing command; returns the process exit code."""
    command = "processing"
    stop = stop if stop is not None else threading.Event()
    try:
        if not args:
            raise UserError(
                "no processing command given; expected one of "
                f"{', '.join(sorted(COMMANDS))}, or {DEFAULT_COMMAND} options such as "
                "--source /opt/ml/processing/input --dest /opt/ml/processing/train/data.zip"
            )
        if args[0] in COMMANDS:
            command, rest = args[0], args[1:]
        elif args[0].startswith("-"):
            command, rest = DEFAULT_COMMAND, args
        else:
            raise UserError(
                f"unknown processing command {args[0]!r}; expected one of "
                f"{', '.join(sorted(COMMANDS))}, or {DEFAULT_COMMAND} options (--source ...)"
            )
        # Paths written for the container (/opt/ml/...) also work under a local base dir.
        rest = [str(paths.translate(a)) if a.startswith(paths.DEFAULT_BASE_DIR + "/") else a
                for a in rest]
        log.info("processing command: %s %s", command, " ".join(rest))
        COMMANDS[command](rest, stop)
        return 0
    except (UserError, click.ClickException) as e:
        reason = e.format_message() if isinstance(e, click.ClickException) else str(e)
        log.error("%s failed: %s", command, reason)
        write_failure(paths.message_path(), f"{command} failed: {reason}")
        return EXIT_FAILED
    except (_Stopped, KeyboardInterrupt):
        return _stopped(command)
    except Exception as e:
        log.exception("%s crashed", command)
        write_failure(
            paths.message_path(),
            f"{command} crashed: {type(e).__name__}: {e} (the traceback is in the job log)",
        )
        return EXIT_FAILED


def _stopped(command: str) -> int:
    log.warning("%s stopped by a signal before it finished; nothing was written", command)
    write_failure(paths.message_path(), f"{command} stopped by a signal before it finished")
    return EXIT_STOPPED
