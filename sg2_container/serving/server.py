"""Runs the app under uvicorn until a stop event, then drains.

Signals follow the project's one rule (io/signals.py): the caller's stop_on_signals sets an
event; uvicorn's own handlers are not installed (they would re-raise the signal after the
drain, so the process would die of SIGTERM instead of exiting 0). On the event, uvicorn stops
accepting connections and lets in-flight requests finish; the app answers those still running
after drain_timeout_s with 503 (uvicorn's own cut-off, a plain-text 500 per request with a
traceback each, is set DRAIN_BACKSTOP_S later and does not come first), then the batcher stops.
A forward (or model load) still running then is not waited for: the caller ends the process
with end_process, so the exit comes within drain_timeout_s of the stop.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from typing import NamedTuple

from sg2_container.errors import UserError
from sg2_container.serving import require_packages
from sg2_container.serving.options import ServeOptions

log = logging.getLogger(__name__)

DRAIN_BACKSTOP_S = 1.0


class Ended(NamedTuple):
    """How a server ended: `cut_off` in-flight requests answered 503 by the drain (0: a clean
    stop), and the work still running in threads (`end_process` must end the process)."""

    cut_off: int
    left_running: tuple[str, ...] = ()


def end_process(code: int, ended: Ended) -> None:
    """Exits with `code` now when `ended` left work running in threads; else returns. The
    interpreter's exit would wait for such work (past SageMaker's SIGKILL) or, for a daemon
    thread inside torch when it takes the interpreter back mid-exit, abort (exit 134)."""
    if not ended.left_running:
        return
    log.info("exiting without waiting for %s", " and ".join(ended.left_running))
    logging.shutdown()  # flushes the log handlers
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_server(options: ServeOptions, stop: threading.Event) -> Ended:
    """Serves until `stop` is set or the model cannot be loaded (raises what loading raised).
    The caller passes what it returns to end_process with its exit code."""
    require_packages()
    import uvicorn

    from sg2_container.serving.app import create_app

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            yield  # the caller's stop_on_signals owns the signals

        async def on_tick(self, counter: int) -> bool:
            if stop.is_set() and not self.should_exit:
                log.info("draining: no new connections; waiting up to %g s for %s",
                         options.drain_timeout_s, "in-flight requests")
                endpoint.begin_drain()
                self.should_exit = True
            return await super().on_tick(counter)

    failures: list[BaseException] = []

    def on_fatal(error: BaseException) -> None:
        failures.append(error)
        server.should_exit = True

    app = create_app(options, stop=stop, on_fatal=on_fatal)
    endpoint = app.state.endpoint
    config = uvicorn.Config(app, host=options.host, port=options.port, log_config=None,
                            access_log=options.access_log, lifespan="on",
                            timeout_graceful_shutdown=options.drain_timeout_s + DRAIN_BACKSTOP_S,
                            timeout_keep_alive=75)  # > SageMaker's 60 s keep-alive
    server = Server(config)
    log.info("serving %s on http://%s:%d (POST /invocations, GET /ping)", options.network,
             options.host, options.port)
    try:
        server.run()
    except SystemExit:  # uvicorn exits this way when it cannot bind
        if not failures:
            raise UserError(f"could not listen on {options.host}:{options.port} (is the port in "
                            "use, or the address not this machine's?)") from None
    if failures:
        raise failures[0]
    ended = Ended(endpoint.cut_off, tuple(endpoint.left_running()))
    if endpoint.cut_off:
        log.warning("stopped: drain_timeout_s=%g s ran out with %d request(s) in flight; each "
                    "was answered 503", options.drain_timeout_s, endpoint.cut_off)
    elif endpoint.batcher is None:  # an abandoned load never set it
        log.info("stopped before the model was ready")
    else:
        log.info("stopped cleanly")
    return ended
