"""One logging set-up for every process we start: the CLI, the container's entrypoint, the
toolkit's module mode and each training worker."""
from __future__ import annotations

import logging
from typing import TextIO

# Libraries whose INFO lines are for their own developers (torch prints FakeTensor cache
# statistics at exit once anything was compiled): shown from -v (debug) only.
QUIET_LIBRARIES = ("torch",)


def configure_logging(level: int = logging.INFO, *, stream: TextIO | None = None,
                      prefix: str = "") -> None:
    """Timestamped lines `<time> <prefix><LEVEL> <logger>: <message>` at `level`."""
    logging.basicConfig(level=level, stream=stream,
                        format=f"%(asctime)s {prefix}%(levelname)s %(name)s: %(message)s")
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.DEBUG if level <= logging.DEBUG
                                         else max(level, logging.WARNING))
