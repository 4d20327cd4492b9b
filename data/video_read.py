"""Reading videos and still images into frames, streamed or whole.

Anything PyAV (FFmpeg) decodes is read: MP4, MKV, WebM, AVI, GIF, ... and PNG/JPEG stills
as 1-frame clips. Frames come out as ``(H, W, 3)`` uint8 RGB, one at a time from
:func:`iter_frames` (decode -> resample -> resize -> crop, never holding the video), or
stacked ``(T, H, W, 3)`` from :func:`read_video`; :func:`frames_to_tensor` makes them
model-ready ``(3, T, H, W)`` floats in [-1, 1].

Resampling to ``fps`` follows the timestamps, never a frame count from the header (which
many files lack): output frame ``k`` is the last decoded frame with ``pts <= start + k / fps``,
times measured from the stream start, for every ``start + k / fps`` before the last frame
ends. Times are exact fractions; "<=" allows just under one tick of the stream's time base,
since containers round timestamps to it (Matroska stores milliseconds).

Frames are shown as a player shows them: turned upright by the stream's display matrix
(rotation metadata), alpha dropped, any bit depth converted to 8-bit RGB. (:func:`probe`
reports the size as stored.)

Every failure is a :class:`VideoReadError` naming the file and one of the reasons below;
FFmpeg errors never escape raw, and FFmpeg's error log lines while demuxing or decoding
(truncated Matroska, corrupt H.264 slices) count as corruption.
"""

from __future__ import annotations

import contextlib
import errno
import numbers
import os
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import av.logging
import numpy as np
import torch
from einops import rearrange
from PIL import Image

from reelm.core.errors import ReelmError

NOT_FOUND = "not found"
NOT_MEDIA = "not a video or image file"
NO_VIDEO_STREAM = "no video stream"
CORRUPT = "truncated or corrupt"
NO_FRAMES = "no frames"
UNREADABLE = "cannot be opened"

# Leading bytes of media files, to tell a damaged video from something that never was one.
_SIGNATURES = (
    (0, b"\x1a\x45\xdf\xa3"),  # Matroska / WebM (EBML)
    (0, b"RIFF"),  # AVI, WAV, WebP
    (0, b"GIF8"),
    (0, b"\x89PNG"),
    (0, b"\xff\xd8\xff"),  # JPEG
    (0, b"OggS"),
    (0, b"FLV"),
    (0, b"\x00\x00\x01\xba"),  # MPEG program stream
    (0, b"\x00\x00\x00\x01"),  # raw H.264 / H.265 Annex B
    (4, b"ftyp"),  # MP4, MOV, 3GP
    (4, b"moov"),
    (4, b"mdat"),
    (4, b"wide"),
    (4, b"free"),
)
_NON_VIDEO_FORMATS = {"tty"}  # FFmpeg renders any .txt as ANSI art


class VideoReadError(ReelmError):
    """A video or image that cannot be read; ``reason`` is one of this module's reason constants."""

    def __init__(self, message: str, *, path: str | Path | None = None, reason: str | None = None):
        super().__init__(message)
        self.path = path
        self.reason = reason


def _fail(path: Path, reason: str, detail: str | None = None) -> VideoReadError:
    detail = " ".join(str(detail).split()) if detail else ""
    return VideoReadError(f"{path}: {reason}" + (f" ({detail})" if detail else ""), path=path, reason=reason)


@dataclass(frozen=True)
class VideoInfo:
    """What a file's headers say about its first video stream; ``None`` where they do not say."""

    path: Path
    width: int
    height: int
    fps: float | None
    num_frames: int | None
    duration: float | None
    codec: str
    container: str


def probe(path: str | Path) -> VideoInfo:
    """Read the headers of ``path`` (no decoding, so corruption past the headers goes unseen)."""
    path = Path(path)
    with _ffmpeg_errors_on(), _open(path) as (container, stream):
        rate = stream.average_rate or stream.guessed_rate
        duration = None
        if stream.duration is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = (container.duration - (container.start_time or 0)) / av.time_base
        return VideoInfo(
            path=path,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=float(rate) if rate else None,
            num_frames=stream.frames or None,
            duration=duration,
            codec=stream.codec_context.name,
            container=container.format.name,
        )


