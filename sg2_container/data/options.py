"""Options of `sg2 prepare`, validated once so the workers never see a bad value.

Error messages name the option as users type it (`--max-images`), the bad value and what is
allowed, because the same text ends up in a SageMaker job's failure message.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from sg2_container.errors import UserError

TRANSFORMS = ("center-crop", "center-crop-wide", "pad", "stretch")
RESIZE_FILTERS = ("lanczos", "box")
SMALL_POLICIES = ("upscale", "skip")
LABEL_SOURCES = ("auto", "json", "folders", "none")
CHANNELS = (1, 3)
NAMED_COLORS = {"black": (0, 0, 0), "white": (255, 255, 255)}
MIN_SIZE = 4
MAX_SIZE = 16384
# Pillow's own default limit (about 9459 x 9459): large enough for camera photos.
DEFAULT_MAX_PIXELS = 89_478_485


def default_workers() -> int:
    """All cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _fail(flag: str, value: object, allowed: str) -> UserError:
    return UserError(f"{flag}: got {value!r}; {allowed}")


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def parse_color(text: str) -> tuple[int, int, int]:
    """'black', 'white' or '#rrggbb' -> an RGB tuple; raises UserError naming --background."""
    key = text.strip().lower()
    if key in NAMED_COLORS:
        return NAMED_COLORS[key]
    if re.fullmatch(r"#[0-9a-f]{6}", key):
        return (int(key[1:3], 16), int(key[3:5], 16), int(key[5:7], 16))
    raise _fail("--background", text, "allowed: black, white or a hex colour like #808080")


@dataclass(frozen=True, slots=True, kw_only=True)
class PrepareOptions:
    """Everything `sg2 prepare` needs; picklable so it travels to worker processes once."""

    source: str
    dest: str
    width: int | None = None
    height: int | None = None
    allow_non_square: bool = False
    transform: str = "center-crop"
    resize_filter: str = "lanczos"
    channels: int = 3
    background: str = "white"
    small: str = "upscale"
    max_images: int | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    labels: str = "auto"
    workers: int | None = None
    report: str | None = None

    def __post_init__(self) -> None:
        if not self.source:
            raise _fail("--source", self.source, "give a folder, a .zip or a .tar of images")
        if not self.dest:
            raise _fail("--dest", self.dest, "give a .zip file name or a folder")
        if os.path.abspath(self.source) == os.path.abspath(self.dest):
            raise _fail("--dest", self.dest, "must differ from --source")
        if self.width is None and self.height is None:
            raise UserError(
                "--width/--height: none given; give the output size, e.g. --width 256 --height 256"
            )
        for flag, value in (("--width", self.width), ("--height", self.height)):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise _fail(flag, value, "must be an integer")
            if not (_is_power_of_two(value) and MIN_SIZE <= value <= MAX_SIZE):
                raise _fail(
                    flag, value, f"must be a power of two from {MIN_SIZE} to {MAX_SIZE} (e.g. 256)"
                )
        if self.transform not in TRANSFORMS:
            raise _fail("--transform", self.transform, f"allowed: {', '.join(TRANSFORMS)}")
        width, height = self.size
        if self.transform == "center-crop-wide" and height > width:
            raise _fail("--height", height, f"center-crop-wide needs --height <= --width ({width})")
        if width != height and self.transform != "center-crop-wide" and not self.allow_non_square:
            raise UserError(
                f"--width {width} and --height {height} differ: training needs square images; "
                "use --transform center-crop-wide (a wide crop on a square canvas) or pass "
                "--allow-non-square to write non-square images anyway"
            )
        if self.resize_filter not in RESIZE_FILTERS:
            raise _fail(
                "--resize-filter", self.resize_filter, f"allowed: {', '.join(RESIZE_FILTERS)}"
            )
        if self.channels not in CHANNELS:
            raise _fail("--channels", self.channels, "allowed: 1 (grayscale) or 3 (RGB)")
        parse_color(self.background)
        if self.small not in SMALL_POLICIES:
            raise _fail("--small", self.small, f"allowed: {', '.join(SMALL_POLICIES)}")
        if self.max_images is not None and (
            isinstance(self.max_images, bool)
            or not isinstance(self.max_images, int)
            or self.max_images < 1
        ):
            raise _fail("--max-images", self.max_images, "must be a positive integer (or unset)")
        if (
            isinstance(self.max_pixels, bool)
            or not isinstance(self.max_pixels, int)
            or (self.max_pixels < 1)
        ):
            raise _fail("--max-pixels", self.max_pixels, "must be a positive integer")
        if self.labels not in LABEL_SOURCES:
            raise _fail("--labels", self.labels, f"allowed: {', '.join(LABEL_SOURCES)}")
        if self.workers is not None and (
            isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1
        ):
            raise _fail(
                "--workers", self.workers, "must be a positive integer (or unset: all cores)"
            )

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
