"""How many CPU cores this process may run on."""
from __future__ import annotations

import os


def usable_cores() -> int:
    """The affinity mask's size (a container's or taskset's share), not the machine's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
