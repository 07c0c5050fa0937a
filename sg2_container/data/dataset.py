"""The training images: a zip or folder of PNG/JPEG files (the layout `sg2 prepare` writes).

Torch-free (numpy + Pillow) so it runs in DataLoader workers; a zip is opened lazily in each
process, never pickled open. Every image header is checked when the dataset is built, so a bad
file stops training at start-up with its name, not hours later.
"""

from __future__ import annotations

import io
import logging
import os
import struct
import zipfile
import zlib

import numpy as np
from PIL import Image

from sg2_container.data.labels import LABELS_FILE, label_matrix, parse_labels
from sg2_container.errors import UserError
from sg2_container.models.bounds import MAX_RESOLUTION

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour type -> channels we accept (0 gray, 2 RGB); others need `sg2 prepare`.
_PNG_CHANNELS = {0: 1, 2: 3}
_PNG_COLOR_NAMES = {0: "gray", 2: "RGB", 3: "palette", 4: "gray+alpha", 6: "RGBA"}
_PIL_CHANNELS = {"L": 1, "RGB": 3}
# Largest file read whole: an uncompressed 4096x4096 RGB PNG is ~50 MB; a member claiming more
# is refused from its size in the zip directory (or the file system) before it is read.
MAX_IMAGE_FILE_BYTES = 256 * 2**20
MAX_LABELS_FILE_BYTES = 512 * 2**20

log = logging.getLogger(__name__)


class DatasetError(UserError):
    """A bad image found while reading, maybe in a DataLoader worker. torch re-raises a worker's
    exception as `type(text)`, its traceback folded into the text, and the failure file keeps
    only the first 1 KB: this keeps the message alone, so the failure names the file."""

    def __init__(self, message: str) -> None:
        marker = f"{type(self).__module__}.{type(self).__qualname__}: "
        if message.startswith("Caught ") and marker in message:
            message = message.rsplit(marker, 1)[1].strip()
        super().__init__(message)


