"""The one atomic write of the project, and the one cleanup of what an interrupted write left.

A writer fills a hidden temporary file in the destination's folder, fsyncs it, renames it over
the destination (os.replace) and fsyncs the folder, so a reader sees the old file or the whole
new one, and a power cut after the call cannot lose it. A process killed mid-write leaves a
temporary file named `.<name>.<hex>.tmp` (or `.<name>.<hex>.tmp.<suffix>`);
`remove_stale_temp_files` deletes those.
"""
from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

log = logging.getLogger(__name__)

# `.<destination name>.<8 or more hex digits>.tmp`, or the same followed by the destination's
# own suffix: the only names temp_path makes.
TEMP_PATTERN = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{8,}\.tmp$"
                          r"|^\.(?P<named>.+(?P<suffix>\.[A-Za-z0-9]{1,8}))\.[0-9a-f]{8,}\.tmp(?P=suffix)$")


def temp_path(path: str | os.PathLike, keep_suffix: bool = False) -> Path:
    """A fresh hidden name next to `path` (same folder, so os.replace stays a rename).

    keep_suffix: the name ends with path's suffix too, for writers that pick the format by it
    (ffmpeg).
    """
    path = Path(path)
    suffix = path.suffix if keep_suffix else ""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{suffix}")


def fsync_folder(folder: str | os.PathLike) -> None:
    """Makes a rename inside `folder` durable; not every platform lets one open a folder."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike) -> None:
    """Flushes a file someone else wrote (a zip closed by zipfile) to the disk."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def commit(tmp: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Renames a finished, fsynced temporary file or folder over `path`; fsyncs the folder."""
    path = Path(path)
    os.replace(tmp, path)
    fsync_folder(path.parent if str(path.parent) else ".")
    return path


def write_atomically(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Writes through `write(f)` into a temporary file next to `path`, fsyncs it and renames
    it over `path`; on any error the temporary file is removed and `path` is untouched."""
    path = Path(path)
    tmp = temp_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        return commit(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomically(path: str | os.PathLike, data: bytes) -> Path:
    return write_atomically(path, lambda f: f.write(data))


def write_text_atomically(path: str | os.PathLike, text: str) -> Path:
    """UTF-8 text, written atomically."""
    return write_bytes_atomically(path, text.encode("utf-8"))


def destination_of(temp_name: str) -> str | None:
    """The name a temporary file of temp_path's was going to get; None for other names."""
    match = TEMP_PATTERN.match(temp_name)
    return None if match is None else match.group("name") or match.group("named")


def remove_stale_temp_files(folder: str | os.PathLike,
                            destinations: Iterable[str] | None = None) -> list[Path]:
    """Deletes the temporary files (and folders) interrupted writers left in `folder`, or only
    those on their way to one of `destinations` (names in `folder`).

    A writer killed mid-save (SIGKILL after a stop grace period) cannot clean up; on SageMaker
    such a file would be uploaded to S3 and downloaded again at every restart. Call it where no
    other process is writing into `folder` (or to those destinations).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    wanted = None if destinations is None else set(destinations)

    def is_stale(name: str) -> bool:
        destination = destination_of(name)
        return destination is not None and (wanted is None or destination in wanted)

    stale = sorted(p for p in folder.iterdir() if is_stale(p.name))
    for path in stale:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        log.warning("removed %s, left by a write that was interrupted", path.name)
    return stale
