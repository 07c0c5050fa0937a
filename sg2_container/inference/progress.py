"""Progress of long rendering work, logged about every 30 s: a 50,000-image run on a CPU should
say how far it is, not stay silent until its last line."""
from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)

EVERY_S = 30.0  # seconds between progress lines


class Progress:
    """update(done) logs 'what: done/total nouns' when `every` seconds passed since the last."""

    def __init__(self, total: int, noun: str, what: str, every: float = EVERY_S):
        self.total, self.noun, self.what, self.every = total, noun, what, every
        self.start = self.last = time.monotonic()

    def update(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last >= self.every and done < self.total:
            self.last = now
            rate = done / max(now - self.start, 1e-9)
            left = (self.total - done) / rate if rate > 0 else float("inf")
            log.info("%s: %d/%d %ss (%.2f/s, about %.0f s left)", self.what, done, self.total,
                     self.noun, rate, left)
