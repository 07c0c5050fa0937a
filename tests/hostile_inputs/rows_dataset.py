"""Training datasets: labels, image headers and member sizes that would build absurd networks
or read huge files. Every check fails when the dataset is opened, before any network exists."""
import json
import struct
import zipfile
import zlib

import numpy as np
from PIL import Image

from sg2_container.data.dataset import ImageFolderDataset
from tests.hostile_inputs.table import Row, user_error

NAMES = [f"img{i}.png" for i in range(3)]


def _folder(tmp_path, labels=None):
    root = tmp_path / "set"
    root.mkdir()
    for name in NAMES:
        Image.fromarray(np.full([8, 8, 3], 100, np.uint8)).save(root / name)
    if labels is not None:
        text = json.dumps({"labels": [[n, v] for n, v in zip(NAMES, labels)]})
        (root / "dataset.json").write_text(text)
    return root


def _open(root, use_labels=True):
    return user_error(ImageFolderDataset, root, use_labels=use_labels)


def _png_header(width, height):
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + chunk + struct.pack(">I", zlib.crc32(chunk[4:]))


def _huge_header(tmp_path):
    root = tmp_path / "set"
    root.mkdir()
    (root / "img0.png").write_bytes(_png_header(65536, 65536))
    return _open(root, use_labels=False)


def _zip_member_claims_1gb(tmp_path):
    """A small zip whose directory says the image holds 1 GiB: refused from the directory,
    nothing read (the member's real bytes are a valid 8x8 PNG)."""
    root = _folder(tmp_path)
    path = tmp_path / "set.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.write(root / "img0.png", "img0.png")
    data = bytearray(path.read_bytes())
    central = data.rindex(b"PK\x01\x02")
    data[central + 24:central + 28] = struct.pack("<I", 2**30)  # uncompressed size
    path.write_bytes(bytes(data))
    return _open(path, use_labels=False)


def _zip_member_bit_flip(tmp_path):
    """One flipped byte in a stored member: the CRC-32 no longer matches (a damaged upload)."""
    root = _folder(tmp_path)
    path = tmp_path / "set.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name in NAMES:
            zf.write(root / name, name)
    data = bytearray(path.read_bytes())
    data[data.rindex(b"IEND") - 8] ^= 0xFF  # inside the last image's pixel data
    path.write_bytes(bytes(data))
    return _open(path, use_labels=False)


def _sparse_folder_member(tmp_path, name, size, use_labels=False):
    root = _folder(tmp_path)
    with open(root / name, "wb") as f:
        f.write(_png_header(8, 8))
        f.truncate(size)  # sparse: takes no disk space
    return _open(root, use_labels=use_labels)


ROWS = [
    Row("labels-class-2^40", "dataset.json with class index 2^40 (`cond`)",
        "is class 1099511627776; class indices must be from 0 to 32767",
        lambda tmp: _open(_folder(tmp, [0, 1, 2**40]))),
    Row("labels-class-negative", "dataset.json with class index -1 (`cond`)",
        "is class -1; class indices must be from 0 to 32767",
        lambda tmp: _open(_folder(tmp, [0, -1, 2]))),
    Row("labels-nan", "dataset.json with a NaN in a label vector (`cond`)",
        "holds a non-finite number (NaN, infinity, or beyond float32); labels must be finite",
        lambda tmp: _open(_folder(tmp, [[0.5, 1.0], [float("nan"), 0.0], [1.0, 1.0]]))),
    Row("labels-beyond-float32", "dataset.json with 1e40 in a label vector (`cond`)",
        "holds a non-finite number",
        lambda tmp: _open(_folder(tmp, [[0.5], [1e40], [1.0]]))),
    Row("labels-empty-vectors", "dataset.json with empty label vectors `[]` (`cond`)",
        "is an empty vector ([]); a conditional network needs at least one label value",
        lambda tmp: _open(_folder(tmp, [[], [], []]))),
    Row("labels-too-wide", "dataset.json with label vectors of 40000 values (`cond`)",
        "has 40000 values; at most 32768 are allowed",
        lambda tmp: _open(_folder(tmp, [[0.0] * 40000] * 3))),
    Row("image-header-65536px", "PNG whose header claims 65536x65536 px",
        "is 65536x65536; the resolution must be a power of two from 4 to 4096", _huge_header),
    Row("zip-member-1gb", "zip whose directory says an image member holds 1 GiB",
        "'img0.png' is 1073741824 bytes; files over 268435456 bytes (256 MiB) are refused",
        _zip_member_claims_1gb),
    Row("zip-member-bit-flip", "zip with one flipped byte in an image (CRC-32 mismatch)",
        "'img2.png' in the zip is damaged (CRC mismatch); upload the zip again",
        _zip_member_bit_flip),
    Row("folder-image-1gb", "1 GiB image file in a dataset folder",
        "'img1.png' is 1073741824 bytes; files over 268435456 bytes (256 MiB) are refused",
        lambda tmp: _sparse_folder_member(tmp, "img1.png", 2**30)),
    Row("labels-file-1gb", "1 GiB dataset.json (`cond`; without it, a warning and no labels)",
        "'dataset.json' is 1073741824 bytes; files over 536870912 bytes (512 MiB) are refused",
        lambda tmp: _sparse_folder_member(tmp, "dataset.json", 2**30, use_labels=True)),
]