def iter_frames(
    path: str | Path,
    *,
    fps: float | None = None,
    start: float = 0.0,
    num_frames: int | None = None,
    size: int | None = None,
    crop: int | tuple[int, int] | None = None,
) -> Iterator[np.ndarray]:
    """Stream the frames of ``path``, each ``(H, W, 3)`` uint8.

    fps: resample to this rate by timestamps (``None``: every decoded frame).
    start: first output time in seconds from the stream start (seeks when the file allows).
    num_frames: stop after this many frames.
    size: resize so the shorter side is ``size`` (bicubic, aspect kept).
    crop: center crop after the resize, to ``crop`` x ``crop`` or ``(height, width)``.

    A still image gives its one frame whatever ``fps`` and ``start``. Raises
    :class:`VideoReadError` (lazily, while iterating) for unreadable files, and with
    reason ``NO_FRAMES`` when nothing at all comes out.
    """
    path = Path(path)
    if fps is not None and not fps > 0:
        raise ReelmError(f"fps must be positive, got {fps!r}")
    if start < 0:
        raise ReelmError(f"start must be >= 0 seconds, got {start!r}")
    if num_frames is not None and num_frames < 1:
        raise ReelmError(f"num_frames must be >= 1, got {num_frames!r}")
    if size is not None and (not isinstance(size, numbers.Integral) or size < 1):
        raise ReelmError(f"size must be a positive int (the shorter side), got {size!r}")
    crop_hw = _crop_size(crop)
    return _iter_frames(path, fps, start, num_frames, size, crop_hw)


def read_video(
    path: str | Path,
    *,
    fps: float | None = None,
    start: float = 0.0,
    num_frames: int | None = None,
    size: int | None = None,
    crop: int | tuple[int, int] | None = None,
) -> np.ndarray:
    """All frames of ``path`` as ``(T, H, W, 3)`` uint8; options as in :func:`iter_frames`."""
    frames = iter_frames(path, fps=fps, start=start, num_frames=num_frames, size=size, crop=crop)
    return np.stack(list(frames))  # (T, H, W, 3)


def fit_frames(frames: np.ndarray, size: int, *, what: str = "frames") -> np.ndarray:
    """``(T, H, W, 3)`` uint8 frames (or one ``(H, W, 3)`` image) resized and center-cropped to ``size`` x ``size``,
    the way clips are cut for a model (:func:`iter_frames` with ``size`` and ``crop``)."""
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or 0 in frames.shape:
        raise ReelmError(f"{what}: expected (T, H, W, 3) or (H, W, 3) uint8 RGB, got {frames.dtype} {frames.shape}")
    return np.stack([_resize_crop(frame, size, (size, size), Path(what)) for frame in frames])


def frames_to_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``(..., T, H, W, 3)`` uint8 -> ``(..., 3, T, H, W)`` float32 in [-1, 1]."""
    video = frames if isinstance(frames, torch.Tensor) else torch.from_numpy(np.asarray(frames))
    if video.dtype != torch.uint8 or video.ndim < 4 or video.shape[-1] != 3:
        raise ReelmError(f"frames must be (T, H, W, 3) uint8, got {tuple(video.shape)} {video.dtype}")
    video = rearrange(video, "... t h w c -> ... c t h w")
    return video.float() / 127.5 - 1.0


def tensor_to_frames(video: torch.Tensor) -> np.ndarray:
    """``(..., 3, T, H, W)`` float in [-1, 1] -> ``(..., T, H, W, 3)`` uint8 (clamped, rounded)."""
    if video.ndim < 4 or video.shape[-4] != 3:
        raise ReelmError(f"video must be (3, T, H, W), got {tuple(video.shape)}")
    pixels = ((video.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return rearrange(pixels, "... c t h w -> ... t h w c").cpu().numpy()


# --- decoding ---------------------------------------------------------------------------


def _iter_frames(
    path: Path,
    fps: float | None,
    start: float,
    num_frames: int | None,
    size: int | None,
    crop: tuple[int, int] | None,
) -> Iterator[np.ndarray]:
    with _ffmpeg_errors_on(), _open(path) as (container, stream):
        if _is_still(container):
            fps, start = None, 0.0
        timed = _timed_frames(path, container, stream, Fraction(start))
        if fps is None:
            picked = _from_start(timed, Fraction(start), stream)
        else:
            picked = _resampled(timed, Fraction(start), Fraction(fps).limit_denominator(1001), stream)
        count = 0
        for frame in picked:
            yield _resize_crop(frame, size, crop, path)  # (H, W, 3)
            count += 1
            if count == num_frames:
                return
        if count == 0:
            raise _fail(path, NO_FRAMES, f"nothing at or after {start:g} s" if start else None)


def _from_start(timed: Iterator[tuple[Fraction, av.VideoFrame]], start: Fraction, stream) -> Iterator[np.ndarray]:
    """Every frame from the one showing at ``start`` on."""
    tick = _tick(stream)
    held = None  # (time, frame): the latest frame at or before start
    for time, frame in timed:
        if time < start + tick:
            held = (time, frame)
            continue
        if held is not None:
            yield _rgb(held[1])
            held = None
        yield _rgb(frame)
    if held is not None and held[0] + _frame_duration(held[1], stream) > start:
        yield _rgb(held[1])


def _resampled(
    timed: Iterator[tuple[Fraction, av.VideoFrame]], start: Fraction, fps: Fraction, stream
) -> Iterator[np.ndarray]:
    """For each ``t_k = start + k / fps`` within the video, the last frame with ``pts <= t_k``."""
    tick = _tick(stream)
    k = 0
    held, held_time = None, None
    for time, frame in timed:
        while start + k / fps + tick <= time:
            yield _rgb(held if held is not None else frame)  # targets before the first frame clamp to it
            k += 1
        held, held_time = frame, time
    if held is None:
        return
    end = held_time + _frame_duration(held, stream)
    while start + k / fps < end:
        yield _rgb(held)
        k += 1


def _tick(stream) -> Fraction:
    """The stream's timestamp resolution in seconds."""
    return Fraction(stream.time_base) if stream.time_base else Fraction(1, 1_000_000)


