"""Stop signals -> a stop event, with one rule for every job and command.

The first SIGTERM/SIGINT asks for a clean stop: the handler only sets an event, which the work
checks at safe points (between training steps, between files, between requests). A second
signal is reported and otherwise ignored: what is being written (a checkpoint, an output) must
complete, and the platform's SIGKILL after its grace period ends the process at once anyway.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterable, Iterator

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def stop_on_signals(signals: Iterable[int] = STOP_SIGNALS, *,
                    doing: str = "finishing the current step") -> Iterator[threading.Event]:
    """Installs the handlers for the block and yields the event they set; the previous handlers
    come back afterwards. Outside the main thread signals stay the caller's: the event is then
    only set by whoever holds it. `doing` says in the log what happens before the exit."""
    stop = threading.Event()

    def handle(signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            log.warning("%s again: already stopping (%s); SIGKILL ends the process at once", name,
                        doing)
            return
        log.warning("%s: stopping cleanly (%s)", name, doing)
        stop.set()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, handle) for sig in signals}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def ignore_stop_signals(signals: Iterable[int] = STOP_SIGNALS) -> None:
    """For helper processes (data workers, training workers' SIGINT): the parent decides when to
    stop, so a signal sent to the whole process group must not kill them mid-work."""
    for sig in signals:
        signal.signal(sig, signal.SIG_IGN)
