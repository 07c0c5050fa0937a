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
    import subprocess

    import imageio_ffmpeg

    mp4 = write_video(_frames(), tmp_path / "walk.mp4", fps=10)
    gif = write_video(_frames(), tmp_path / "walk.gif", fps=10)
    # Decoded by the same bundled ffmpeg, to raw RGB (a finished subprocess leaves nothing open).
    raw = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", str(mp4),
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True).stdout
    read = np.frombuffer(raw, np.uint8).reshape(-1, 16, 16, 3)
    assert len(read) == 6
    assert abs(float(read[-1].mean()) - 200) < 12  # the last frame is almost all lit
    assert float(read[0].mean()) < float(read[-1].mean())
    from PIL import Image

    with Image.open(gif) as image:
        assert image.n_frames == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["walk.gif", "walk.mp4"]


def test_unknown_suffix_is_refused(tmp_path):
    with pytest.raises(UserError, match="use a .mp4 or .gif name"):
        write_video(_frames(), tmp_path / "walk.avi")


def test_a_failing_frame_source_leaves_no_file(tmp_path):
    def frames():
        yield from _frames(count=2)
        raise RuntimeError("render failed")

    for name in ("walk.mp4", "walk.gif"):
        with pytest.raises(RuntimeError, match="render failed"):
            write_video(frames(), tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_what_a_killed_writer_left_for_the_same_video_is_removed(tmp_path):
    from sg2_container.io.atomic import temp_path

    left = temp_path(tmp_path / "walk.mp4", keep_suffix=True)
    other = temp_path(tmp_path / "proj.mp4", keep_suffix=True)
    for path in (left, other):
        path.write_bytes(b"half a video")
    write_video(_frames(), tmp_path / "walk.mp4", fps=10)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([other.name, "walk.mp4"])


def test_a_writer_failing_to_close_does_not_leave_the_others_running(tmp_path, monkeypatch):
    """gif then mp4: the GIF's save fails (a full disk here); the MP4's ffmpeg is ended too and
    nothing is left in the folder."""
    from sg2_container.inference import video

    aborted = []
    def full_disk(self):
        raise OSError(28, "full")

    monkeypatch.setattr(video._Gif, "close", full_disk)
    original_abort = video._Mp4.abort
    monkeypatch.setattr(video._Mp4, "abort",
                        lambda self: aborted.append(self) or original_abort(self))
    with pytest.raises(OSError, match="full"):
        video.write_videos(_frames(), [tmp_path / "walk.gif", tmp_path / "walk.mp4"], fps=10)
    assert len(aborted) == 1 and aborted[0].writer.closed
    assert list(tmp_path.iterdir()) == []
