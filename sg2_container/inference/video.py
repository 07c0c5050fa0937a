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
    return write_videos(frames, [path], fps)[0]


def write_videos(frames: Iterable[np.ndarray], paths: list[Path], fps: float = 30.0,
                 ) -> list[Path]:
    """write_video to several files in one pass over the frames (rendered once): an MP4 streams
    its frames to ffmpeg; a GIF keeps them, palettised (1 byte a pixel), until it is saved."""
    for path in paths:
        if path.suffix.lower() not in (".mp4", ".gif"):
            raise UserError(f"video {path.name}: use a .mp4 or .gif name")
        remove_stale_temp_files(path.parent, destinations=[path.name])
    temps = [temp_path(path, keep_suffix=True) for path in paths]
    writers = [(_Mp4 if path.suffix.lower() == ".mp4" else _Gif)(tmp, fps)
               for path, tmp in zip(paths, temps)]
    try:
        try:
            for frame in frames:
                for writer in writers:
                    writer.append(frame)
        except BaseException:
            for writer in writers:
                writer.abort()
            raise
        for index, writer in enumerate(writers):
            try:
                writer.close()
            except BaseException:  # the others are not left running (ffmpeg) or holding frames
                for other in writers[index + 1:]:
                    other.abort()
                raise
        for tmp in temps:
            fsync_file(tmp)
        return [commit(tmp, path) for tmp, path in zip(temps, paths)]
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)


def _rgb(frame: np.ndarray) -> np.ndarray:
    return np.repeat(frame, 3, axis=2) if frame.shape[2] == 1 else frame


class _Mp4:
    """H.264 through imageio's ffmpeg, fed frame by frame."""

    def __init__(self, path: Path, fps: float):
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401  (imageio's loader drops this ImportError's name)

        # macro_block_size=1 keeps odd sizes as they are; yuv420p plays everywhere.
        self.writer = imageio.get_writer(path, format="FFMPEG", mode="I", fps=fps,
                                         codec="libx264", quality=8, macro_block_size=1,
                                         pixelformat="yuv420p")

    def append(self, frame: np.ndarray) -> None:
        self.writer.append_data(_rgb(frame))

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        # Closed however the frames end: imageio's `with` leaves the writer open on an error (a
        # stopped projection), and ffmpeg would then go on writing the file after it was removed.
        try:
            self.writer.close()
        except Exception:  # the frames' error is the one to report
            pass


class _Gif:
    """Pillow's GIF writer saves all frames at once; they are kept palettised as Pillow's own
    save would convert them (an adaptive palette per frame), so the file is the same."""

    def __init__(self, path: Path, fps: float):
        self.path, self.fps, self.images = path, fps, []

    def append(self, frame: np.ndarray) -> None:
        import PIL.Image

        self.images.append(PIL.Image.fromarray(_rgb(frame)).convert(
            "P", palette=PIL.Image.Palette.ADAPTIVE))

    def close(self) -> None:
        if not self.images:
            raise UserError(f"video {self.path.name}: no frames")
        self.images[0].save(self.path, format="GIF", save_all=True, append_images=self.images[1:],
                            loop=0, duration=max(int(round(1000 / self.fps)), 20))

    def abort(self) -> None:
        self.images = []
