"""`sg2 serve`: the endpoint's HTTP server, locally (the container runs the same server)."""
import click

from sg2_container.cli.errors import user_errors_as_click
from sg2_container.options.schema import click_options
from sg2_container.serving.options import ServeOptions


def register(cli: click.Group) -> None:
    cli.add_command(serve)


@click.command()
@click_options(ServeOptions)
def serve(**kwargs) -> None:
    """Serve a generator over HTTP: GET /ping, POST /invocations (SageMaker's routes).

    The body is JSON, e.g. {"seed": 42} or {"seeds": [1, 2], "truncation_psi": 0.7}; the
    Accept header picks image/png, application/json or application/x-npy. Concurrent requests
    are batched into one forward pass. Ctrl-C or SIGTERM stops accepting, finishes what is in
    flight, and exits 0; 130 when the drain timeout cut requests off. See docs/serving.md.
    """
    with user_errors_as_click():
        from sg2_container.io.signals import stop_on_signals
        from sg2_container.sagemaker.jobs import EXIT_STOPPED
        from sg2_container.serving.server import end_process, run_server

        options = ServeOptions(**kwargs)
        with stop_on_signals(doing="finishing in-flight requests") as stop:
            ended = run_server(options, stop)
    code = EXIT_STOPPED if ended.cut_off else 0
    end_process(code, ended)
    if code:
        raise SystemExit(code)
