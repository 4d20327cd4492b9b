"""Writing frames to video files: H.264 MP4 and GIF.

Frames are ``(T, H, W, 3)`` uint8 RGB numpy arrays, as :mod:`reelm.data.video_read`
returns them. Every write goes through :func:`reelm.atomic.atomic_write` (a hidden
temporary file renamed into place once complete), so a failed write leaves neither a
half-written video nor the temporary file behind; failures are :class:`VideoWriteError`.
"""

from __future__ import annotations

import functools
import numbers
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable

import av
import numpy as np
from PIL import Image

from reelm import atomic
from reelm.errors import ReelmError


class VideoWriteError(ReelmError):
    """A video that cannot be written: bad frames, bad fps, unknown suffix, unwritable folder."""


atomic_write = functools.partial(atomic.atomic_write, error=VideoWriteError)  # videos and pictures fail as such


def write_mp4(path: str | Path, frames: np.ndarray, fps: float, *, crf: int = 18) -> Path:
    """Encode ``frames`` ``(T, H, W, 3)`` uint8 as H.264 (libx264, yuv420p) MP4.

    Odd heights/widths are made even by repeating the last row/column, since yuv420p
    needs even dimensions; the written video is then ``(T, H + H % 2, W + W % 2)``.
    """
    path = Path(path)
    frames = _check_frames(frames, path)
    rate = _check_fps(fps, path)
    frames = pad_to_even(frames)  # (T, H', W', 3), H' and W' even

    def encode(tmp: Path) -> None:
        pictures = (av.VideoFrame.from_ndarray(frame, format="rgb24") for frame in frames)
        options = {"crf": str(crf), "preset": "medium"}
        _encode(tmp, pictures, frames.shape[1:3], rate, "mp4", "libx264", "yuv420p", options)

    return atomic_write(path, encode)


def write_gif(path: str | Path, frames: np.ndarray, fps: float) -> Path:
    """Write ``frames`` ``(T, H, W, 3)`` uint8 as a looping animated GIF.

    Each frame gets its own 256-color median-cut palette (no dithering). GIF stores delays
    in centiseconds, so frame times are rounded to 1/100 s (30 fps plays as 3 and 4 cs delays).
    Every frame is kept, repeated ones included.
    """
    path = Path(path)
    frames = _check_frames(frames, path)
    rate = _check_fps(fps, path)

    def encode(tmp: Path) -> None:
        pictures = (av.VideoFrame.from_ndarray(_palettize(frame), format="pal8") for frame in frames)
        _encode(tmp, pictures, frames.shape[1:3], rate, "gif", "gif", "pal8", {})

    return atomic_write(path, encode)


def _encode(
    tmp: Path,
    pictures: Iterable[av.VideoFrame],
    hw: tuple[int, int],
    rate: Fraction,
    container_format: str,
    codec: str,
    pix_fmt: str,
    options: dict[str, str],
) -> None:
    with av.open(str(tmp), mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.height, stream.width = hw
        stream.pix_fmt = pix_fmt
        stream.options = options
        for picture in pictures:
            container.mux(stream.encode(picture))
        container.mux(stream.encode(None))


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
