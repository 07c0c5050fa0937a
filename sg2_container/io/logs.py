"""One logging set-up for every process we start: the CLI, the container's entrypoint, the
toolkit's module mode and each training worker."""
from __future__ import annotations

import logging
import os
from typing import TextIO

# Libraries whose INFO lines are for their own developers (torch prints FakeTensor cache
# statistics at exit once anything was compiled): shown from -v (debug) only.
QUIET_LIBRARIES = ("torch",)
# The level a process we start logs at (`sg2 -q local train` -> the job's entrypoint and its
# training workers); unset means INFO, the container's default.
LEVEL_ENV = "SG2_LOG_LEVEL"
LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING,
          "ERROR": logging.ERROR}

_configured: int | None = None  # the level configure_logging set in this process


def configure_logging(level: int | None = None, *, stream: TextIO | None = None,
                      prefix: str = "") -> None:
    """Timestamped lines `<time> <prefix><LEVEL> <logger>: <message>` at `level`; None means
    the level the starting process passed on ($SG2_LOG_LEVEL), else INFO."""
    global _configured
    unknown = None
    if level is None:
        text = os.environ.get(LEVEL_ENV, "").strip().upper()
        level = LEVELS.get(text or "INFO")
        if level is None:
            unknown, level = text, logging.INFO
    _configured = level
    logging.basicConfig(level=level, stream=stream,
                        format=f"%(asctime)s {prefix}%(levelname)s %(name)s: %(message)s")
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.DEBUG if level <= logging.DEBUG
                                         else max(level, logging.WARNING))
    if unknown is not None:
        logging.getLogger(__name__).warning("$%s=%r is not one of %s; logging at INFO",
                                            LEVEL_ENV, unknown, ", ".join(LEVELS))


def configured_level() -> int | None:
    """The level configure_logging set in this process (None: it was not called)."""
    return _configured


def passed_on() -> dict[str, str]:
    """The environment a process we start needs to log at this process's level (-q / -v of
    `sg2 local ...`); {} when this process set up no logging (the child's default then)."""
    if _configured is None:
        return {}
    return {LEVEL_ENV: logging.getLevelName(_configured)}