def _frame_duration(frame: av.VideoFrame, stream) -> Fraction:
    """How long ``frame`` shows: its own duration, else one frame at the stream rate, else one tick."""
    if frame.duration:
        return frame.duration * _tick(stream)
    rate = stream.average_rate or stream.guessed_rate
    return 1 / Fraction(rate) if rate else _tick(stream)


def _rgb(frame: av.VideoFrame) -> np.ndarray:
    """The frame as shown: RGB (alpha dropped, any bit depth), turned upright by its display matrix."""
    rgb = frame.to_ndarray(format="rgb24")  # (H, W, 3)
    quarter_turns = round((frame.rotation or 0) / 90) % 4  # counterclockwise, as the display matrix says
    return np.ascontiguousarray(np.rot90(rgb, quarter_turns)) if quarter_turns else rgb


def _timed_frames(
    path: Path, container: av.container.InputContainer, stream, start: Fraction
) -> Iterator[tuple[Fraction, av.VideoFrame]]:
    """Decoded frames with their time in seconds from the stream start, from near ``start`` on.

    Seeks to the keyframe before ``start`` where the file allows (a failed seek leaves the
    position unchanged); if the first frame then lies after ``start``, decodes from the
    beginning instead.
    """
    tick = _tick(stream)
    origin = stream.start_time
    if start > 0 and origin is not None and stream.time_base:
        with contextlib.suppress(av.error.FFmpegError), av.logging.Capture():  # a failed seek's log is not news
            container.seek(origin + int(start / tick), stream=stream, backward=True, any_frame=False)
        frames = _with_times(_decode(path, container, stream), stream, origin)
        first = next(frames, None)
        if first is None or first[0] < start + tick:
            if first is not None:
                yield first
            yield from frames
            return
        try:
            with av.logging.Capture():
                container.seek(origin, stream=stream, backward=True, any_frame=False)
        except av.error.FFmpegError as exc:
            raise _fail(path, CORRUPT, f"cannot seek back to the start: {_describe(exc)}") from None
    yield from _with_times(_decode(path, container, stream), stream, origin)


def _with_times(
    frames: Iterator[av.VideoFrame], stream, origin: int | None
) -> Iterator[tuple[Fraction, av.VideoFrame]]:
    time, step = None, Fraction(0)
    for frame in frames:
        if frame.pts is not None and stream.time_base:
            if origin is None:
                origin = frame.pts
            time = (frame.pts - origin) * _tick(stream)
        else:
            time = Fraction(0) if time is None else time + step  # no timestamp: right after the previous frame
        step = _frame_duration(frame, stream)
        yield time, frame


def _decode(path: Path, container: av.container.InputContainer, stream) -> Iterator[av.VideoFrame]:
    """Demux and decode ``stream`` packet by packet, turning FFmpeg errors and error logs into VideoReadError."""
    packets = container.demux(stream)
    decoded = False
    while True:
        with av.logging.Capture() as logs:
            try:
                packet = next(packets, None)
                frames = stream.decode(packet) if packet is not None else []
            except av.error.FFmpegError as exc:
                raise _decode_failure(path, decoded, _log_errors(logs) or [_describe(exc)]) from None
        errors = _log_errors(logs)
        if errors:
            raise _decode_failure(path, decoded, errors)
        if packet is None:
            return
        for frame in frames:
            decoded = True
            yield frame


def _decode_failure(path: Path, decoded: bool, errors: list[str]) -> VideoReadError:
    reason = CORRUPT if decoded or _looks_like_media(path) else NOT_MEDIA
    return _fail(path, reason, errors[-1])


