"""Seed lists as users type them: '0-7', '1,5,9' or a mix such as '0-3,10'."""
from __future__ import annotations

from sg2_container.errors import UserError

MAX_SEED = 2**32 - 1  # numpy's RandomState accepts seeds in [0, 2**32)


def parse_seeds(text: str) -> list[int]:
    """Comma-separated seeds and inclusive ranges 'a-b'; order kept, duplicates kept."""
    seeds: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part[1:]:
                first, last = part.split("-", 1)
                lo, hi = int(first), int(last)
                if hi < lo:
                    raise UserError(f"seed range {part!r} is empty: it counts down")
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise UserError(f"bad seed {part!r} in {text!r}: use numbers and ranges such as "
                            f"'0-7' or '1,5,9'") from None
    if not seeds:
        raise UserError(f"no seeds in {text!r}: use numbers and ranges such as '0-7' or '1,5,9'")
    bad = [s for s in seeds if not 0 <= s <= MAX_SEED]
    if bad:
        raise UserError(f"seed {bad[0]} is out of range: seeds go from 0 to {MAX_SEED}")
    return seeds
