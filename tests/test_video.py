"""The one video writer: MP4 through imageio's ffmpeg, GIF through Pillow; frames read back."""
import numpy as np
import pytest

from sg2_container.errors import UserError
from sg2_container.inference.video import write_video


def _frames(count=6, size=16):
    for i in range(count):
        frame = np.zeros([size, size, 3], np.uint8)
        frame[:, : (i + 1) * size // count] = 200
        yield frame


def test_mp4_and_gif_hold_the_frames(tmp_path):
    import imageio.v2 as imageio

    mp4 = write_video(_frames(), tmp_path / "walk.mp4", fps=10)
    gif = write_video(_frames(), tmp_path / "walk.gif", fps=10)
    read = [frame for frame in imageio.get_reader(mp4)]
    assert len(read) == 6 and read[0].shape == (16, 16, 3)
    assert abs(float(read[-1].mean()) - 200) < 12  # the last frame is almost all lit
    from PIL import Image

    with Image.open(gif) as image:
        assert image.n_frames == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["walk.gif", "walk.mp4"]


def test_unknown_suffix_is_refused(tmp_path):
    with pytest.raises(UserError, match="use a .mp4 or .gif name"):
        write_video(_frames(), tmp_path / "walk.avi")
