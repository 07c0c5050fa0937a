"""Only the CLI turns library errors into click errors, and exceptions into exit codes."""
import contextlib
import traceback

import click

from sg2_container.errors import UserError, missing_package
from sg2_container.options.schema import renamed
from sg2_container.sagemaker.jobs import EXIT_INTERNAL_ERROR, EXIT_STOPPED, EXIT_USER_ERROR


@contextlib.contextmanager
def user_errors_as_click(options: type | None = None):
    """A UserError becomes a one-line click error (exit 1); anything else keeps its traceback.
    With `options` (the command's options class), an error about one of its fields names the
    --flag the user typed, not the field (`--class=-1`, not `class_idx=-1`)."""
    try:
        yield
    except UserError as error:
        if options is not None:
            error = renamed(error, options)
        raise click.ClickException(str(error)) from error


@contextlib.contextmanager
def stops_cleanly(doing: str):
    """SIGTERM or Ctrl-C sets the event yielded, which the work checks at its safe points (between
    batches, frames, steps); the Stopped raised there ends the command with exit 130 and one
    line, keeping what was finished and leaving no partial file."""
    from sg2_container.errors import Stopped
    from sg2_container.io.signals import stop_on_signals

    try:
        with stop_on_signals(doing=doing) as stop:
            yield stop
    except Stopped as stopped:
        click.echo(f"stopped: {stopped}", err=True)
        raise SystemExit(EXIT_STOPPED) from None


class InternalError(click.ClickException):
    """A crash: exit 2 with one line; the traceback was printed above it for a bug report."""

    exit_code = EXIT_INTERNAL_ERROR


@contextlib.contextmanager
def table_exit_codes():
    """The job runner's exit-code table for `sg2`: click's usage errors (exit 2 by click's own
    convention) become the user's errors (1), an unexpected exception a crash (2), and Ctrl-C
    without a handler of its own exits 130.

    Commands that stop cleanly raise SystemExit(130) themselves; --help's exit passes as is.
    """
    try:
        yield
    except click.UsageError as error:
        error.exit_code = EXIT_USER_ERROR
        raise
    except (click.ClickException, click.exceptions.Exit, click.Abort):
        raise
    except UserError as error:  # a command without its own user_errors_as_click
        raise click.ClickException(str(error)) from error
    except BrokenPipeError:  # `sg2 ... | head` closed the pipe: the reader's choice, no crash
        raise
    except KeyboardInterrupt:
        click.echo("stopped (Ctrl-C)", err=True)
        raise SystemExit(EXIT_STOPPED) from None
    except Exception as error:
        missing = missing_package(error, f"`{_command_path(error)}`")
        if missing is not None:  # an extra (or a dependency) not installed: the user's to fix
            raise click.ClickException(str(missing)) from error
        click.echo(traceback.format_exc().rstrip(), err=True)
        raise InternalError(
            f"internal error (a bug; please report it with the traceback above): "
            f"{type(error).__name__}: {error}"
        ) from error


def _command_path(error: BaseException) -> str:
    """The command an error came from (`sg2 pipeline status`): the innermost click context on
    its traceback, since the contexts are closed by the time the error reaches the group."""
    path = "sg2"
    for frame, _ in traceback.walk_tb(error.__traceback__):
        ctx = frame.f_locals.get("ctx")
        if isinstance(ctx, click.Context):
            path = ctx.command_path
    return path
