"""Options of the rendering commands (generate, style-mix, interpolate), declared once with the
option schema: the `sg2` flags, the batch job's request fields and their checks all come from
these fields. Torch-free, so the CLI can build its options without loading torch.
"""
from __future__ import annotations

import dataclasses

from sg2_container.errors import UserError
from sg2_container.inference.seeds import DEFAULT_MAX_SEEDS
from sg2_container.options.choices import NOISE_MODES
from sg2_container.options.schema import fail, option, validate

# float32: the reference's numbers. bfloat16 (opt-in): convs and matmuls under bf16 autocast,
# 1.3x the images/s of today's float32 path (whose 3x3 convs run by Winograd) on a CPU with
# AVX512-BF16 (paper256, batch 1; 1.6x before the Winograd convs), at a measured cost of a few
# uint8 levels (docs/benchmarks.md).
PRECISIONS = ("float32", "bfloat16")
INTERPOLATION_KINDS = ("lerp", "slerp")
VIDEO_FORMATS = ("mp4", "gif")
# Frames of one walk: 100,000 is about 55 minutes at 30 fps. A typo such as seeds 0-50000 with
# frames 1000 (50 M frames) would otherwise run for weeks.
MAX_FRAMES = 100_000
# Images of one grid.png (generate --grid; a style-mixing grid's cells, rows x cols): the grid
# holds them all in memory, 3.4 GB at 1024 px for a 32 x 32 style-mixing grid.
MAX_GRID_IMAGES = 1024
_CELLS_NOTE = f" (a style-mixing grid has at most {MAX_GRID_IMAGES} cells, rows x cols)"
# Truncation psi: 1 is none, 0 the average W; further out the images fall apart. One range for
# the commands, the batch job's requests and the endpoint.
TRUNCATION_PSI_RANGE = (-2.0, 2.0)
TRUNCATION_PSI_ALLOWED = (f"a number from {TRUNCATION_PSI_RANGE[0]:g} to "
                          f"{TRUNCATION_PSI_RANGE[1]:g} (1 = no truncation)")

_SEEDS_HELP = "numbers and inclusive ranges, e.g. '0-7' or '1,5,10-12'"
_TRUNC_HELP = ("Truncation psi: 1 = no truncation; lower trades variety for typicality "
               f"({TRUNCATION_PSI_RANGE[0]:g} to {TRUNCATION_PSI_RANGE[1]:g}).")
_NOISE_HELP = "Per-pixel noise: the model's stored maps (const), fresh (random), or none."
_CLASS_HELP = "Class index, required for a conditional network (ignored with a warning otherwise)."
_BATCH_HELP = ("Images rendered per forward pass, a speed setting: with const or no noise an "
               "image stays the same up to a rare one-level rounding difference. The default is "
               "the fastest measured: 8, but 1 on a CPU with --noise-mode random (such a batch "
               "holds every image's activations at once: slower and 5x the memory at 1024 px).")


def truncation_psi_allowed(value) -> bool:
    """A number (not a bool) in TRUNCATION_PSI_RANGE; a comparison alone also refuses NaN and
    infinities, and compares a 400-digit integer exactly (math.isfinite would overflow)."""
    low, high = TRUNCATION_PSI_RANGE
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and low <= value <= high)


def _check_truncation_psi(options) -> None:
    if not truncation_psi_allowed(options.truncation_psi):
        raise fail("truncation_psi", options.truncation_psi, TRUNCATION_PSI_ALLOWED)


def _trunc(note: str = ""):
    return option(1.0, flag="--trunc", help=_TRUNC_HELP + note)


def _class():
    return option(None, flag="--class", min=0, metavar="INT", help=_CLASS_HELP)


def _noise():
    return option("const", choices=NOISE_MODES, help=_NOISE_HELP)


def _batch():
    return option(None, flag="--batch", min=1, default_text="8; 1 on a CPU with random noise",
                  help=_BATCH_HELP)


def walk_length(keys: int, frames: int, loop: bool) -> int:
    """Frames of a walk through `keys` key points, `frames` per step (back to the first when
    looping)."""
    return keys * frames if loop else (keys - 1) * frames + 1


