"""Model commands: `sg2 info`, `sg2 generate`, `sg2 convert`."""
import click


def register(cli: click.Group) -> None:
    """Adds the model commands to the `sg2` group."""
