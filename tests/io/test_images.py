"""The one image-grid writer: tiling order, padding, channels, and the PNG it writes."""
import numpy as np
import pytest
import torch
from PIL import Image

from sg2_container.io.images import tile, to_uint8, write_grid, write_png


def _images(count, channels, size=4):
    return np.stack([np.full([size, size, channels], 10 * (i + 1), dtype=np.uint8)
                     for i in range(count)])


def test_grid_is_row_major_with_black_padding(tmp_path):
    path = write_grid(_images(5, 3), tmp_path / "grid.png", columns=3)
    pixels = np.asarray(Image.open(path))
    assert pixels.shape == (8, 12, 3)
    assert [pixels[0, 0, 0], pixels[0, 4, 0], pixels[0, 8, 0], pixels[4, 0, 0], pixels[4, 4, 0]] == [
        10, 20, 30, 40, 50]
    assert not pixels[4:, 8:].any()


def test_default_columns_make_a_square_and_gray_stays_gray(tmp_path):
    path = write_grid(_images(4, 1), tmp_path / "gray.png")
    with Image.open(path) as image:
        assert image.mode == "L" and image.size == (8, 8)


def test_bad_arrays_are_named(tmp_path):
    with pytest.raises(ValueError, match="1 to 4 channels"):
        write_png(np.zeros([4, 4, 5], dtype=np.uint8), tmp_path / "x.png")
    with Image.open(write_png(np.zeros([4, 4, 4], dtype=np.uint8), tmp_path / "a.png")) as image:
        assert image.mode == "RGBA"  # a 4-channel model's images
    with pytest.raises(ValueError, match="columns"):
        tile(_images(2, 3), 0)


def test_network_output_maps_to_pixels_like_the_reference():
    images = torch.tensor([-1.0, -0.5, 0.0, 0.999, 2.0]).reshape(1, 1, 1, 5)
    assert to_uint8(images).tolist() == [[[[0], [64], [128], [255], [255]]]]