def check_walk_length(keys: int, frames: int, loop: bool, noun: str) -> int:
    """The walk's frame count; a UserError past MAX_FRAMES (`noun`: what the keys are)."""
    total = walk_length(keys, frames, loop)
    if total > MAX_FRAMES:
        raise UserError(f"interpolate: {keys} {noun} x frames={frames} make {total} frames; the "
                        f"limit is {MAX_FRAMES} (use fewer {noun} or frames)")
    return total


def seed_list(field: str, items: tuple, max_seeds: int = DEFAULT_MAX_SEEDS,
              over_the_cap: str = "") -> list[int]:
    """A seed field (text items such as '0-7', or numbers) -> the seeds, checked; past
    `max_seeds`, the message ends with `over_the_cap` (how to raise the cap, where one can)."""
    from sg2_container.inference.seeds import TooManySeeds, parse_seeds

    if not items:
        raise fail(field, items, "at least one seed: " + _SEEDS_HELP)
    try:
        return parse_seeds(",".join(str(item) for item in items), max_seeds)
    except TooManySeeds as error:
        raise UserError(f"{field}: {error}{over_the_cap}") from None
    except UserError as error:
        raise UserError(f"{field}: {error}") from None


def check_grid_size(images: int, grid: bool, what: str) -> None:
    """generate --grid holds every image for grid.png: refused past MAX_GRID_IMAGES."""
    if grid and images > MAX_GRID_IMAGES:
        raise UserError(f"generate --grid: {images} {what}, but grid.png holds at most "
                        f"{MAX_GRID_IMAGES} images (all are kept in memory): drop --grid or "
                        "render fewer")


def default_style_layers(num_ws: int) -> list[int]:
    """The reference's default mixing layers, 0-6 (the coarse styles: pose, shape), cut to the
    layers a small network has (0-5 at 16 px, 0-3 at 8 px): style-mix and the endpoint's mix."""
    return list(range(min(7, num_ws)))


def layer_list(field: str, items: tuple) -> list[int]:
    """Layer indices such as '0-6' or '0,2,4' (same syntax as seeds)."""
    from sg2_container.inference.seeds import parse_seeds

    try:
        return parse_seeds(",".join(str(item) for item in items))
    except UserError:
        raise fail(field, ",".join(map(str, items)),
                   "layer indices and ranges, e.g. '0-6' or '0,2,4'") from None


@dataclasses.dataclass(frozen=True, kw_only=True)
class GenerateOptions:
    """What `sg2 generate` (and a batch job's `generate` request) renders."""

    seeds: tuple[str, ...] = option(("0-7",), metavar="SEEDS",
                                    help="Seeds to render: " + _SEEDS_HELP + ".")
    truncation_psi: float = _trunc()
    class_idx: int | None = _class()
    noise_mode: str = _noise()
    projected_w: str | None = option(None, metavar="FILE", help=(
        "Render the W vectors of a projection's projected_w.npz (key 'w', [n, num_ws, w_dim]) "
        "as projNN.png instead of seeds; --seeds is then ignored."))
    grid: bool = option(False, is_flag=True, help="Also write grid.png with all the images.")
    save_w: bool = option(False, is_flag=True, help=(
        "Also write seedNNNN.npz per seed: its W vectors (key 'w', [1, num_ws, w_dim]), usable "
        "with --projected-w and `sg2 interpolate`."))
    batch_size: int | None = _batch()
    max_seeds: int = option(DEFAULT_MAX_SEEDS, min=1, help=(
        "Refuse --seeds that ask for more images than this (a typo such as 0-99999999 would "
        "otherwise run for days)."))
    precision: str = option("float32", choices=PRECISIONS, help=(
        "float32: the reference's numbers. bfloat16: faster on CPUs with bf16 units, images "
        "differ slightly (see docs/benchmarks.md)."))

    def __post_init__(self) -> None:
        validate(self)
        _check_truncation_psi(self)
        if self.projected_w is None:
            check_grid_size(len(self.seed_values), self.grid, "seeds")

    @property
    def seed_values(self) -> list[int]:
        return seed_list("seeds", self.seeds, self.max_seeds,
                         " (raise max_seeds, --max-seeds, if you mean it)")


