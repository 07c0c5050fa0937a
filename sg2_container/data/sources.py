"""Where `sg2 prepare` reads from: a folder tree, a zip or a tar, listed once in sorted order.

The parent lists names only (never image data); each worker reads the bytes of the items it is
given, so memory does not grow with the size of the set.
"""

from __future__ import annotations

import bz2
import gzip
import logging
import lzma
import os
import shutil
import stat
import tarfile
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from sg2_container.data.labels import LABELS_FILE, parse_labels
from sg2_container.errors import UserError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".bmp", ".gif"})
MACOS_METADATA_DIR = "__MACOSX/"
# Compressed tars are unpacked to one plain tar first: reading members in sorted order from a
# compressed stream would decompress it again for every backward seek.
_COMPRESSED_MAGIC = ((b"\x1f\x8b", gzip.open), (b"BZh", bz2.open), (b"\xfd7zXZ\x00", lzma.open))

Label = int | tuple[float, ...] | str | None


@dataclass(frozen=True, slots=True)
class SourceItem:
    """One input file: its relative name and how a worker finds its bytes.

    kind "file": the file `name` under the folder `path`; "zip": `member` (or `name` when
    empty) inside the zip at `path`; "tar": `size` bytes at `offset` of the plain tar at `path`.
    `path` is one shared string per source, so a million items cost little memory. `skip` is a
    reason decided while listing.
    """

    name: str
    kind: str
    path: str
    member: str = ""
    offset: int = 0
    size: int = 0
    label: Label = None
    skip: str | None = None


@dataclass(slots=True)
class Listing:
    """The sorted inputs of one run, and where their labels came from."""

    kind: str  # "folder" | "zip" | "tar"
    items: list[SourceItem]
    label_source: str  # "json" | "folders" | "none"
    stripped_prefix: str = ""
    labels_without_image: int = 0


