"""Signals as PID 1: SIGTERM (StopTrainingJob, spot, docker stop) and SIGINT set a stop event.

The handler only sets the event; the loop checks it after every optimisation step, saves a
checkpoint and exits. The launcher mirrors the event into worker processes. A second signal
while stopping is reported and otherwise ignored: the checkpoint being written must complete.
"""
from __future__ import annotations

import logging
import signal
import threading

log = logging.getLogger(__name__)


def stop_on_signals(signals=(signal.SIGTERM, signal.SIGINT)) -> threading.Event:
    stop = threading.Event()

    def handle(signum, frame):
        if stop.is_set():
            log.warning("signal %d again: still saving the checkpoint", signum)
            return
        log.warning("signal %d: finishing the current step, saving a checkpoint, then exiting", signum)
        stop.set()

    for sig in signals:
        try:
            signal.signal(sig, handle)
        except ValueError:  # not the main thread: the caller owns signals
            break
    return stop
