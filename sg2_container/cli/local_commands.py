"""`sg2 local`: rehearse SageMaker jobs on this machine against a local /opt/ml tree."""
from pathlib import Path

import click

from sg2_container.cli.errors import user_errors_as_click


def register(cli: click.Group) -> None:
    cli.add_command(local)


@click.group()
def local() -> None:
    """Run the container's job modes locally, laid out exactly as SageMaker lays out /opt/ml."""


def _channel(ctx, param, values):
    channels = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise click.BadParameter(f"{value!r}: use NAME=PATH, e.g. train=data/animeface.zip")
        channels[name] = Path(path)
    return channels


@local.command("train")
@click.option("--hyperparameters", "hp_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="JSON object of hyperparameters, as given to the Estimator (values may be "
                   "JSON-encoded strings or plain values).")
@click.option("--channel", "channels", multiple=True, callback=_channel,
              help="An input channel NAME=PATH (file or folder); repeatable. Usually train=DATA.zip.")
@click.option("--checkpoints", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="A folder to use as /opt/ml/checkpoints (stands in for checkpoint_s3_uri); "
                   "default: BASE/checkpoints.")
@click.option("--base-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("sm-local"),
              show_default=True, help="Folder standing in for /opt/ml.")
def local_train(hp_path, channels, checkpoints, base_dir):
    """Run a training job as SageMaker would run the image: `sg2-sagemaker train` in a
    subprocess with SAGEMAKER_BASE_DIR=BASE. Ctrl-C stops it the way StopTrainingJob does
    (SIGTERM-like: checkpoint, then exit); running the command again resumes."""
    from sg2_container.sagemaker.hyperparameters import load_hyperparameters_file
    from sg2_container.sagemaker.local import LocalJob, failure_reason, run_folder, run_local

    with user_errors_as_click():
        hyperparameters = load_hyperparameters_file(Path(hp_path))
        job = LocalJob(base_dir=base_dir.resolve(), hyperparameters=hyperparameters,
                       channels=channels, checkpoints=checkpoints)
        code = run_local(job, "train")
        checkpoints_at = run_folder(job)
        _report(code, failure_reason(job.base_dir),
                stopped=f"its checkpoint is in {checkpoints_at}: run the same command again "
                        "to continue")
        click.echo(f"job finished; model in {job.base_dir / 'model'}, checkpoints in "
                   f"{checkpoints_at}")


def _report(code: int, reason: str | None, stopped: str) -> None:
    """The job's exit code, passed on unchanged (the table of sg2-sagemaker --help)."""
    from sg2_container.sagemaker.jobs import EXIT_OK, EXIT_STOPPED

    if code == EXIT_STOPPED:
        click.echo(f"the job was stopped before the end; {stopped}")
        raise SystemExit(code)
    if code != EXIT_OK:
        click.echo(f"Error: the job failed (exit {code}): {reason or 'see the log above'}",
                   err=True)
        raise SystemExit(code)


@local.command("process", context_settings={"ignore_unknown_options": True})
@click.option("--input", "inputs", multiple=True, callback=_channel,
              help="A processing input NAME=PATH, seen at /opt/ml/processing/NAME; repeatable.")
@click.option("--output", "outputs", multiple=True, callback=_channel,
              help="A processing output NAME=FOLDER, seen at /opt/ml/processing/NAME; repeatable.")
@click.option("--base-dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("sm-local-processing"), show_default=True,
              help="Folder standing in for /opt/ml.")
@click.argument("arguments", nargs=-1, type=click.UNPROCESSED)
def local_process(inputs, outputs, base_dir, arguments):
    """Run a processing job as SageMaker would run the image, with ARGUMENTS as its
    ContainerArguments (paths under /opt/ml work as they do in the container). Example:

    sg2 local process --input input=uploads/ --output train=data/ -- --source
    /opt/ml/processing/input/ --dest /opt/ml/processing/train/animeface.zip --width 256 --height 256
    """
    from sg2_container.sagemaker.local import processing_message, run_local_processing
    from sg2_container.sagemaker.processing import COMMANDS, command_named

    with user_errors_as_click():
        base = base_dir.resolve()
        code = run_local_processing(base, inputs, outputs, list(arguments))
        command = COMMANDS.get(command_named(list(arguments)) or "")
        _report(code, processing_message(base),
                stopped=command.after_stop if command else "run the same command again")
        click.echo("processing job finished; outputs in "
                   + (", ".join(str(p) for p in outputs.values()) or "(none)"))
