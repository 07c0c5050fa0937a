"""Only the CLI turns library errors into click errors."""
import contextlib

import click

from sg2_container.errors import UserError


@contextlib.contextmanager
def user_errors_as_click():
    """A UserError becomes a one-line click error (exit 1); anything else keeps its traceback."""
    try:
        yield
    except UserError as error:
        raise click.ClickException(str(error)) from error
