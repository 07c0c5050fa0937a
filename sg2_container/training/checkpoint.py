"""Full training state on disk: written atomically, newest N kept, newest *valid* one found.

A checkpoint is a dict of named parts with constant keys, loadable with
torch.load(weights_only=True): format, format_version, G, D, G_ema, G_kwargs, D_kwargs, opt_G,
opt_D, augment, loop, rng, options. Files are named by progress (cur_nimg), so lexical order is
chronological.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import torch

from sg2_container.errors import UserError
from sg2_container.io.atomic import remove_stale_temp_files, write_atomically  # noqa: F401 (part of this API)

log = logging.getLogger(__name__)

FORMAT_MARKER = "sg2-checkpoint"
FORMAT_VERSION = 1
NAME_PATTERN = re.compile(r"^checkpoint-(\d{12})\.pt$")
REQUIRED_PARTS = ("G", "D", "G_ema", "G_kwargs", "D_kwargs", "opt_G", "opt_D", "augment", "loop",
                  "rng", "options")


def checkpoint_name(cur_nimg: int) -> str:
    return f"checkpoint-{cur_nimg:012d}.pt"


def list_checkpoints(directory: Path) -> list[Path]:
    """Committed checkpoints (temp files of unfinished writes never match), oldest first."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if NAME_PATTERN.match(p.name))


def save_checkpoint(directory: Path, state: dict, keep: int) -> Path:
    """Writes the new checkpoint first, then prunes: the last good one is never deleted first."""
    state = {"format": FORMAT_MARKER, "format_version": FORMAT_VERSION, **state}
    missing = [k for k in REQUIRED_PARTS if k not in state]
    if missing:
        raise ValueError(f"checkpoint state lacks {missing}")
    path = write_atomically(directory / checkpoint_name(state["loop"]["cur_nimg"]),
                            lambda f: torch.save(state, f))
    for old in list_checkpoints(directory)[:-keep]:
        if old != path:
            old.unlink(missing_ok=True)
            log.info("removed old checkpoint %s (keeping the newest %d)", old.name, keep)
    return path


def load_checkpoint(path: Path) -> dict:
    """Loads and checks one checkpoint; any problem is a UserError naming the file."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for damaged files
        raise UserError(f"{path.name}: unreadable checkpoint ({type(error).__name__}: {error})") from error
    if not isinstance(state, dict) or state.get("format") != FORMAT_MARKER:
        raise UserError(f"{path.name}: not an sg2 training checkpoint")
    version = state.get("format_version")
    if version != FORMAT_VERSION:
        raise UserError(f"{path.name}: checkpoint format_version {version!r}; this build reads "
                        f"{FORMAT_VERSION}")
    missing = [k for k in REQUIRED_PARTS if k not in state]
    if missing:
        raise UserError(f"{path.name}: checkpoint lacks {', '.join(missing)}")
    return state


def find_latest(directory: Path) -> tuple[Path, dict] | None:
    """The newest checkpoint that loads; damaged newer ones are skipped with a warning."""
    for path in reversed(list_checkpoints(directory)):
        try:
            return path, load_checkpoint(path)
        except UserError as error:
            log.warning("skipping checkpoint %s: %s", path.name, error)
    return None
