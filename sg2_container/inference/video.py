"""Frames -> MP4 (H.264 through the ffmpeg binary that imageio-ffmpeg ships) or GIF (Pillow).

The one video writer of the project: projection videos and interpolation walks use it.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from sg2_container.errors import UserError
from sg2_container.io.atomic import commit, fsync_file, remove_stale_temp_files, temp_path


def write_video(frames: Iterable[np.ndarray], path: Path, fps: float = 30.0) -> Path:
    """Writes uint8 [H, W, C] frames (C = 1 or 3) to `path`; the suffix (.mp4 or .gif) picks
    the format. Written under io.atomic's temporary name and renamed, so a stopped job leaves no
    torn file; what a killed writer left for `path` is removed first."""
    suffix = path.suffix.lower()
    if suffix not in (".mp4", ".gif"):
        raise UserError(f"video {path.name}: use a .mp4 or .gif name")
    remove_stale_temp_files(path.parent, destinations=[path.name])
    tmp = temp_path(path, keep_suffix=True)
    try:
        if suffix == ".mp4":
            _write_mp4(frames, tmp, fps)
        else:
            _write_gif(frames, tmp, fps)
        fsync_file(tmp)
        return commit(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _rgb(frame: np.ndarray) -> np.ndarray:
    return np.repeat(frame, 3, axis=2) if frame.shape[2] == 1 else frame


def _write_mp4(frames: Iterable[np.ndarray], path: Path, fps: float) -> None:
    import imageio.v2 as imageio

    # macro_block_size=1 keeps odd sizes as they are; yuv420p plays everywhere.
    writer = imageio.get_writer(path, format="FFMPEG", mode="I", fps=fps, codec="libx264",
                                quality=8, macro_block_size=1, pixelformat="yuv420p")
    # Closed however the frames end: imageio's `with` leaves the writer open on an error (a
    # stopped projection), and ffmpeg would then go on writing the file after it was removed.
    try:
        for frame in frames:
            writer.append_data(_rgb(frame))
    except BaseException:
        try:
            writer.close()
        except Exception:  # the frames' error is the one to report
            pass
        raise
    writer.close()


def _write_gif(frames: Iterable[np.ndarray], path: Path, fps: float) -> None:
    import PIL.Image

    images = [PIL.Image.fromarray(_rgb(frame)) for frame in frames]
    if not images:
        raise UserError(f"video {path.name}: no frames")
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], loop=0,
                   duration=max(int(round(1000 / fps)), 20))
