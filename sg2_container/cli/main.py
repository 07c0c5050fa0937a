"""The `sg2` click group: parses, then hands over to the package's rooms."""
import logging

import click

from sg2_container import __version__
from sg2_container.cli import (
    data_commands,
    inference_commands,
    local_commands,
    metrics_commands,
    model_commands,
    pipeline_commands,
    project_commands,
    serve_commands,
    system_commands,
    train_commands,
)
from sg2_container.cli.errors import table_exit_codes
from sg2_container.io.allocator import keep_freed_memory
from sg2_container.io.logs import configure_logging


class _Group(click.Group):
    """The `sg2` group: every command exits by the job runner's table (0 done, 1 the user's
    error, usage errors included, 2 a crash, 130 stopped), as docs/sagemaker.md promises."""

    def make_context(self, info_name, args, parent=None, **extra):
        with table_exit_codes():
            return super().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx):
        with table_exit_codes():
            return super().invoke(ctx)


@click.group(cls=_Group,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="sg2")
@click.option("-v", "--verbose", count=True, help="More log output (-v: debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
def cli(verbose: int, quiet: bool) -> None:
    """sg2-container: train and run StyleGAN2-ADA, locally or on Amazon SageMaker."""
    # Neither flag: $SG2_LOG_LEVEL (set by an `sg2 -q` that started this one), else INFO.
    configure_logging(logging.WARNING if quiet else logging.DEBUG if verbose else None)
    keep_freed_memory()


system_commands.register(cli)
model_commands.register(cli)
inference_commands.register(cli)
project_commands.register(cli)
train_commands.register(cli)
local_commands.register(cli)
data_commands.register(cli)
pipeline_commands.register(cli)
serve_commands.register(cli)
metrics_commands.register(cli)

if __name__ == "__main__":
    cli()
