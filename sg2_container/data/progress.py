"""Progress with an ETA: a redrawn bar on an interactive stderr, periodic log lines otherwise.

Log lines (not a bar) in jobs, because CloudWatch keeps every carriage-return redraw.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

log = logging.getLogger(__name__)


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return (
        f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
        if hours
        else f"{rest // 60:02d}:{rest % 60:02d}"
    )


class Progress:
    """Counts processed files out of `total`; redraws at most every `redraw_s` seconds."""

    def __init__(
        self,
        total: int,
        *,
        label: str = "prepare",
        stream: TextIO | None = None,
        interactive: bool | None = None,
        redraw_s: float = 0.2,
        log_every_s: float = 30.0,
    ) -> None:
        self.total = total
        self.done = 0
        self.label = label
        self._stream = stream if stream is not None else sys.stderr
        if interactive is None:
            isatty = getattr(self._stream, "isatty", None)
            interactive = bool(isatty and isatty())
        self.interactive = interactive
        self._every = redraw_s if interactive else log_every_s
        self._start = time.monotonic()
        self._last = self._start
        self._drawn = False

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last >= self._every:
            self._last = now
            self._emit(now)

    def close(self) -> None:
        if self.interactive and self._drawn:
            self._emit(time.monotonic())
            self._stream.write("\n")
            self._stream.flush()

    def line(self, now: float) -> str:
        elapsed = max(now - self._start, 1e-9)
        rate = self.done / elapsed
        pct = 100.0 * self.done / self.total if self.total else 100.0
        eta = _clock((self.total - self.done) / rate) if rate > 0 else "--:--"
        return (
            f"{self.label}: {self.done}/{self.total} files ({pct:.0f}%), {rate:.1f} files/s, "
            f"elapsed {_clock(elapsed)}, ETA {eta}"
        )

    def _emit(self, now: float) -> None:
        if self.interactive:
            elapsed = now - self._start
            frac = self.done / self.total if self.total else 1.0
            bar = "#" * int(30 * frac)
            rate = self.done / elapsed if elapsed > 0 else 0.0
            eta = _clock((self.total - self.done) / rate) if rate > 0 else "--:--"
            self._stream.write(
                f"\r{self.label} [{bar:<30}] {self.done}/{self.total} {rate:.0f}/s ETA {eta} "
            )
            self._stream.flush()
            self._drawn = True
        else:
            log.info(self.line(now))
