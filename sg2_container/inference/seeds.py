"""Seed lists as users type them: '0-7', '1,5,9' or a mix such as '0-3,10'."""
from __future__ import annotations

import re

from sg2_container.errors import UserError, shortened
from sg2_container.options.sizes import MAX_SEED

# Images one request may ask for: '0-99999999' would otherwise build a 100 M list and run for
# days. Raised per call (`max_seeds`, `sg2 generate --max-seeds`).
DEFAULT_MAX_SEEDS = 100_000
# int() also reads '٣' (Arabic-Indic 3), '1_000' and '+3'; a seed is written in ASCII digits.
# (A minus sign is read, so '-3' is reported as out of range rather than as a bad seed.)
_NUMBER = re.compile(r"-?[0-9]+")


class TooManySeeds(UserError):
    """More seeds than the caller's cap; callers with their own name for the cap catch it."""


def quoted(text: str) -> str:
    """repr(text) as messages echo it: a message about a 5 MB seed text holds it twice."""
    return shortened(repr(str(text)))


def parse_seeds(text: str, max_seeds: int = DEFAULT_MAX_SEEDS) -> list[int]:
    """Comma-separated seeds and inclusive ranges 'a-b'; order kept, duplicates kept; more
    than `max_seeds` in all is refused before any list is built."""
    if not isinstance(max_seeds, int) or isinstance(max_seeds, bool) or max_seeds < 1:
        raise UserError(f"max_seeds (--max-seeds) must be an integer >= 1, got {max_seeds!r}")
    seeds: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part[1:]:
                first, last = part.split("-", 1)
                lo, hi = _number(first), _number(last)
                if hi < lo:
                    raise UserError(f"seed range {quoted(part)} is empty: it counts down")
                _check_count(len(seeds) + hi - lo + 1, max_seeds, text)
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(_number(part))
                _check_count(len(seeds), max_seeds, text)
        except ValueError:
            raise UserError(f"bad seed {quoted(part)} in {quoted(text)}: use numbers (digits "
                            "0-9) and ranges such as '0-7' or '1,5,9'") from None
    if not seeds:
        raise UserError(f"no seeds in {quoted(text)}: use numbers and ranges such as '0-7' or "
                        "'1,5,9'")
    bad = [s for s in seeds if not 0 <= s <= MAX_SEED]
    if bad:
        digits = str(bad[0])
        shown = digits if len(digits) <= 30 else f"{digits[:12]}... ({len(digits)} digits)"
        raise UserError(f"seed {shown} is out of range: seeds go from 0 to {MAX_SEED}")
    return seeds


def format_seeds(values) -> str:
    """The text form parse_seeds reads, with runs as ranges: [0, 1, 2, 3, 7] -> '0-3,7' (an
    error about 100 layer indices should not list them all)."""
    parts: list[str] = []
    values = [int(v) for v in values]
    start = 0
    for i in range(1, len(values) + 1):
        if i == len(values) or values[i] != values[i - 1] + 1:
            first, last = values[start], values[i - 1]
            parts.append(str(first) if first == last else f"{first}-{last}")
            start = i
    return ",".join(parts)


def _number(text: str) -> int:
    text = text.strip()
    if not _NUMBER.fullmatch(text):
        raise ValueError(text)
    return int(text)


def _check_count(count: int, max_seeds: int, text: str) -> None:
    if count > max_seeds:
        raise TooManySeeds(f"seeds {quoted(text)} ask for {count} images or more; at most "
                           f"{max_seeds} are allowed here")
