"""`sg2-sagemaker`, the image's ENTRYPOINT: picks the job mode from the first argument.

SageMaker runs `IMAGE train` for training, `IMAGE serve` for hosting, and the image with the
job's ContainerArguments (no mode word) for processing.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from sg2_container.errors import UserError
from sg2_container.sagemaker import paths
from sg2_container.sagemaker.failure import write_failure
from sg2_container.sagemaker.processing import EXIT_FAILED, run_processing, stop_on_signals

log = logging.getLogger(__name__)


def _not_in_this_build(
    mode: str, failure_file: Callable[[], object] | None
) -> Callable[[list[str]], int]:
    def run(args: list[str]) -> int:
        error = UserError(
            f"{mode}: this build of sg2-container has no {mode} mode yet; it runs processing "
            "jobs only (prepare)"
        )
        log.error("%s", error)
        if failure_file is not None:
            write_failure(failure_file(), str(error))  # type: ignore[arg-type]
        return EXIT_FAILED

    return run


def _train(args: list[str]) -> int:
    from sg2_container.sagemaker.job import run_training_job

    return run_training_job(args)


# Job modes by argv[1]; anything else is a processing job.
MODES: dict[str, Callable[[list[str]], int]] = {
    "train": _train,
    "serve": _not_in_this_build("serve", None),
}


def _looks_like_training_job() -> bool:
    """A job that overrides ContainerEntrypoint passes no `train`: a training job still has
    input/config/hyperparameters.json and no processing config."""
    base = paths.base_dir()
    return (base / "input" / "config" / "hyperparameters.json").exists() and not (
        base / "config" / "processingjobconfig.json"
    ).exists()


def main(argv: list[str] | None = None) -> int:
    """`argv` as in sys.argv (program name first); returns the exit code."""
    argv = list(sys.argv if argv is None else argv)
    # stdout: SageMaker's metric definitions read the log stream, and the tick lines go there.
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stdout,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    args = argv[1:]
    if args and args[0] in MODES:
        return MODES[args[0]](args[1:])
    if not args and _looks_like_training_job():
        return MODES["train"](args)
    # As PID 1 we only get the signals we handle (and a shell may have started us with SIGINT
    # ignored): install ours before any work starts.
    stop = stop_on_signals()
    return run_processing(args, stop)


if __name__ == "__main__":
    sys.exit(main())
