"""Writing frames to video files: H.264 MP4 and GIF, whole or streamed chunk by chunk.

Frames are ``(T, H, W, 3)`` uint8 RGB numpy arrays, as :mod:`reelm.data.video_read`
returns them. :func:`write_video` writes a whole clip; :func:`open_video` takes a long one
chunk by chunk (memory does not grow with its length). Every write goes through
:mod:`reelm.core.atomic` (a hidden temporary file renamed into place once complete), so a failed
or killed write leaves neither a half-written video nor the temporary file behind; failures
are :class:`VideoWriteError`.
"""

from __future__ import annotations

import contextlib
import functools
import numbers
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import av
import numpy as np
from PIL import Image

from reelm.core import atomic
from reelm.core.atomic import output_folder
from reelm.core.errors import ReelmError


class VideoWriteError(ReelmError):
    """A video that cannot be written: bad frames, bad fps, unknown suffix, unwritable folder."""


atomic_write = functools.partial(atomic.atomic_write, error=VideoWriteError)  # videos and pictures fail as such


@dataclass(frozen=True)
class _Format:
    container: str
    codec: str
    pix_fmt: str
    even: bool  # yuv420p needs even heights and widths
    palette: bool  # one 256-color palette per frame (GIF)


FORMATS = {
    ".mp4": _Format("mp4", "libx264", "yuv420p", even=True, palette=False),
    ".gif": _Format("gif", "gif", "pal8", even=False, palette=True),
}


class VideoStream:
    """A video being written chunk by chunk (from :func:`open_video`): :meth:`write` frames as they come."""

    def __init__(self, path: Path, container, fmt: _Format, rate: Fraction, options: dict[str, str]):
        self.path, self._container, self._fmt, self._rate, self._options = path, container, fmt, rate, options
        self._stream = None
        self.frames = 0
        self.shape: tuple[int, int] | None = None  # (H, W) of the frames given

    def write(self, frames: np.ndarray) -> None:
        """Append ``(T, H, W, 3)`` (or one ``(H, W, 3)``) uint8 frames, the size of the first ones."""
        frames = np.asarray(frames)
        frames = _check_frames(frames[None] if frames.ndim == 3 else frames, self.path)
        if self.shape is None:
            self.shape = frames.shape[1:3]
        elif frames.shape[1:3] != self.shape:
            raise VideoWriteError(f"{self.path}: frames of {frames.shape[1]}x{frames.shape[2]} after frames of "
                                  f"{self.shape[0]}x{self.shape[1]}")
        if self._fmt.even:
            frames = pad_to_even(frames)  # (T, H', W', 3), H' and W' even
        try:
            if self._stream is None:
                self._stream = self._container.add_stream(self._fmt.codec, rate=self._rate)
                self._stream.height, self._stream.width = frames.shape[1:3]
                self._stream.pix_fmt = self._fmt.pix_fmt
                self._stream.options = self._options
            for frame in frames:
                picture = (av.VideoFrame.from_ndarray(_palettize(frame), format="pal8") if self._fmt.palette
                           else av.VideoFrame.from_ndarray(frame, format="rgb24"))
                self._container.mux(self._stream.encode(picture))
        except ReelmError:
            raise
        except Exception as exc:
            raise VideoWriteError(f"{self.path}: writing failed ({atomic.describe_error(exc)})") from exc
        self.frames += len(frames)

    def _finish(self) -> None:
        if self._stream is None:
            raise VideoWriteError(f"{self.path}: no frames were written")
        try:
            self._container.mux(self._stream.encode(None))
        except Exception as exc:
            raise VideoWriteError(f"{self.path}: writing failed ({atomic.describe_error(exc)})") from exc


@contextlib.contextmanager
def open_video(path: str | Path, fps: float, *, kind: str | None = None, crf: int = 18) -> Iterator[VideoStream]:
    """A video file (``.mp4``: H.264 yuv420p; ``.gif``) written frame chunk by frame chunk, atomically.

    The format follows the suffix of ``path`` (or ``kind``, e.g. ``".mp4"``). The video appears
    at ``path`` when the ``with`` block ends; if the block raises, nothing appears (and a
    previous file at ``path`` stays). Memory does not grow with the length.
    """
    path = Path(path)
    fmt = FORMATS.get(kind or path.suffix.lower())
    if fmt is None:
        raise VideoWriteError(f"{path}: cannot write {path.suffix or 'no suffix'!r} files; "
                              f"name it {' or '.join(sorted(FORMATS))}")
    rate = _check_fps(fps, path)
    options = {"crf": str(crf), "preset": "medium"} if fmt.codec == "libx264" else {}
    with atomic.atomic_file(path, error=VideoWriteError) as tmp:
        try:
            container = av.open(str(tmp), mode="w", format=fmt.container)
        except Exception as exc:
            raise VideoWriteError(f"{path}: cannot write ({atomic.describe_error(exc)})") from exc
        stream = VideoStream(path, container, fmt, rate, options)
        try:
            yield stream
            stream._finish()
        finally:
            try:
                container.close()
            except Exception as exc:  # the trailer (MP4 index) is written on close
                if sys.exc_info()[0] is None:
                    raise VideoWriteError(f"{path}: writing failed ({atomic.describe_error(exc)})") from exc


