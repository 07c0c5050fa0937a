"""Generated test inputs: an upload with one of every troublesome file, archives, image sets.

Everything is made here with Pillow (tiny images, a few dozen files), so no test downloads data.
"""

from __future__ import annotations

import io
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 32  # output size used by the tests
MAX_PIXELS = 1_000_000  # so the "bombs" below stay small files


def _noise(h: int, w: int, seed: int, channels: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (h, w, channels) if channels > 1 else (h, w)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def _encode(im: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def png_16bit_rgb(a: np.ndarray) -> bytes:
    """A 16-bit RGB PNG written by hand: Pillow cannot write one."""
    h, w, _ = a.shape
    raw = b"".join(b"\x00" + a[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def exif_rotated_jpeg() -> bytes:
    """60x40 stored, left half red / right half blue, EXIF orientation 6 (display 90 deg CW)."""
    a = np.zeros((40, 60, 3), dtype=np.uint8)
    a[:, :30] = (255, 0, 0)
    a[:, 30:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    return _encode(Image.fromarray(a), "JPEG", quality=95, exif=exif.tobytes())


def animated_gif() -> bytes:
    frames = [Image.fromarray(_noise(40, 40, s)).convert("P") for s in (1, 2)]
    return _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)


def corrupt_png() -> bytes:
    data = bytearray(_encode(Image.fromarray(_noise(40, 40, 3)), "PNG"))
    for i in range(60, 200):  # inside the IDAT stream: the header still parses
        data[i] ^= 0x55
    return bytes(data)


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


@dataclass
class UploadSet:
    """Files by relative name, and what `sg2 prepare` must report for them."""

    files: dict[str, bytes]
    kept: int
    skipped: dict[str, int]
    converted: dict[str, int]
    skip_reasons: dict[str, str]


def troublesome_upload() -> UploadSet:
    rgba = np.zeros((40, 40, 4), dtype=np.uint8)
    rgba[..., :3] = _noise(40, 40, 4)
    rgba[10:30, 10:30, 3] = 255  # opaque square on a transparent background
    gray16 = np.arange(40 * 40, dtype=np.uint16).reshape(40, 40) * 40
    files = {
        # good images of mixed sizes and formats: kept as they are
        "good/rgb_large.jpg": _encode(Image.fromarray(_noise(90, 120, 10)), "JPEG"),
        "good/rgb.png": _encode(Image.fromarray(_noise(64, 48, 11)), "PNG"),
        "good/photo.webp": _encode(Image.fromarray(_noise(40, 64, 12)), "WEBP"),
        "good/icon.bmp": _encode(Image.fromarray(_noise(40, 40, 13)), "BMP"),
        "good/wide.jpeg": _encode(Image.fromarray(_noise(50, 200, 14)), "JPEG"),
        "good/upper.PNG": _encode(Image.fromarray(_noise(36, 36, 15)), "PNG"),
        # troublesome but usable: converted and counted
        "odd/cmyk.jpg": _encode(Image.fromarray(_noise(40, 40, 20)).convert("CMYK"), "JPEG"),
        "odd/palette.png": _encode(Image.fromarray(_noise(40, 40, 21)).convert("P"), "PNG"),
        "odd/rgba.png": _encode(Image.fromarray(rgba), "PNG"),
        "odd/gray16.png": _encode(Image.fromarray(gray16), "PNG"),
        "odd/rgb16.png": png_16bit_rgb(np.full((40, 40, 3), 40000, dtype=np.uint16)),
        "odd/gray.jpg": _encode(Image.fromarray(_noise(40, 40, 22, channels=1)), "JPEG"),
        "odd/exif_rotated.jpg": exif_rotated_jpeg(),
        "odd/animated.gif": animated_gif(),
        "odd/small.png": _encode(Image.fromarray(_noise(12, 10, 23)), "PNG"),
        # unusable: skipped with a reason
        "bad/truncated.jpg": truncated(_encode(Image.fromarray(_noise(64, 64, 30)), "JPEG")),
        "bad/truncated.png": truncated(_encode(Image.fromarray(_noise(64, 64, 31)), "PNG")),
        "bad/corrupt.png": corrupt_png(),
        "bad/bomb.png": _encode(Image.new("L", (1200, 1000)), "PNG"),  # > limit: warning
        "bad/bomb_big.png": _encode(Image.new("L", (2100, 1000)), "PNG"),  # > 2x limit: error
        "bad/notes.txt": b"not an image\n",
        "bad/fake.jpg": b"this is text, named like a JPEG\n",
        ".DS_Store": b"\x00\x00\x00\x01Bud1",
    }
    return UploadSet(
        files=files,
        kept=15,
        skipped={"truncated": 2, "corrupt": 1, "decompression_bomb": 2, "not_an_image": 3},
        converted={
            "cmyk_to_rgb": 1,
            "palette_to_rgb": 2,
            "alpha_flattened": 1,
            "16bit_to_8bit": 2,
            "gray_to_rgb": 2,
            "exif_orientation": 1,
            "first_frame_only": 1,
            "upscaled": 1,
        },
        skip_reasons={
            "bad/truncated.jpg": "truncated",
            "bad/truncated.png": "truncated",
            "bad/corrupt.png": "corrupt",
            "bad/bomb.png": "decompression_bomb",
            "bad/bomb_big.png": "decompression_bomb",
            "bad/notes.txt": "not_an_image",
            "bad/fake.jpg": "not_an_image",
            ".DS_Store": "not_an_image",
        },
    )


def write_folder(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def write_zip(path: Path, files: dict[str, bytes], prefix: str = "") -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in sorted(files.items(), reverse=True):  # archive order != sorted order
            zf.writestr(prefix + name, data)
    return path


def write_tar(path: Path, files: dict[str, bytes], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tf:
        for name, data in sorted(files.items(), reverse=True):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def make_images(root: Path, specs: dict[str, tuple[int, int]], mode: str = "RGB") -> Path:
    """Writes PNG/JPEG files of the given (width, height), for the dataset reader tests."""
    for i, (name, (w, h)) in enumerate(sorted(specs.items())):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        channels = 1 if mode == "L" else 3
        Image.fromarray(_noise(h, w, 100 + i, channels)).save(path)
    return root