def list_source(source: str, labels: str, workdir: str) -> Listing:
    """Lists `source` in sorted name order with labels attached; `workdir` holds scratch files."""
    path = Path(source)
    if not path.exists():
        raise UserError(f"--source: {source!r} does not exist; give a folder, a .zip or a .tar")
    if path.is_dir():
        kind, entries, labels_bytes = "folder", _list_folder(path), None
        labels_path = path / LABELS_FILE
        if labels_path.is_file():
            labels_bytes = labels_path.read_bytes()
            entries = [e for e in entries if e.name != LABELS_FILE]
        prefix = ""
    else:
        if zipfile.is_zipfile(path):
            kind, entries = "zip", _list_zip(path)
        elif tarfile.is_tarfile(path):
            kind, entries = "tar", _list_tar(_plain_tar(path, workdir))
        else:
            raise UserError(f"--source: {source!r} is neither a folder, a zip nor a tar archive")
        prefix = _single_top_folder([e.name for e in entries])
        if prefix:
            log.info(
                "all files of %s are inside %r: names are taken relative to it", source, prefix
            )
            entries = [
                replace(e, name=e.name[len(prefix) :]) if e.name.startswith(prefix) else e
                for e in entries
            ]
        labels_bytes = None
        for entry in entries:
            if entry.name == LABELS_FILE:
                labels_bytes = SourceReader().read_once(entry)
        entries = [e for e in entries if e.name != LABELS_FILE]
    entries = _mark_duplicates(sorted(entries, key=lambda e: e.name))
    listing = Listing(kind=kind, items=entries, label_source="none", stripped_prefix=prefix)
    _attach_labels(listing, labels, labels_bytes, origin=f"{source} ({LABELS_FILE})")
    return listing


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _list_folder(root: Path) -> list[SourceItem]:
    """Every entry that is not a folder becomes an item; links to nothing, FIFOs, devices and
    links to folders (not walked: they can loop) are items skipped with their reason, so the
    report counts them."""
    items = []
    base = str(root)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        skipped = [(d, "folder_link") for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        for filename, reason in [*((f, None) for f in filenames), *skipped]:
            full = os.path.join(dirpath, filename)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            size = 0
            if reason is None:
                try:
                    status = os.stat(full)
                except OSError:  # a link to nothing (ENOENT) or a loop of links (ELOOP)
                    reason = "broken_link" if os.path.islink(full) else "unreadable"
                else:
                    size = status.st_size
                    reason = None if stat.S_ISREG(status.st_mode) else "not_a_file"
            items.append(SourceItem(name=rel, kind="file", path=base, size=size, skip=reason))
    return items


def _list_zip(path: Path) -> list[SourceItem]:
    base = str(path)
    with zipfile.ZipFile(path) as zf:
        return [
            SourceItem(
                name=info.filename.replace("\\", "/"),
                kind="zip",
                path=base,
                member=info.filename,
                size=info.file_size,
            )
            for info in zf.infolist()
            if not info.is_dir()
        ]


def _plain_tar(path: Path, workdir: str) -> Path:
    """Returns an uncompressed tar to read at random offsets (unpacking a compressed one)."""
    with open(path, "rb") as f:
        head = f.read(6)
    for magic, opener in _COMPRESSED_MAGIC:
        if head.startswith(magic):
            plain = Path(workdir) / "source.tar"
            log.info("decompressing %s to a temporary plain tar for random access", path)
            with opener(path, "rb") as src, open(plain, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            return plain
    return path


def _list_tar(path: Path) -> list[SourceItem]:
    items = []
    base = str(path)
    with tarfile.open(path, "r:") as tf:
        for member in tf:
            if not member.isfile():
                continue  # directories, links, devices: nothing to decode
            items.append(
                SourceItem(
                    name=member.name.removeprefix("./"),
                    kind="tar",
                    path=base,
                    offset=member.offset_data,
                    size=member.size,
                    skip="unreadable" if member.issparse() else None,
                )
            )
    return items


def _single_top_folder(names: list[str]) -> str:
    """'top/' when every file of an archive sits in one folder (a zipped folder), else ''."""
    tops = {n.split("/", 1)[0] for n in names if "/" in n and not n.startswith(MACOS_METADATA_DIR)}
    flat = [n for n in names if "/" not in n]
    if len(tops) == 1 and not flat:
        return tops.pop() + "/"
    return ""


def _mark_duplicates(items: list[SourceItem]) -> list[SourceItem]:
    """An archive may hold one name twice: keep the last (as unpacking would), skip the others.

    `items` is sorted stably, so equal names stay in archive order.
    """
    out = []
    for i, item in enumerate(items):
        if i + 1 < len(items) and items[i + 1].name == item.name:
            item = replace(item, skip="duplicate_name")
        out.append(item)
    return out


def _attach_labels(listing: Listing, mode: str, labels_bytes: bytes | None, origin: str) -> None:
    if mode == "none" or (mode == "auto" and labels_bytes is None):
        return
    if mode == "folders":
        listing.label_source = "folders"
        listing.items = [
            replace(item, label=item.name.split("/", 1)[0])
            if "/" in item.name
            else replace(item, skip=item.skip or "missing_label")
            for item in listing.items
        ]
        return
    if labels_bytes is None:
        raise UserError(f"--labels json: no {LABELS_FILE} at the top of --source")
    labels = parse_labels(labels_bytes, origin)
    if labels is None:
        log.info("%s says labels: null; writing an unlabelled dataset", origin)
        return
    listing.label_source = "json"
    names = {item.name for item in listing.items}
    listing.labels_without_image = sum(1 for name in labels if name not in names)
    listing.items = [
        replace(item, label=labels[item.name])
        if item.name in labels
        else replace(item, skip=item.skip or "missing_label")
        for item in listing.items
    ]


class SourceReader:
    """Reads item bytes in one process, keeping archives open between items."""

    def __init__(self) -> None:
        self._zips: dict[str, zipfile.ZipFile] = {}
        self._files: dict[str, BinaryIO] = {}

    def read(self, item: SourceItem) -> bytes:
        if item.kind == "file":
            with open(os.path.join(item.path, item.name), "rb") as f:
                return f.read()
        if item.kind == "zip":
            zf = self._zips.get(item.path)
            if zf is None:
                zf = self._zips[item.path] = zipfile.ZipFile(item.path)
            return zf.read(item.member)
        if item.kind == "tar":
            f = self._files.get(item.path)
            if f is None:
                # Kept open for the next items of this tar; close() closes it.
                f = self._files[item.path] = open(item.path, "rb")  # noqa: SIM115
            f.seek(item.offset)
            data = f.read(item.size)
            if len(data) != item.size:
                raise OSError(f"tar member ends early ({len(data)} of {item.size} bytes)")
            return data
        raise ValueError(f"unknown source item kind {item.kind!r}")

    def read_once(self, item: SourceItem) -> bytes:
        try:
            return self.read(item)
        finally:
            self.close()

    def close(self) -> None:
        for handle in [*self._zips.values(), *self._files.values()]:
            handle.close()
        self._zips.clear()
        self._files.clear()
