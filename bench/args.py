"""Argument checks shared by the bench scripts: a bad value is one usage line naming it and what
is allowed (argparse's exit 2), before any work, instead of a traceback, a hang or a division by
zero minutes later; sg2's own UserErrors (an unknown --cfg, ...) end as one line too (exit 1).
"""
from __future__ import annotations

import argparse
import contextlib
import sys


def at_least(parser: argparse.ArgumentParser, args: argparse.Namespace, **minimums) -> None:
    """Each named option (dest name) is at least its minimum; a list option in each item, an
    unset one (None) passes."""
    for dest, low in minimums.items():
        value = getattr(args, dest)
        for item in value if isinstance(value, list) else [value]:
            if item is not None and item < low:
                parser.error(f"--{dest.replace('_', '-')} must be at least {low}, got {item}")


def power_of_two(parser: argparse.ArgumentParser, flag: str, value: int, low: int = 4,
                 high: int = 4096) -> None:
    """`value` is a power of two from `low` to `high` (an image resolution)."""
    if not (low <= value <= high and value & (value - 1) == 0):
        parser.error(f"{flag} must be a power of two from {low} to {high}, got {value}")


def device(parser: argparse.ArgumentParser, name: str, flag: str = "--device"):
    """The torch.device named, refused at once when it is not one or CUDA is not usable."""
    import torch

    try:
        dev = torch.device(name)
    except RuntimeError:
        parser.error(f"{flag} {name!r} is not a device: use cpu, cuda or cuda:N")
    if dev.type not in ("cpu", "cuda"):
        parser.error(f"{flag} {name!r}: the benchmarks run on cpu or cuda[:N]")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            parser.error(f"{flag} {name!r}: no usable CUDA device here "
                         "(torch.cuda.is_available() is False); use cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            parser.error(f"{flag} {name!r}: this machine has {torch.cuda.device_count()} "
                         "CUDA device(s)")
    return dev


@contextlib.contextmanager
def user_errors():
    """sg2's UserError (bad input, e.g. an unknown --cfg) as one 'error: ...' line, exit 1."""
    from sg2_container.errors import UserError

    try:
        yield
    except UserError as error:
        sys.exit(f"error: {error}")
