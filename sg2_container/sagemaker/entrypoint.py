"""`sg2-sagemaker`, the image's ENTRYPOINT: picks the job mode from the first argument.

SageMaker runs `IMAGE train` for training, `IMAGE serve` for hosting, and the image with the
job's ContainerArguments (a processing command, or none) for processing.
"""

from __future__ import annotations

import logging
import sys

from sg2_container.io.allocator import keep_freed_memory
from sg2_container.io.logs import configure_logging
from sg2_container.sagemaker import paths

log = logging.getLogger(__name__)

USAGE = "usage: sg2-sagemaker [-h] MODE [ARGS...]"
TRAIN_HELP = """\
usage: sg2-sagemaker train

Runs a SageMaker training job: reads <base>/input/config/hyperparameters.json (every `sg2 train`
option, JSON-encoded or plain), finds the data in the 'train' or 'training' channel, trains
into <base>/checkpoints (resuming from the newest checkpoint there after a spot restart), and
leaves the model in <base>/model. <base> is /opt/ml, or $SAGEMAKER_BASE_DIR.
SIGTERM saves a checkpoint and exits. Exit codes: 0 done, 1 user error, 2 internal error,
130 stopped; the reason is in <base>/output/failure. Options: `sg2 train --help`.
"""


def _help() -> str:
    from sg2_container.sagemaker.jobs import EXIT_CODES
    from sg2_container.sagemaker.processing import COMMANDS

    lines = [USAGE, "", "The sg2-container image's entrypoint: one mode per SageMaker job type.", "",
             "modes:",
             "  train             training job: hyperparameters.json -> checkpoints -> model",
             "  serve             hosting: HTTP /ping and /invocations on port 8080, the model "
             "from <base>/model"]
    lines += [f"  {name:<17} processing job: {command.summary}" for name, command in COMMANDS.items()]
    lines += ["  (no mode)         processing job: prepare options given directly (--source ...),",
              "                    or a training job when only hyperparameters.json exists",
              "", "`sg2-sagemaker MODE --help` explains a mode. Exit codes:"]
    lines += [f"  {code:<4} {meaning}" for code, meaning in EXIT_CODES.items()]
    return "\n".join(lines) + "\n"


def _train(args: list[str]) -> int:
    if args and args[0] in ("-h", "--help"):
        sys.stdout.write(TRAIN_HELP)
        return 0
    if args:
        log.warning("train: ignoring arguments %s; options come from hyperparameters.json", args)
    from sg2_container.sagemaker.job import run_training_job

    return run_training_job()


def _serve(args: list[str]) -> int:
    from sg2_container.sagemaker.serve import run_serve

    return run_serve(args)


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
    args = argv[1:]
    if args and args[0] in ("-h", "--help", "help"):
        sys.stdout.write(_help())
        return 0
    # stdout: SageMaker's metric definitions read the log stream, and the tick lines go there.
    configure_logging(stream=sys.stdout)
    keep_freed_memory()
    if args and args[0] == "train":
        return _train(args[1:])
    if args and args[0] == "serve":
        return _serve(args[1:])
    if not args and _looks_like_training_job():
        return _train([])
    from sg2_container.sagemaker.processing import run_processing

    return run_processing(args)


if __name__ == "__main__":
    sys.exit(main())
