"""Runs the app under uvicorn until a stop event, then drains.

Signals follow the project's one rule (io/signals.py): the caller's stop_on_signals sets an
event; uvicorn's own handlers are not installed (they would re-raise the signal after the
drain, so the process would die of SIGTERM instead of exiting 0). On the event, uvicorn stops
accepting connections and lets in-flight requests finish; the app answers those still running
after drain_timeout_s with 503 (uvicorn's own cut-off, a plain-text 500 per request with a
traceback each, is set DRAIN_BACKSTOP_S later and does not come first), then the batcher stops.
"""
from __future__ import annotations

import contextlib
import logging
import threading

from sg2_container.errors import UserError
from sg2_container.serving import require_packages
from sg2_container.serving.options import ServeOptions

log = logging.getLogger(__name__)

DRAIN_BACKSTOP_S = 1.0


def run_server(options: ServeOptions, stop: threading.Event) -> int:
    """Serves until `stop` is set or the model cannot be loaded (raises what loading raised).
    Returns how many in-flight requests the drain cut off (0: a clean stop)."""
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
    if endpoint.cut_off:
        log.warning("stopped: drain_timeout_s=%g s ran out with %d request(s) in flight; each "
                    "was answered 503", options.drain_timeout_s, endpoint.cut_off)
    elif endpoint.batcher is None:  # an abandoned load never set it
        log.info("stopped before the model was ready")
    else:
        log.info("stopped cleanly")
    return endpoint.cut_off
