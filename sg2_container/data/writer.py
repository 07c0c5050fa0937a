"""Writes the training layout to a zip or a folder under a temporary name, then swaps it in.

A run that dies leaves the previous output untouched (at worst a stray temporary file whose
name starts with a dot), so re-running is always safe.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import zipfile
from pathlib import Path

from sg2_container.data.labels import LABELS_FILE, labels_json
from sg2_container.errors import UserError
from sg2_container.io.atomic import commit, fsync_file, temp_path

log = logging.getLogger(__name__)

# Fixed metadata so the zip's bytes depend only on its contents.
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
ZIP_FILE_MODE = 0o100644  # regular file, rw-r--r--
REPORT_FILE = "prepare_report.json"
_OUTPUT_DIR = re.compile(r"\d{5}")


def entry_name(index: int) -> str:
    """Index 1234 -> '00001/img00001234.png' (the training layout: 1000 images per folder)."""
    digits = f"{index:08d}"
    return f"{digits[:5]}/img{digits}.png"




class ZipDatasetWriter:
    """A stored (uncompressed) zip with fixed entry metadata, committed by os.replace."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self._tmp = temp_path(dest)
        self._zip = zipfile.ZipFile(self._tmp, "w", compression=zipfile.ZIP_STORED)

    def add(self, name: str, data: bytes) -> None:
        info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
        info.compress_type = zipfile.ZIP_STORED
        info.create_system = 3  # Unix, whatever the host
        info.external_attr = ZIP_FILE_MODE << 16
        self._zip.writestr(info, data)

    def commit(self, labels: list[list[object]] | None) -> None:
        self.add(LABELS_FILE, labels_json(labels))
        self._zip.close()
        fsync_file(self._tmp)
        commit(self._tmp, self.dest)

    def abort(self) -> None:
        self._zip.close()
        self._tmp.unlink(missing_ok=True)


def check_folder_dest(dest: Path) -> None:
    """A folder destination must be empty, absent, or an earlier output of `sg2 prepare`."""
    if not dest.exists():
        return
    if not dest.is_dir():
        raise UserError(f"--dest: {str(dest)!r} exists and is not a folder (use a .zip name?)")
    if any(dest.iterdir()) and not _is_previous_output(dest):
        raise UserError(
            f"--dest: folder {str(dest)!r} is not empty and is not an earlier sg2 prepare output; "
            "give an empty or new folder"
        )


def _is_previous_output(folder: Path) -> bool:
    names = {p.name: p for p in folder.iterdir()}
    if LABELS_FILE not in names:
        return False
    return all(
        name in (LABELS_FILE, REPORT_FILE) or (_OUTPUT_DIR.fullmatch(name) and p.is_dir())
        for name, p in names.items()
    )


class FolderDatasetWriter:
    """The same layout as loose files, built in a sibling folder and renamed into place."""

    def __init__(self, dest: Path) -> None:
        check_folder_dest(dest)
        self.dest = dest
        self._tmp = temp_path(dest)
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._tmp.mkdir(parents=True)
        self._made: set[str] = set()

    def add(self, name: str, data: bytes) -> None:
        folder = name.rpartition("/")[0]
        if folder and folder not in self._made:
            (self._tmp / folder).mkdir(parents=True, exist_ok=True)
            self._made.add(folder)
        (self._tmp / name).write_bytes(data)

    def commit(self, labels: list[list[object]] | None) -> None:
        (self._tmp / LABELS_FILE).write_bytes(labels_json(labels))
        old = None
        if self.dest.exists():
            check_folder_dest(self.dest)  # still ours: it may have changed while we ran
            old = temp_path(self.dest)
            os.replace(self.dest, old)
        commit(self._tmp, self.dest)
        if old is not None:
            shutil.rmtree(old)

    def abort(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)
