"""Options of `sg2 prepare`, validated once so the workers never see a bad value.

Declared with the option schema: the `sg2 prepare` options and the processing job's arguments
are generated from these fields.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from sg2_container.errors import UserError
from sg2_container.io.cores import usable_cores
from sg2_container.options.schema import fail, option, validate

TRANSFORMS = ("center-crop", "center-crop-wide", "pad", "stretch")
RESIZE_FILTERS = ("lanczos", "box")
SMALL_POLICIES = ("upscale", "skip")
LABEL_SOURCES = ("auto", "json", "folders", "none")
CHANNELS = (1, 3)
NAMED_COLORS = {"black": (0, 0, 0), "white": (255, 255, 255)}
# Archive names --dest refuses: only .zip is written, and any other name is taken as a folder.
NOT_WRITTEN_ARCHIVES = (".tar", ".tgz", ".gz", ".bz2", ".tbz", ".tbz2", ".xz", ".txz", ".zst",
                        ".7z", ".rar")
MIN_SIZE = 4
MAX_SIZE = 16384
# Pillow's own default limit (about 9459 x 9459): large enough for camera photos.
DEFAULT_MAX_PIXELS = 89_478_485


def default_workers() -> int:
    """One worker per core this process may run on."""
    return usable_cores()


def parse_color(text: str) -> tuple[int, int, int]:
    """'black', 'white' or '#rrggbb' -> an RGB tuple; raises UserError naming background."""
    key = text.strip().lower()
    if key in NAMED_COLORS:
        return NAMED_COLORS[key]
    if re.fullmatch(r"#[0-9a-f]{6}", key):
        return (int(key[1:3], 16), int(key[3:5], 16), int(key[5:7], 16))
    raise fail("background", text, "black, white or a hex colour like #808080")


@dataclass(frozen=True, slots=True, kw_only=True)
class PrepareOptions:
    """Everything `sg2 prepare` needs; picklable so it travels to worker processes once."""

    source: str = option(metavar="PATH", help=(
        "Images to prepare: a folder (searched recursively), a .zip, or a .tar (also .tar.gz, "
        ".tar.bz2, .tar.xz). PNG, JPEG, WebP, BMP and GIF (first frame) are read; anything else "
        "is skipped and counted."))
    dest: str = option(metavar="PATH", help=(
        "Output: a .zip name (the training zip), or a folder with the same layout (new, empty or "
        "an earlier output). Written under a temporary name and swapped in at the end."))
    width: int | None = option(None, min=MIN_SIZE, max=MAX_SIZE, power_of_two=True,
                               help="Output width in pixels. Alone, it sets the height too.")
    height: int | None = option(None, min=MIN_SIZE, max=MAX_SIZE, power_of_two=True,
                                help="Output height in pixels. Alone, it sets the width too.")
    allow_non_square: bool = option(False, is_flag=True, help=(
        "Allow --width != --height without center-crop-wide. Training needs square images."))
    transform: str = option("center-crop", choices=TRANSFORMS, help=(
        "center-crop: largest centred crop of the output aspect, then resize. center-crop-wide: "
        "crop to width:height, resize, paste centred on a width x width canvas. pad: fit the "
        "whole image, fill the rest with --background. stretch: resize ignoring the aspect "
        "ratio."))
    resize_filter: str = option("lanczos", choices=RESIZE_FILTERS,
                                help="Resampling filter for the resize.")
    channels: int = option(3, choices=CHANNELS, help=(
        "3 writes RGB (grayscale is copied to three channels), 1 writes grayscale."))
    background: str = option("white", help=(
        "Colour under transparent pixels and around padded images: black, white or #rrggbb."))
    small: str = option("upscale", choices=SMALL_POLICIES, help=(
        "Images smaller than the output: enlarge them, or skip them (counted in the report)."))
    max_images: int | None = option(None, min=1, default_text="all", help=(
        "Stop after writing this many images (taken in sorted name order)."))
    max_pixels: int = option(DEFAULT_MAX_PIXELS, min=1, help=(
        "Skip images with more pixels than this (decompression-bomb guard)."))
    labels: str = option("auto", choices=LABEL_SOURCES, help=(
        'json: from dataset.json at the top of --source ({"labels": [["dir/a.png", 6], ...]}). '
        "folders: one class per top-level sub-folder, in sorted name order. auto: json if "
        "dataset.json exists, else none. Files without a label are skipped."))
    workers: int | None = option(None, min=1, default_text="all cores",
                                 help="Worker processes for decoding and resizing.")
    report: str | None = option(None, metavar="PATH", default_text=(
        "prepare_report.json beside the zip, or inside the output folder"),
        help="Where to write the JSON report.")

    def __post_init__(self) -> None:
        validate(self)
        if not self.source:
            raise fail("source", self.source, "a folder, a .zip or a .tar of images")
        if not self.dest:
            raise fail("dest", self.dest, "a .zip file name or a folder")
        if self.dest.lower().endswith(NOT_WRITTEN_ARCHIVES):
            raise fail("dest", self.dest, "a .zip file or a folder (other archives are not "
                       "written: the name would become a folder)")
        if os.path.abspath(self.source) == os.path.abspath(self.dest):
            raise fail("dest", self.dest, "a path other than --source")
        if self.width is None and self.height is None:
            raise UserError(
                "width/height: none given; give the output size, e.g. --width 256 --height 256"
            )
        width, height = self.size
        if self.transform == "center-crop-wide" and height > width:
            raise fail("height", height, f"<= width ({width}) with center-crop-wide")
        if width != height and self.transform != "center-crop-wide" and not self.allow_non_square:
            raise UserError(
                f"width {width} and height {height} differ: training needs square images; "
                "use --transform center-crop-wide (a wide crop on a square canvas) or pass "
                "--allow-non-square to write non-square images anyway"
            )
        parse_color(self.background)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the resized content; a missing side copies the other."""
        width = self.width if self.width is not None else self.height
        height = self.height if self.height is not None else self.width
        assert width is not None and height is not None  # checked in __post_init__
        return width, height

    @property
    def output_size(self) -> tuple[int, int]:
        """(width, height) of the written PNGs: center-crop-wide pastes onto a square canvas."""
        width, height = self.size
        return (width, width) if self.transform == "center-crop-wide" else (width, height)

    @property
    def background_rgb(self) -> tuple[int, int, int]:
        return parse_color(self.background)

    @property
    def num_workers(self) -> int:
        return self.workers if self.workers is not None else default_workers()

    @property
    def dest_is_zip(self) -> bool:
        return self.dest.lower().endswith(".zip")
