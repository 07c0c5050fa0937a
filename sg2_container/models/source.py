"""Where a model is: our model file, a reference pickle, the `model.tar.gz` a training job
leaves in S3, or a folder holding one of these (a processing job's model input, a channel).
The model file is recognised by its content, not its name; archives are checked member by
member before anything is written. Inference, serving and training's --resume all locate
their model here.
"""
from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

from sg2_container.errors import UserError

# A 1024 px model with G, D and G_ema is under 1 GiB; generous bounds against a tar bomb.
MAX_ARCHIVE_BYTES = 16 * 2**30
MAX_ARCHIVE_MEMBERS = 10_000
MAX_FOLDER_DEPTH = 4
# What the reference's tools take for --network and --resume and we never fetch (no network at
# run time): each is named as a URL, not as a file that does not exist.
URL_PREFIXES = ("http://", "https://", "s3://", "gs://")


def model_kind(path: Path) -> str | None:
    """'torch' or 'pickle' when `path` holds a model file by its content, else None.

    A zip counts as a torch file only when it has torch.save's record layout (<root>/data.pkl),
    so a dataset zip beside the model is not mistaken for one.
    """
    from sg2_container.models.files import sniff_kind

    try:
        kind = sniff_kind(path)
    except UserError:
        return None
    if kind == "torch" and zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            return None
        if not any(name.count("/") == 1 and name.endswith("/data.pkl") for name in names):
            return None
    return kind


def is_tar(path: Path) -> bool:
    try:
        return path.is_file() and tarfile.is_tarfile(path)
    except OSError:
        return False


def check_member(member: tarfile.TarInfo, archive: str) -> str:
    """The member's safe relative name; UserError for anything that could write outside the
    extraction folder or is not a plain file or folder."""
    name = member.name
    what = f"{archive}: member {name!r}"
    if member.issym() or member.islnk():
        raise UserError(f"{what} is a {'symbolic' if member.issym() else 'hard'} link to "
                        f"{member.linkname!r}; model archives may hold only files and folders")
    if not (member.isfile() or member.isdir()):
        kind = ("device file" if member.ischr() or member.isblk() else
                "FIFO" if member.isfifo() else "special member")
        raise UserError(f"{what} is a {kind}; model archives may hold only files and folders")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UserError(f"{what} has an absolute path; refusing to extract the archive")
    normal = posixpath.normpath(name.replace("\\", "/"))
    if normal == ".." or normal.startswith("../") or "/../" in f"/{name}/":
        raise UserError(f"{what} points outside the archive (..); refusing to extract it")
    return "" if normal == "." else normal


def extract_tar(archive: Path, dest: Path, *, max_bytes: int = MAX_ARCHIVE_BYTES,
                max_members: int = MAX_ARCHIVE_MEMBERS) -> list[Path]:
    """Extracts plain files and folders of `archive` into `dest` (a new or empty folder).

    Every member is checked first (no absolute paths, no '..', no links, no device files or
    FIFOs, bounded count and total size), so a bad archive writes nothing at all.
    """
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = []
            total = 0
            for member in tar:
                members.append((member, check_member(member, archive.name)))
                total += member.size if member.isfile() else 0
                if len(members) > max_members:
                    raise UserError(f"{archive.name}: more than {max_members} members; not a "
                                    "model archive")
                if total > max_bytes:
                    raise UserError(f"{archive.name}: more than {max_bytes / 2**30:.1f} GiB once "
                                    "extracted; not a model archive")
            dest.mkdir(parents=True, exist_ok=True)
            written = []
            root = dest.resolve()
            for member, name in members:
                if not name:
                    continue
                target = (dest / name).resolve()
                if root not in target.parents:
                    raise UserError(f"{archive.name}: member {member.name!r} resolves outside "
                                    "the extraction folder")
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None  # a regular file
                with source, open(target, "xb") as out:
                    shutil.copyfileobj(source, out, length=16 * 2**20)
                written.append(target)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise UserError(f"{archive.name}: cannot read the archive: {error}") from error
    return written


def find_model_file(folder: Path, several_hint: str = "name the one to use") -> Path | None:
    """The one model file in `folder`, by content; None if there is none.

    Searched a few levels deep, skipping hidden files and folders (editor and OS droppings)
    and training checkpoints (not models). Among several, a lone model.pt wins (what our
    training job exports, beside any reference pickle), then a lone network-final.pt (a
    finished run's folder); otherwise UserError names them and ends with `several_hint`.
    """
    from sg2_container.models.files import CHECKPOINT_NAME

    found: list[Path] = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        depth = len(Path(root).relative_to(folder).parts)
        dirs[:] = [] if depth >= MAX_FOLDER_DEPTH else sorted(
            d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(root) / name
            if (not name.startswith(".") and not CHECKPOINT_NAME.match(name)
                    and model_kind(path) is not None):
                found.append(path)
    if len(found) > 1:
        for name in ("model.pt", "network-final.pt"):
            preferred = [p for p in found if p.name == name]
            if len(preferred) == 1:
                return preferred[0]
        shown = ", ".join(str(p.relative_to(folder)) for p in found[:6])
        shown += f" and {len(found) - 6} more" if len(found) > 6 else ""
        raise UserError(f"{folder}: several model files ({shown}); {several_hint}")
    return found[0] if found else None


URL_PROBLEM = ("a URL, and nothing is downloaded at run time: fetch the file once and give its "
               "path (on SageMaker, through an input channel)")


def is_url(source: str | os.PathLike) -> bool:
    return os.fspath(source).lower().startswith(URL_PREFIXES)


def refuse_url(source: str | os.PathLike, what: str) -> None:
    """A URL where a model file is expected: nothing is downloaded, so say how to supply it."""
    if is_url(source):
        raise UserError(f"{what} {os.fspath(source)}: {URL_PROBLEM}")


@contextlib.contextmanager
def located_model(source: str | os.PathLike, what: str = "model") -> Iterator[tuple[Path, Path]]:
    """(the model file, how to name it) for a model file, a reference pickle, a model.tar.gz or
    a folder of these; an archive is extracted to a temporary folder that lasts the block."""
    refuse_url(source, what)
    source = Path(source)
    if not source.exists():
        raise UserError(f"{what} {source}: no such file or folder")
    if source.is_dir():
        path = find_model_file(source)
        if path is not None:
            yield path, path
            return
        tars = [p for p in sorted(source.iterdir()) if is_tar(p)]
        if len(tars) != 1:
            listing = ", ".join(sorted(p.name for p in source.iterdir())[:10]) or "nothing"
            raise UserError(f"{what} {source}: no model file (our .pt or a network .pkl) and "
                            f"{'no' if not tars else 'several'} model.tar.gz in it; it holds "
                            f"{listing}")
        source = tars[0]
    elif model_kind(source) is not None:
        yield source, source
        return
    elif not is_tar(source):
        from sg2_container.models.files import sniff_kind

        sniff_kind(source)  # raises the file-format error that names what the file is
        raise UserError(f"{what} {source}: not a model file, a network pickle or a model.tar.gz")
    with tempfile.TemporaryDirectory(prefix="sg2-model-") as tmp:
        extract_tar(source, Path(tmp))
        path = find_model_file(Path(tmp))
        if path is None:
            raise UserError(f"{what} {source}: the archive holds no model file (our .pt or a "
                            "network .pkl)")
        yield path, Path(source.name) / path.relative_to(tmp)
