"""PrepareOptions: each bad value is refused once, with the flag, the value and what is allowed."""

from __future__ import annotations

from multiprocessing.reduction import ForkingPickler

import pytest

from sg2_container.data.options import PrepareOptions
from sg2_container.errors import UserError

GOOD = {"source": "in", "dest": "out.zip", "width": 256, "height": 256}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"width": None, "height": None}, "--width/--height: none given"),
        ({"width": 300}, "--width: got 300; must be a power of two from 4 to 16384 (e.g. 256)"),
        ({"height": 2}, "--height: got 2; must be a power of two"),
        (
            {"width": 256, "height": 128},
            "--width 256 and --height 128 differ: training needs square images",
        ),
        (
            {"transform": "center-crop-wide", "width": 128, "height": 256},
            "--height: got 256; center-crop-wide needs --height <= --width (128)",
        ),
        (
            {"transform": "fit"},
            "--transform: got 'fit'; allowed: center-crop, center-crop-wide, pad, stretch",
        ),
        ({"resize_filter": "bicubic"}, "--resize-filter: got 'bicubic'; allowed: lanczos, box"),
        ({"channels": 4}, "--channels: got 4; allowed: 1 (grayscale) or 3 (RGB)"),
        ({"background": "pink"}, "--background: got 'pink'; allowed: black, white or a hex colour"),
        ({"small": "crop"}, "--small: got 'crop'; allowed: upscale, skip"),
        ({"max_images": 0}, "--max-images: got 0; must be a positive integer"),
        ({"max_pixels": -1}, "--max-pixels: got -1; must be a positive integer"),
        ({"labels": "csv"}, "--labels: got 'csv'; allowed: auto, json, folders, none"),
        ({"workers": 0}, "--workers: got 0; must be a positive integer"),
        ({"dest": "in"}, "--dest: got 'in'; must differ from --source"),
    ],
)
def test_bad_values_name_flag_value_and_allowed(change, message):
    with pytest.raises(UserError) as info:
        PrepareOptions(**{**GOOD, **change})
    assert str(info.value).startswith(message)


def test_derived_values():
    options = PrepareOptions(source="in", dest="OUT.ZIP", width=64, background="#ff8000", workers=3)
    assert options.size == (64, 64) and options.output_size == (64, 64)
    assert options.background_rgb == (255, 128, 0) and options.num_workers == 3
    assert options.dest_is_zip
    wide = PrepareOptions(**{**GOOD, "height": 128, "transform": "center-crop-wide"})
    assert wide.size == (256, 128) and wide.output_size == (256, 256)
    free = PrepareOptions(**{**GOOD, "height": 128, "allow_non_square": True})
    assert free.output_size == (256, 128)
    assert ForkingPickler.loads(ForkingPickler.dumps(options)) == options  # travels to worker processes