class ImageFolderDataset:
    """Images [C, H, W] uint8 with float32 labels, sorted by relative name.

    `max_size` keeps a random subset (RandomState(random_seed) shuffle, first max_size, sorted);
    `xflip` doubles the length, the second half returning mirrored images.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        resolution: int | None = None,
        use_labels: bool = False,
        max_size: int | None = None,
        xflip: bool = False,
        random_seed: int = 0,
    ) -> None:
        self.path = str(path)
        self.use_labels = use_labels
        self.xflip = xflip
        self._zip: zipfile.ZipFile | None = None
        self._zip_pid = 0
        if os.path.isdir(self.path):
            self._kind = "folder"
            names = _folder_image_names(self.path)
        elif os.path.isfile(self.path):
            self._kind = "zip"
            names = sorted(
                n for n in self._open_zip().namelist() if n.lower().endswith(IMAGE_EXTENSIONS)
            )
        elif os.path.exists(self.path):
            raise UserError(f"dataset {self.path!r}: neither a folder nor a zip file")
        else:
            raise UserError(f"dataset {self.path!r}: not found")
        if not names:
            raise UserError(f"dataset {self.path!r}: no PNG or JPEG images found ({self._hint()})")
        self._names = names
        self.image_shape = self._check_headers(resolution)
        self.label_error: str | None = None
        try:
            self._raw_labels, self.label_kind = self._load_labels()
        except UserError as e:
            if use_labels:
                raise
            # Unconditional training does not need them: keep going, but say why there are none.
            log.warning("%s; training without labels", e)
            self._raw_labels, self.label_kind, self.label_error = None, None, str(e)
        if use_labels and self._raw_labels is None:
            raise UserError(
                f"dataset {self.path!r}: labels were asked for (use_labels / cond) but there is "
                f'no {LABELS_FILE} with "labels" in it'
            )
        indices = np.arange(len(names), dtype=np.int64)
        if max_size is not None:
            if max_size < 1:
                raise UserError(f"max_size: got {max_size}; must be a positive integer or None")
            if max_size < len(indices):
                np.random.RandomState(random_seed).shuffle(indices)
                indices = np.sort(indices[:max_size])
        self._indices = indices

    # --- sizes -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._indices) * (2 if self.xflip else 1)

    @property
    def num_channels(self) -> int:
        return self.image_shape[0]

    @property
    def resolution(self) -> int:
        return self.image_shape[1]

    @property
    def num_images(self) -> int:
        """Images on disk (before max_size and xflip)."""
        return len(self._names)

    @property
    def label_dim(self) -> int:
        if not self.use_labels or self._raw_labels is None:
            return 0
        return self._raw_labels.shape[1]

    @property
    def has_labels(self) -> bool:
        return self.label_dim > 0

    # --- items -------------------------------------------------------------------------------

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        raw, flip = self._raw_index(index)
        image = self._load_image(raw)
        if flip:
            image = np.ascontiguousarray(image[:, :, ::-1])
        return image, self._label(raw)

    def get_label(self, index: int) -> np.ndarray:
        return self._label(self._raw_index(index)[0])

    def image_name(self, index: int) -> str:
        """Relative name of the file behind `index` (mirrored indices name the same file)."""
        return self._names[self._raw_index(index)[0]]

    def _raw_index(self, index: int) -> tuple[int, bool]:
        n = len(self._indices)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of length {len(self)}")
        return int(self._indices[index % n]), index >= n

    def _label(self, raw: int) -> np.ndarray:
        if self.label_dim == 0:
            return np.zeros([0], dtype=np.float32)
        assert self._raw_labels is not None
        return self._raw_labels[raw].copy()

    def _load_image(self, raw: int) -> np.ndarray:
        name = self._names[raw]
        try:
            with Image.open(io.BytesIO(self._read(name))) as im:
                im.load()
                array = np.array(im)  # writable: torch refuses read-only arrays
        except (OSError, ValueError, SyntaxError, EOFError) as e:
            raise DatasetError(f"dataset {self.path!r}: cannot decode {name!r} ({e})") from e
        if array.ndim == 2:
            array = array[:, :, np.newaxis]
        image = array.transpose(2, 0, 1)
        if image.shape != self.image_shape or image.dtype != np.uint8:
            raise DatasetError(
                f"dataset {self.path!r}: {name!r} decodes to {list(image.shape)} {image.dtype}; "
                f"expected {list(self.image_shape)} uint8 like the first image"
            )
        return image

    # --- files -------------------------------------------------------------------------------

    def _hint(self) -> str:
        """What to do about a dataset without images: a folder holding archives names them (an
        S3 prefix often puts the zip one folder down, or holds a tar of the designer's images)."""
        if self._kind == "folder":
            zips, tars = _archives_in(self.path)
            if zips:
                shown = ", ".join(os.path.relpath(p, self.path) for p in zips[:3])
                return (f"the folder holds {shown}: point data at the zip, e.g. {zips[0]!r}")
            if tars:
                shown = ", ".join(os.path.relpath(p, self.path) for p in tars[:3])
                return (f"the folder holds {shown}, which training does not read: make a "
                        f"training zip of it with `sg2 prepare --source {tars[0]}` (or the "
                        "prepare processing job)")
        return "run `sg2 prepare` to make a training zip from other formats"

    def _open_zip(self) -> zipfile.ZipFile:
        """One ZipFile per process: a handle inherited through fork would share its offset."""
        if self._zip is None or self._zip_pid != os.getpid():
            try:
                self._zip = zipfile.ZipFile(self.path)
            except (zipfile.BadZipFile, zlib.error, EOFError, ValueError) as e:
                if not self.path.lower().endswith(".zip"):
                    raise UserError(
                        f"dataset {self.path!r}: not a zip file; the dataset is a zip (as "
                        "`sg2 prepare` writes) or a folder of PNG/JPEG images"
                    ) from e
                raise UserError(
                    f"dataset {self.path!r}: not a valid zip file ({e}); a corrupt or incomplete "
                    "upload? Upload it again, or re-run `sg2 prepare`"
                ) from e
            self._zip_pid = os.getpid()
        return self._zip

    def _member_size(self, name: str) -> int:
        """Bytes a member holds, from the zip directory or the file system (nothing read)."""
        if self._kind == "zip":
            return self._open_zip().getinfo(name).file_size
        return os.path.getsize(os.path.join(self.path, name))

    def _check_size(self, name: str, limit: int) -> None:
        size = self._member_size(name)
        if size > limit:
            raise UserError(
                f"dataset {self.path!r}: {name!r} is {size} bytes; files over {limit} bytes "
                f"({limit // 2**20} MiB) are refused as damaged or hostile (nothing was read)"
            )

    def _read(self, name: str) -> bytes:
        return self._read_head(name, -1)

    def _read_head(self, name: str, size: int) -> bytes:
        """The first `size` bytes of a member (-1: all); a damaged zip member is a UserError."""
        if self._kind == "folder":
            with open(os.path.join(self.path, name), "rb") as f:
                return f.read(size)
        try:
            with self._open_zip().open(name) as f:
                return f.read(size)
        except (zipfile.BadZipFile, zlib.error, EOFError) as e:
            # A stored member's CRC is checked once its last byte is read; a deflated member
            # fails as soon as the damaged bytes are decompressed.
            reason = "CRC mismatch" if "CRC" in str(e) else f"{type(e).__name__}: {e}"
            raise DatasetError(
                f"dataset {self.path!r}: {name!r} in the zip is damaged ({reason}); upload the "
                "zip again, or re-run `sg2 prepare` to make a new one"
            ) from e

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state["_zip"] = None
        return state

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None

    # --- validation --------------------------------------------------------------------------

    def _check_headers(self, resolution: int | None) -> tuple[int, int, int]:
        """[C, H, W] of the first image, after checking every image's header against it."""
        expected: tuple[int, int, int] | None = None
        for name in self._names:
            self._check_size(name, MAX_IMAGE_FILE_BYTES)
            shape = self._header_shape(name)
            if expected is None:
                _, height, width = shape
                if width != height:
                    raise UserError(
                        f"dataset {self.path!r}: {name!r} is {width}x{height}; images must be "
                        "square"
                    )
                if width < 4 or width & (width - 1) or width > MAX_RESOLUTION:
                    raise UserError(
                        f"dataset {self.path!r}: {name!r} is {width}x{height}; the resolution must "
                        f"be a power of two from 4 to {MAX_RESOLUTION} (4, 8, ..., 256, 512, 1024)"
                    )
                if resolution is not None and width != resolution:
                    raise UserError(
                        f"dataset {self.path!r}: {name!r} is {width}x{height}; expected resolution "
                        f"{resolution}"
                    )
                expected = shape
            elif shape != expected:
                raise UserError(
                    f"dataset {self.path!r}: {name!r} is {_describe(shape)}; expected "
                    f"{_describe(expected)} like the first image {self._names[0]!r}"
                )
        assert expected is not None
        return expected

    def _header_shape(self, name: str) -> tuple[int, int, int]:
        """(channels, height, width) from the header alone; PNG parsed directly for speed."""
        head = self._read_head(name, 26)
        if head.startswith(_PNG_SIGNATURE):
            if len(head) < 26 or head[12:16] != b"IHDR":
                raise UserError(f"dataset {self.path!r}: {name!r} is not a valid PNG file")
            width, height, depth, color = struct.unpack(">IIBB", head[16:26])
            if depth != 8 or color not in _PNG_CHANNELS:
                raise UserError(
                    f"dataset {self.path!r}: {name!r} is a {depth}-bit "
                    f"{_PNG_COLOR_NAMES.get(color, f'type {color}')} PNG; expected 8-bit gray "
                    "or RGB (run `sg2 prepare` to convert)"
                )
            return _PNG_CHANNELS[color], height, width
        try:
            with Image.open(io.BytesIO(self._read(name)), formats=("PNG", "JPEG")) as im:
                mode, (width, height) = im.mode, im.size
        except (OSError, ValueError, SyntaxError, EOFError) as e:
            raise UserError(
                f"dataset {self.path!r}: {name!r} is not a readable PNG or JPEG image ({e})"
            ) from e
        if mode not in _PIL_CHANNELS:
            raise UserError(
                f"dataset {self.path!r}: {name!r} has pixel mode {mode}; expected L (gray) or RGB "
                "(run `sg2 prepare` to convert)"
            )
        return _PIL_CHANNELS[mode], height, width

    def _load_labels(self) -> tuple[np.ndarray | None, str | None]:
        """[N, label_dim] float32 in name order and "class" | "vector", or (None, None)."""
        try:
            self._check_size(LABELS_FILE, MAX_LABELS_FILE_BYTES)
            data = self._read(LABELS_FILE)
        except (KeyError, FileNotFoundError):
            return None, None
        origin = f"dataset {self.path!r}: {LABELS_FILE}"
        labels = parse_labels(data, origin)
        if labels is None:
            return None, None
        return label_matrix(labels, self._names, origin)

    @property
    def raw_label_dim(self) -> int:
        """Label width in the file, whether or not use_labels is set (0 without labels)."""
        return 0 if self._raw_labels is None else self._raw_labels.shape[1]

    def class_counts(self) -> list[int] | None:
        """Images per class for integer labels (before max_size and xflip), else None."""
        if self.label_kind != "class" or self._raw_labels is None:
            return None
        return self._raw_labels.sum(axis=0).astype(np.int64).tolist()


TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def _archives_in(root: str, most: int = 3) -> tuple[list[str], list[str]]:
    """Up to `most` zips and tars under `root` (hidden files skipped: macOS's ._x.zip), sorted."""
    zips: list[str] = []
    tars: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(filenames):
            lower = filename.lower()
            if filename.startswith("."):
                continue
            if lower.endswith(".zip") and len(zips) < most:
                zips.append(os.path.join(dirpath, filename))
            elif lower.endswith(TAR_SUFFIXES) and len(tars) < most:
                tars.append(os.path.join(dirpath, filename))
    return zips, tars


def _folder_image_names(root: str) -> list[str]:
    names = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for filename in filenames:
            if filename.lower().endswith(IMAGE_EXTENSIONS):
                full = os.path.join(dirpath, filename)
                names.append(os.path.relpath(full, root).replace(os.sep, "/"))
    return sorted(names)


def count_images(path: str | os.PathLike[str], subset: int | None = None,
                 mirror: bool = False) -> int | None:
    """Images training draws from (subset and mirror counted), from the file names alone (no
    image is read); None when the dataset cannot be listed: opening it says why."""
    path = os.fspath(path)
    try:
        if os.path.isdir(path):
            count = len(_folder_image_names(path))
        else:
            with zipfile.ZipFile(path) as archive:
                count = sum(n.lower().endswith(IMAGE_EXTENSIONS) for n in archive.namelist())
    except (OSError, zipfile.BadZipFile, zlib.error, EOFError, ValueError):
        return None
    if subset is not None:
        count = min(count, subset)
    return count * (2 if mirror else 1)


def check_batch_fits(data: str, batch: int | None, subset: int | None, mirror: bool) -> None:
    """An explicit batch larger than the dataset is refused before anything is built.

    The reference loops over the data, so each image would be repeated in every batch; a batch
    that large is almost always a typo, and its memory (batch 100000) killed the job without a
    word. The preset batch is left alone, as in the reference (paper256's 64 on 40 images).
    """
    if batch is None:
        return
    available = count_images(data, subset, mirror)
    if available is not None and 0 < available < batch:
        how = " (mirror doubles them)" if mirror else ""
        raise UserError(f"batch={batch} is larger than the dataset: {data!r} gives {available} "
                        f"images{how}{f' with subset={subset}' if subset else ''}; choose a batch "
                        f"of at most {available}")


def _describe(shape: tuple[int, int, int]) -> str:
    channels, height, width = shape
    return f"{width}x{height} with {channels} channel{'s' if channels != 1 else ''}"


def content_fingerprint(path: str | os.PathLike[str]) -> str:
    """A cheap hash of what training reads (images and dataset.json), for "same dataset?" on
    resume; the path itself does not count. A zip is hashed from its central directory (names,
    sizes, CRC-32s: content-based, no member is read); a folder from names, sizes and the first
    4 KiB of each file."""
    import hashlib

    def wanted(name: str) -> bool:
        return name.lower().endswith(IMAGE_EXTENSIONS) or name.rsplit("/", 1)[-1] == LABELS_FILE

    digest = hashlib.sha256()
    path = os.fspath(path)
    if os.path.isdir(path):
        digest.update(b"folder\0")
        entries = []
        for dirpath, _, filenames in os.walk(path):
            for filename in filenames:
                full = os.path.join(dirpath, filename)
                name = os.path.relpath(full, path).replace(os.sep, "/")
                if wanted(name):
                    entries.append((name, full))
        for name, full in sorted(entries):
            with open(full, "rb") as f:
                head = f.read(4096)
            digest.update(f"{name}\0{os.path.getsize(full)}\0".encode() + head)
    else:
        digest.update(b"zip\0")
        with zipfile.ZipFile(path) as archive:
            members = sorted((i.filename, i.file_size, i.CRC) for i in archive.infolist()
                             if not i.is_dir() and wanted(i.filename))
        for name, size, crc in members:
            digest.update(f"{name}\0{size}\0{crc:08x}\0".encode())
    return f"sha256:{digest.hexdigest()[:16]}"