@dataclasses.dataclass(frozen=True, kw_only=True)
class StyleMixOptions:
    """What `sg2 style-mix` renders: every row seed with the column seeds' styles."""

    rows: tuple[str, ...] = option(metavar="SEEDS", help=(
        "Row seeds (" + _SEEDS_HELP + "): each row keeps its own styles outside --styles."))
    cols: tuple[str, ...] = option(metavar="SEEDS", help=(
        "Column seeds: their styles replace the row's at the --styles layers."))
    styles: tuple[str, ...] = option((), metavar="LAYERS", help=(
        "Layer indices (of the ws) taken from the column seed, e.g. '0-6' (coarse: pose, shape) "
        "or '8-13' (fine: colours). Default: 0-6, cut to the network's layers (0-5 at 16 px)."))
    truncation_psi: float = _trunc()
    class_idx: int | None = _class()
    noise_mode: str = _noise()
    batch_size: int | None = _batch()

    def __post_init__(self) -> None:
        validate(self)
        _check_truncation_psi(self)
        cells = len(self.row_seeds) * len(self.col_seeds)
        if cells > MAX_GRID_IMAGES:
            raise UserError(f"style-mix: rows x cols = {cells} cells; the limit is "
                            f"{MAX_GRID_IMAGES} (e.g. 32 x 32): use fewer row or column seeds")
        if self.styles:
            layer_list("styles", self.styles)

    @property
    def row_seeds(self) -> list[int]:
        return seed_list("rows", self.rows, MAX_GRID_IMAGES, _CELLS_NOTE)

    @property
    def col_seeds(self) -> list[int]:
        return seed_list("cols", self.cols, MAX_GRID_IMAGES, _CELLS_NOTE)

    def style_layers(self, num_ws: int) -> list[int]:
        """The --styles layers, or the default ones for a network with num_ws ws."""
        return layer_list("styles", self.styles) if self.styles else default_style_layers(num_ws)


@dataclasses.dataclass(frozen=True, kw_only=True)
class InterpolateOptions:
    """A walk through W between key points: seeds first, then projected W files, in order."""

    seeds: tuple[str, ...] = option((), metavar="SEEDS", help=(
        "Seeds to walk through, in order (" + _SEEDS_HELP + ")."))
    projected_w: tuple[str, ...] = option((), metavar="FILE", help=(
        "W files to walk through after the seeds (a projection's projected_w.npz or a "
        "`generate --save-w` file; every W vector in the file is a key point); repeatable."))
    kind: str = option("lerp", choices=INTERPOLATION_KINDS, help=(
        "lerp: straight lines in W; slerp: along the great circle (per layer), keeping norms."))
    frames: int = option(30, min=1, max=10000, help="Frames per segment between two key points.")
    loop: bool = option(False, is_flag=True, help="Walk back from the last key point to the first.")
    fps: float = option(30.0, min=1, max=120, help="Frames per second of the video.")
    formats: tuple[str, ...] = option(("mp4",), flag="--format", choices=VIDEO_FORMATS,
                                      help="Video formats to write, comma-separated.")
    sheet_frames: int = option(16, min=1, max=1024, help=(
        "Frames shown on the contact sheet (walk-sheet.png), evenly spread over the walk."))
    truncation_psi: float = _trunc(" (seeds only)")
    class_idx: int | None = _class()
    noise_mode: str = _noise()
    batch_size: int | None = _batch()

    def __post_init__(self) -> None:
        validate(self)
        _check_truncation_psi(self)
        if self.seeds:
            check_walk_length(len(self.seed_values), self.frames, self.loop, "seeds")
        if not self.formats:
            raise fail("formats", self.formats, "one or more of " + ", ".join(VIDEO_FORMATS))
        if not self.seeds and not self.projected_w:
            raise UserError("interpolate: no key points; give --seeds (e.g. '1,5,9') and/or "
                            "--projected-w FILE")

    @property
    def seed_values(self) -> list[int]:
        return seed_list("seeds", self.seeds, MAX_FRAMES,
                         f" (a walk has at most {MAX_FRAMES} frames)") if self.seeds else []
