"""One input file -> one training PNG, or a reason to skip it. Runs inside worker processes.

The result depends only on the file's bytes and the options (never on which worker ran it),
which is what makes the output identical for any number of workers.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile

from sg2_container.data.options import PrepareOptions
from sg2_container.data.png import encode_png
from sg2_container.io.images import SIXTEEN_BIT_MODES, sixteen_bit_to_8bit

# Formats we decode; anything else is "not_an_image" even if Pillow could open it.
FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
# JPEG decode-time downscaling keeps at least this factor above the target on the short side,
# so the final Lanczos still has real pixels to filter (Pillow's thumbnail() uses the same idea).
DRAFT_GAP = 2.0
# Integer box reduction before Lanczos when shrinking by more than this factor.
REDUCING_GAP = 3.0
_ORIENTATION_TAG = 0x0112
# EXIF orientation value -> the transpose that shows the image upright.
_ORIENTATIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_OTHER_COLOR_SPACES = ("YCbCr", "LAB", "HSV")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one input: PNG bytes, or the skip reason; plus conversions applied."""

    png: bytes | None
    skip: str | None = None
    detail: str = ""
    converted: tuple[str, ...] = ()


class Skip(Exception):
    """Raised inside the conversion to drop the current file with a report reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@contextlib.contextmanager
def pillow_limits(max_pixels: int) -> Iterator[None]:
    """Our pixel limit and strict truncation checks for the duration, restored afterwards.

    Pillow raises DecompressionBombError above twice its limit and only warns above it; the
    warning is turned into an error here so both become a skip.
    """
    saved = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
    Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = max_pixels, False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = saved


def convert_image(data: bytes, options: PrepareOptions) -> Outcome:
    """Decodes, normalises and resizes one image; call inside `pillow_limits`."""
    notes: list[str] = []
    try:
        im = _decode(data, options, notes)
        im = _upright(im, notes)
        im = normalise_mode(im, options.channels, options.background_rgb, notes)
        im = _fit(im, options, notes)
    except Skip as skip:
        return Outcome(png=None, skip=skip.reason, detail=skip.detail, converted=tuple(notes))
    return Outcome(png=encode_png(np.asarray(im)), converted=tuple(notes))


class _Bytes(io.BytesIO):
    """A file's bytes that note whether a parser asked for more than there were: a file cut
    short inside its header fails in many ways ('Truncated File Read', a struct error, 'not
    identified by this driver'), so truncation is told by the reads, not by the message."""

    ran_out = False

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        if size is not None and size > 0 and len(data) < size:
            self.ran_out = True
        return data


def _known_format(data: bytes) -> bool:
    """Whether one of FORMATS claims the file by its first bytes (Pillow's own check)."""
    Image.init()
    accepts = [Image.OPEN[name][1] for name in FORMATS if name in Image.OPEN]
    return any(accept is not None and accept(data[:16]) for accept in accepts)


def _declared_longer(data: bytes) -> bool:
    """A RIFF file (WebP) whose header declares more bytes than there are: Pillow reads a WebP
    whole, so the reads cannot tell that it was cut short; its own length field can."""
    return (len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP"
            and int.from_bytes(data[4:8], "little") + 8 > len(data))


def _decode(data: bytes, options: PrepareOptions, notes: list[str]) -> Image.Image:
    """Fully decodes the first frame, or raises Skip; never returns a half-decoded image."""
    source = _Bytes(data)
    try:
        im = Image.open(source, formats=FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        # Pillow's own text quotes its error threshold (twice the limit) for the larger ones.
        size = re.search(r"Image size \((\d+) pixels\)", str(e))
        raise Skip("decompression_bomb", f"{size.group(1) if size else 'more'} pixels, over "
                   f"--max-pixels {options.max_pixels}") from e
    except Exception as e:  # not ours, a broken header, or one that ends early
        unidentified = isinstance(e, Image.UnidentifiedImageError)  # its text names an object
        if (source.ran_out and _known_format(data)) or _declared_longer(data):
            raise Skip("truncated", "the file ends inside its header"
                       + ("" if unidentified else f" ({_describe(e)})")) from e
        if unidentified:
            raise Skip("not_an_image", "not a PNG, JPEG, WebP, BMP or GIF file") from e
        raise Skip("corrupt", _describe(e)) from e
    header_cut = source.ran_out  # the header parsed, but the file ended right after it
    try:
        if getattr(im, "is_animated", False):
            notes.append("first_frame_only")
            im.seek(0)
        sixteen_bit = any(";16" in _rawmode(tile) for tile in im.tile)
        if im.format == "JPEG":
            request = _draft_request(im.size, options)
            if request is not None:
                im.draft(None, request)
        im.load()
    except Exception as e:  # a decoder may raise anything on damaged data
        cut = header_cut or _declared_longer(data) or "truncated" in str(e).lower()
        raise Skip("truncated" if cut else "corrupt", _describe(e)) from e
    if sixteen_bit and im.mode not in SIXTEEN_BIT_MODES:
        notes.append("16bit_to_8bit")  # Pillow already kept the high byte of each sample
    return im


def _rawmode(tile: object) -> str:
    args = getattr(tile, "args", None)
    if isinstance(args, str):
        return args
    if isinstance(args, tuple) and args and isinstance(args[0], str):
        return args[0]
    return ""


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:300]


def _draft_request(size: tuple[int, int], options: PrepareOptions) -> tuple[int, int] | None:
    """The smallest decode size that keeps DRAFT_GAP x the target on the short side, or None."""
    width, height = size
    need = max(options.size) * DRAFT_GAP
    short = min(width, height)
    if short < 2 * need:  # JPEG can only scale by 1/2, 1/4, 1/8
        return None
    scale = need / short
    return math.ceil(width * scale), math.ceil(height * scale)


def _upright(im: Image.Image, notes: list[str]) -> Image.Image:
    """Applies the EXIF orientation; unreadable EXIF is ignored (it is only metadata)."""
    try:
        orientation = im.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 - broken metadata must not drop a good image
        return im
    method = _ORIENTATIONS.get(orientation) if isinstance(orientation, int) else None
    if method is None:
        return im
    notes.append("exif_orientation")
    return im.transpose(method)


def normalise_mode(im: Image.Image, channels: int, background: tuple[int, int, int],
                   notes: list[str] | None = None) -> Image.Image:
    """Any decoded mode -> 8-bit 'L' (channels 1) or 'RGB' (3): bilevel, 16-bit, palette, CMYK
    and other colour spaces converted, transparency composited onto `background`; what was
    done is appended to `notes`. Raises Skip for a mode that cannot be converted. Also what
    projection targets go through, so a target looks as the training images did."""
    notes = [] if notes is None else notes
    mode = im.mode
    if mode == "1":
        im = im.convert("L")
        notes.append("bilevel_to_gray")
    elif mode in SIXTEEN_BIT_MODES:
        im = sixteen_bit_to_8bit(im)
        notes.append("16bit_to_8bit")
    elif mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info
        im = im.convert("RGBA" if has_alpha else "RGB")
        notes.append("palette_to_rgb")
    elif mode == "CMYK":
        im = _cmyk_to_rgb(im)
        notes.append("cmyk_to_rgb")
    elif mode in _OTHER_COLOR_SPACES:
        im = im.convert("RGB")
        notes.append("color_space_to_rgb")
    elif mode == "RGBX":
        im = im.convert("RGB")
    elif mode in ("RGBa", "La"):  # premultiplied alpha
        im = im.convert(mode[:-1] + "A")
    if im.mode in ("RGBA", "LA"):
        im = _flatten(im, background, notes)
    if im.mode not in ("L", "RGB"):
        raise Skip("unsupported_mode", f"pixel mode {mode!r} cannot be converted")
    if channels == 3 and im.mode == "L":
        im = im.convert("RGB")
        notes.append("gray_to_rgb")
    elif channels == 1 and im.mode == "RGB":
        im = im.convert("L")
        notes.append("rgb_to_gray")
    return im


def _cmyk_to_rgb(im: Image.Image) -> Image.Image:
    """Uses the embedded ICC profile when there is one (print files), else Pillow's formula."""
    icc = im.info.get("icc_profile")
    if icc:
        try:
            from PIL import ImageCms  # optional in Pillow builds without LittleCMS
        except ImportError:
            return im.convert("RGB")
        try:
            profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(
                im, profile, ImageCms.createProfile("sRGB"), outputMode="RGB"
            )
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass
    return im.convert("RGB")


def _background(mode: str, rgb: tuple[int, int, int]) -> int | tuple[int, int, int]:
    if mode == "L":
        gray = Image.new("RGB", (1, 1), rgb).convert("L").getpixel((0, 0))
        return int(gray)  # type: ignore[arg-type]
    return rgb


def _flatten(im: Image.Image, background: tuple[int, int, int],
             notes: list[str]) -> Image.Image:
    """Composites onto `background`; an alpha channel that is fully opaque is just dropped."""
    color_mode = im.mode[:-1]
    alpha = im.getchannel("A")
    color = im.convert(color_mode)
    if alpha.getextrema()[0] == 255:
        return color
    out = Image.new(color_mode, im.size, _background(color_mode, background))
    out.paste(color, mask=alpha)
    notes.append("alpha_flattened")
    return out


def _fit(im: Image.Image, options: PrepareOptions, notes: list[str]) -> Image.Image:
    """Crops/pads per --transform and resizes to the output size."""
    target_w, target_h = options.size
    width, height = im.size
    box = (0, 0, width, height)
    if options.transform == "stretch":
        size = (target_w, target_h)
        upscale = target_w > width or target_h > height
    elif options.transform == "pad":
        scale = min(target_w / width, target_h / height)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        upscale = scale > 1
    else:  # center-crop, center-crop-wide: the largest centred box of the target's aspect
        if width * target_h >= height * target_w:
            crop_w, crop_h = min(width, round(height * target_w / target_h)), height
        else:
            crop_w, crop_h = width, min(height, round(width * target_h / target_w))
        left, top = (width - crop_w) // 2, (height - crop_h) // 2
        box = (left, top, left + crop_w, top + crop_h)
        size = (target_w, target_h)
        upscale = target_w > crop_w or target_h > crop_h
    if upscale:
        if options.small == "skip":
            raise Skip(
                "too_small",
                f"{width}x{height} is smaller than {target_w}x{target_h} (--small skip)",
            )
        notes.append("upscaled")
    resample = (
        Image.Resampling.LANCZOS if options.resize_filter == "lanczos" else Image.Resampling.BOX
    )
    gap = REDUCING_GAP if resample == Image.Resampling.LANCZOS and not upscale else None
    if size != im.size or box != (0, 0, width, height):
        im = im.resize(size, resample, box=box, reducing_gap=gap)
    out_w, out_h = options.output_size
    if im.size == (out_w, out_h):
        return im
    canvas = Image.new(im.mode, (out_w, out_h), _background(im.mode, options.background_rgb))
    canvas.paste(im, ((out_w - im.width) // 2, (out_h - im.height) // 2))
    return canvas