def _describe(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _log_errors(logs) -> list[str]:
    return [message.strip() for level, _, message in logs if level <= av.logging.ERROR]


def _looks_like_media(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return False
    return any(head[offset : offset + len(magic)] == magic for offset, magic in _SIGNATURES)


def _is_still(container: av.container.InputContainer) -> bool:
    name = container.format.name
    return name == "image2" or name.endswith("_pipe")


@contextlib.contextmanager
def _open(path: Path) -> Iterator[tuple[av.container.InputContainer, av.video.stream.VideoStream]]:
    """The open container and its first video stream (cover art excluded), or VideoReadError."""
    if not path.exists():
        if path.is_symlink() and _is_link_loop(path):
            raise _fail(path, UNREADABLE, "a symbolic link loop")
        raise _fail(path, NOT_FOUND, f"a symbolic link to {os.readlink(path)}" if path.is_symlink() else None)
    if path.is_dir():
        raise _fail(path, NOT_MEDIA, "a directory")
    if path.stat().st_size == 0:
        raise _fail(path, CORRUPT, "empty file")
    with av.logging.Capture() as logs:
        try:
            container = av.open(str(path))
        except FileNotFoundError:
            raise _fail(path, NOT_FOUND) from None
        except PermissionError as exc:
            raise _fail(path, UNREADABLE, exc.strerror) from None
        except (av.error.FFmpegError, OSError) as exc:
            reason = CORRUPT if _looks_like_media(path) else NOT_MEDIA
            raise _fail(path, reason, (_log_errors(logs) or [_describe(exc)])[-1]) from None
    try:
        if container.format.name in _NON_VIDEO_FORMATS:
            raise _fail(path, NOT_MEDIA, f"FFmpeg reads it as {container.format.long_name}")
        videos = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
        if not videos:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise _fail(path, NO_VIDEO_STREAM, f"streams: {', '.join(kinds)}")
        yield container, videos[0]
    finally:
        container.close()


def _is_link_loop(path: Path) -> bool:
    try:
        path.resolve(strict=True)
    except RuntimeError:  # how Python < 3.13 reports a loop
        return True
    except OSError as exc:
        return exc.errno == errno.ELOOP
    return False


_log_lock = threading.Lock()
_log_users = 0
_saved_log_level: int | None = None
_saved_skip_repeated = True


@contextlib.contextmanager
def _ffmpeg_errors_on() -> Iterator[None]:
    """Let FFmpeg report errors (PyAV silences its log by default) so ``av.logging.Capture`` sees them, every
    time: PyAV drops a message that repeats the last one, so a long-lived process reading the same bad file
    twice would give the second read another reason.

    Reference-counted across threads; the previous settings come back when the last reader ends.
    """
    global _log_users, _saved_log_level, _saved_skip_repeated
    with _log_lock:
        if _log_users == 0:
            _saved_log_level = av.logging.get_level()
            _saved_skip_repeated = av.logging.get_skip_repeated()
            av.logging.set_skip_repeated(False)
            if _saved_log_level is None or _saved_log_level < av.logging.ERROR:
                av.logging.set_level(av.logging.ERROR)
        _log_users += 1
    try:
        yield
    finally:
        with _log_lock:
            _log_users -= 1
            if _log_users == 0:
                av.logging.set_level(_saved_log_level)
                av.logging.set_skip_repeated(_saved_skip_repeated)


# --- resize and crop --------------------------------------------------------------------


def _crop_size(crop: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if crop is None:
        return None
    hw = (crop, crop) if isinstance(crop, numbers.Integral) else tuple(crop) if isinstance(crop, (tuple, list)) else ()
    if len(hw) != 2 or not all(isinstance(n, numbers.Integral) and n > 0 for n in hw):
        raise ReelmError(f"crop must be a positive int or (height, width), got {crop!r}")
    return int(hw[0]), int(hw[1])


def _resize_crop(rgb: np.ndarray, size: int | None, crop: tuple[int, int] | None, path: Path) -> np.ndarray:
    """``(H, W, 3)`` -> shorter side ``size`` (bicubic) -> center ``crop``."""
    h, w = rgb.shape[:2]
    if size is not None and min(h, w) != size:
        scale = size / min(h, w)
        h, w = max(1, round(h * scale)), max(1, round(w * scale))
        rgb = np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.BICUBIC))  # (h, w, 3)
    if crop is not None:
        ch, cw = crop
        if ch > h or cw > w:
            raise ReelmError(f"{path}: crop {ch}x{cw} is larger than the {h}x{w} frame")
        top, left = (h - ch) // 2, (w - cw) // 2
        rgb = rgb[top : top + ch, left : left + cw]  # (ch, cw, 3)
    return np.ascontiguousarray(rgb)
