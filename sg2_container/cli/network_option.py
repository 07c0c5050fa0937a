"""`--network` of the commands that render from a model: one definition, one check."""
from pathlib import Path

import click

from sg2_container.models.source import URL_PROBLEM, is_url

NETWORK_HELP = ("The model: our model file (.pt), a reference network pickle (.pkl, read "
                "safely), a training job's model.tar.gz, or a folder holding one of them.")


def _existing(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A URL (the reference's tools take one) or a missing path, named before any work."""
    if value is None:
        return value
    if is_url(value):
        raise click.BadParameter(f"{value!r}: {URL_PROBLEM}", ctx=ctx, param=param)
    if not Path(value).exists():
        raise click.BadParameter(f"{value!r}: no such file or folder", ctx=ctx, param=param)
    return value


def network_option(command):
    return click.option("--network", "network_path", required=True, metavar="PATH",
                        callback=_existing,
                        help=NETWORK_HELP)(command)
