"""Processing-job mode: the image run with a job's ContainerArguments.

The first argument names the processing command (`prepare`, `infer`; arguments that start with an
option go to `prepare`, as pipelines pass the dataset tool's own argument list). Each command's
arguments are parsed from its options' schema. The job runner (jobs.py) writes the failure text
to <base>/output/message and picks the exit code.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable

from sg2_container.errors import UserError
from sg2_container.sagemaker import paths
from sg2_container.sagemaker.jobs import run_job

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ProcessingCommand:
    summary: str  # one line for `sg2-sagemaker --help`
    run: Callable[[list[str], threading.Event], None]
    after_stop: str  # what a stopped job leaves, and how to go on


def _prepare(args: list[str], stop: threading.Event) -> None:
    from sg2_container.data.options import PrepareOptions
    from sg2_container.data.prepare import prepare
    from sg2_container.options.schema import parse_args

    values = parse_args(PrepareOptions, args, "sg2-sagemaker prepare", COMMANDS["prepare"].summary)
    if values is None:  # --help was printed
        return
    report = prepare(PrepareOptions(**values), progress=False, stop=stop)
    log.info("prepare: %s", report.summary())


def _infer(args: list[str], stop: threading.Event) -> None:
    from sg2_container.sagemaker.infer import run_infer

    run_infer(args, stop)


# Processing commands by first argument; add new ones here.
COMMANDS: dict[str, ProcessingCommand] = {
    "prepare": ProcessingCommand(
        "images (folder, zip or tar) -> a training zip; the options of `sg2 prepare`", _prepare,
        "no output was written; run the same command again to prepare from the start"),
    "infer": ProcessingCommand(
        "batch inference: model + images/requests.jsonl -> results and manifest.json", _infer,
        "the requests it finished are kept with their files and listed in manifest.json; "
        "it does not resume: running it again runs every request again"),
}
# Arguments that start with an option go to this command.
DEFAULT_COMMAND = "prepare"


def command_named(args: list[str]) -> str | None:
    """The processing command a job's ContainerArguments name, None when they name none."""
    if args and args[0] in COMMANDS:
        return args[0]
    if args and args[0].startswith("-"):
        return DEFAULT_COMMAND
    return None


def split_command(args: list[str]) -> tuple[str, list[str]]:
    """(command, its arguments) from a processing job's ContainerArguments."""
    if not args:
        raise UserError(
            "no processing command given; expected one of "
            f"{', '.join(sorted(COMMANDS))}, or {DEFAULT_COMMAND} options such as "
            "--source /opt/ml/processing/input --dest /opt/ml/processing/train/data.zip")
    name = command_named(args)
    if name is None:
        raise UserError(f"unknown processing command {args[0]!r}; expected one of "
                        f"{', '.join(sorted(COMMANDS))}, or {DEFAULT_COMMAND} options (--source ...)")
    return name, args[1:] if args[0] == name else args


def _translate_argument(arg: str) -> str:
    """A path written for the container (/opt/ml/..., alone or as --opt=/opt/ml/...) moved
    under the actual base dir, so local stand-ins see the same files."""
    prefix, sep, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
    if value.startswith(paths.DEFAULT_BASE_DIR + "/"):
        return f"{prefix}{sep}{paths.translate(value)}"
    return arg


def run_processing(args: list[str]) -> int:
    """Runs `args` as a processing job; returns the process exit code (jobs.py's table)."""
    command = command_named(args) or "processing"

    def body(stop: threading.Event) -> None:
        name, rest = split_command(args)
        rest = [_translate_argument(a) for a in rest]
        log.info("processing command: %s %s", name, " ".join(rest))
        COMMANDS[name].run(rest, stop)

    return run_job(command, body, paths.message_path(), doing_on_stop="finishing the current item or request")
