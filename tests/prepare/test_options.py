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
        ({"width": None, "height": None}, "width/height: none given"),
        ({"width": 300}, "width=300 is not allowed: a power of two >= 4 and <= 16384"),
        ({"height": 2}, "height=2 is not allowed: a power of two"),
        (
            {"width": 256, "height": 128},
            "width 256 and height 128 differ: training needs square images",
        ),
        (
            {"transform": "center-crop-wide", "width": 128, "height": 256},
            "height=256 is not allowed: <= width (128) with center-crop-wide",
        ),
        (
            {"transform": "fit"},
            "transform='fit' is not allowed: one of center-crop, center-crop-wide, pad, stretch",
        ),
        ({"resize_filter": "bicubic"}, "resize_filter='bicubic' is not allowed: one of lanczos, box"),
        ({"channels": 4}, "channels=4 is not allowed: one of 1, 3"),
        ({"background": "pink"}, "background='pink' is not allowed: black, white or a hex colour"),
        ({"small": "crop"}, "small='crop' is not allowed: one of upscale, skip"),
        ({"max_images": 0}, "max_images=0 is not allowed: an integer >= 1"),
        ({"max_pixels": -1}, "max_pixels=-1 is not allowed: an integer >= 1"),
        ({"labels": "csv"}, "labels='csv' is not allowed: one of auto, json, folders, none"),
        ({"workers": 0}, "workers=0 is not allowed: an integer >= 1"),
        ({"dest": "in"}, "dest='in' is not allowed: a path other than --source"),
        ({"dest": "o9.tar"}, "dest='o9.tar' is not allowed: a .zip file or a folder"),
        ({"dest": "out/train.TAR.GZ"}, "dest='out/train.TAR.GZ' is not allowed: a .zip file or"),
        ({"width": 256.0}, "width=256.0 is not allowed: a power of two"),
        ({"workers": True}, "workers=True is not allowed: an integer >= 1"),
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
