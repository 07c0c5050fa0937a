"""Dataset commands: `sg2 prepare`, `sg2 dataset info`."""
import click


def register(cli: click.Group) -> None:
    """Adds the dataset commands to the `sg2` group."""
