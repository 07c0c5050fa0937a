"""The `sg2` click group: parses, then hands over to the package's rooms."""
import logging

import click

from sg2_container import __version__
from sg2_container.cli import data_commands, model_commands


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="sg2")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """sg2-container: train and run StyleGAN2-ADA, locally or on Amazon SageMaker."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


model_commands.register(cli)
data_commands.register(cli)
