"""Our stored-deflate PNG writer: Pillow reads back exactly the pixels we wrote."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from sg2_container.data.png import encode_png


@pytest.mark.parametrize("shape", [(7, 5), (16, 16, 3), (1, 33, 3), (64, 64)])
def test_round_trip(shape):
    pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    data = encode_png(pixels)
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG" and im.mode == ("L" if len(shape) == 2 else "RGB")
        assert (np.asarray(im) == pixels).all()
    assert encode_png(pixels) == data


def test_refuses_other_layouts():
    with pytest.raises(ValueError, match="expected uint8"):
        encode_png(np.zeros((4, 4), dtype=np.uint16))
    with pytest.raises(ValueError, match="4 channels"):
        encode_png(np.zeros((4, 4, 4), dtype=np.uint8))