def write_mp4(path: str | Path, frames: np.ndarray, fps: float, *, crf: int = 18) -> Path:
    """Encode ``frames`` ``(T, H, W, 3)`` uint8 as H.264 (libx264, yuv420p) MP4.

    Odd heights/widths are made even by repeating the last row/column, since yuv420p
    needs even dimensions; the written video is then ``(T, H + H % 2, W + W % 2)``.
    """
    return _write_whole(path, ".mp4", frames, fps, crf=crf)


def write_gif(path: str | Path, frames: np.ndarray, fps: float) -> Path:
    """Write ``frames`` ``(T, H, W, 3)`` uint8 as a looping animated GIF.

    Each frame gets its own 256-color median-cut palette (no dithering). GIF stores delays
    in centiseconds, so frame times are rounded to 1/100 s (30 fps plays as 3 and 4 cs delays).
    Every frame is kept, repeated ones included.
    """
    return _write_whole(path, ".gif", frames, fps)


def _write_whole(path: str | Path, kind: str, frames: np.ndarray, fps: float, **options) -> Path:
    path = Path(path)
    frames = _check_frames(frames, path)
    with open_video(path, fps, kind=kind, **options) as video:
        video.write(frames)
    return path


def _palettize(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(H, W, 3)`` RGB -> ``(H, W)`` palette indices and the ``(256, 4)`` ARGB palette PyAV's pal8 takes."""
    image = Image.fromarray(frame).quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    colors = np.asarray(image.getpalette(), dtype=np.uint8).reshape(-1, 3)[:256]  # (N, 3)
    palette = np.zeros((256, 4), np.uint8)
    palette[:, 0] = 255
    palette[: len(colors), 1:] = colors
    return np.asarray(image), palette


WRITERS: dict[str, Callable[..., Path]] = {".mp4": write_mp4, ".gif": write_gif}


def write_video(path: str | Path, frames: np.ndarray, fps: float) -> Path:
    """Write ``frames`` with the writer the suffix of ``path`` names (``.mp4`` or ``.gif``)."""
    path = Path(path)
    writer = WRITERS.get(path.suffix.lower())
    if writer is None:
        suffix = path.suffix or "no suffix"
        raise VideoWriteError(f"{path}: cannot write {suffix!r} files; use one of {sorted(WRITERS)}")
    return writer(path, frames, fps)


def check_video_path(path: str | Path) -> Path:
    """``path`` if a video can be written there (a known suffix; its folder is made if missing): checked before any work."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise VideoWriteError(f"{path}: cannot write {path.suffix or 'files without a suffix'!r}; "
                              f"name the output {' or '.join(sorted(FORMATS))}")
    if path.is_dir():
        raise VideoWriteError(f"{path}: is a folder; name a video file")
    output_folder(path, error=VideoWriteError)
    return path


def pad_to_even(frames: np.ndarray) -> np.ndarray:
    """``(T, H, W, C)`` -> ``(T, H + H % 2, W + W % 2, C)`` by repeating the last row/column."""
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if not (pad_h or pad_w):
        return frames
    return np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")


def _check_frames(frames: np.ndarray, path: Path) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or 0 in frames.shape:
        raise VideoWriteError(f"{path}: frames must be a non-empty (T, H, W, 3) array, got shape {frames.shape}")
    if frames.dtype != np.uint8:
        raise VideoWriteError(f"{path}: frames must be uint8, got {frames.dtype}")
    return np.ascontiguousarray(frames)


def _check_fps(fps: float, path: Path) -> Fraction:
    if isinstance(fps, bool) or not (isinstance(fps, numbers.Real) and 0 < fps < 10_000):
        raise VideoWriteError(f"{path}: fps must be a positive number, got {fps!r}")
    return Fraction(fps).limit_denominator(1001)
