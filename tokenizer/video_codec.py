"""Video files <-> code grids with a trained tokenizer, streaming in causal chunks.

Encoding reads frames one at a time (:func:`reelm.data.video_read.iter_frames`) and feeds
the tokenizer's causal stream chunk by chunk (with temporal compression ``f``: a first
chunk of ``1 + f k`` frames, then ``f k``-frame chunks), so memory is bounded by the chunk
size, not the video's length. A video whose length is not ``1 + f k`` frames loses its
last few frames (at most ``f - 1``), which the returned metadata reports. Decoding streams the
code grid back the same way (:func:`iter_decoded`). Chunks hold fewer latent frames when
frames are large (:func:`chunk_latents_for`; the codes are the same whatever the chunking),
and frames beyond :data:`MAX_PIXELS` are shrunk to fit (at the native size) or refused (a
``--size`` that asks for them), so memory stays bounded whatever the file.

The growing code grid lives in an anonymous memory map, not on the malloc heap: small
long-lived arrays placed between each chunk's large temporaries fragment glibc's heap, and a
5-minute encode's resident memory then kept climbing (670-970 MiB against 547 MiB without
them; see BENCHMARKS.md).
"""

from __future__ import annotations

import mmap
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from reelm.data.video_read import frames_to_tensor, iter_frames, probe, tensor_to_frames
from reelm.core.errors import ReelmError
from reelm.tokenizer.tokenizer_checkpoint import tokenizer_identity
from reelm.tokenizer.model import VideoTokenizer


MAX_PIXELS = 1920 * 1088  # largest frame encoded (1080p): a 5-frame chunk of it holds ~4 GB of activations (tiny)
CHUNK_PIXELS = 17 * 256 * 256  # pixels (frames x height x width) per encoded chunk, at most about


def frame_geometry(path: str | Path, size: int | None, spatial: int) -> tuple[int | None, tuple[int, int]]:
    """``(size, (h, w) crop)``: the shorter side resized to ``size`` (None: as is), then both
    sides center-cropped down to multiples of the tokenizer's spatial factor.

    At the native size (``size=None``) frames smaller than one patch are enlarged to one patch,
    and frames of more than :data:`MAX_PIXELS` pixels are shrunk to fit, aspect kept (the
    returned ``size`` says to what); a ``size`` given that makes frames too large is refused
    with a line saying what to pass instead.
    """
    first = next(iter_frames(path, num_frames=1, size=size))  # (H, W, 3)
    h, w = first.shape[:2]
    if size is None and (min(h, w) < spatial or h * w > MAX_PIXELS):
        size = spatial if min(h, w) < spatial else int(min(h, w) * (MAX_PIXELS / (h * w)) ** 0.5)
        h, w = next(iter_frames(path, num_frames=1, size=size)).shape[:2]
    crop = (h - h % spatial, w - w % spatial)
    if min(crop) < spatial:
        raise ReelmError(f"{path}: frames of {h}x{w} are smaller than the tokenizer's {spatial}-pixel patch; "
                         f"pass --size {spatial} or more")
    if crop[0] * crop[1] > MAX_PIXELS:
        side = int(min(crop) * (MAX_PIXELS / (crop[0] * crop[1])) ** 0.5)
        raise ReelmError(f"{path}: --size {size} makes frames of {crop[1]}x{crop[0]} ({crop[0] * crop[1] / 1e6:.1f} MP), "
                         f"more than the {MAX_PIXELS / 1e6:.1f} MP one chunk is bounded by; pass --size {side} or less")
    return size, crop


def chunk_latents_for(height: int, width: int, temporal: int, *, most: int = 4) -> int:
    """Latent frames per streamed chunk: ``most`` for small frames, fewer for large ones, at least 1,
    so one chunk holds about :data:`CHUNK_PIXELS` pixels. The codes do not depend on it."""
    return max(1, min(most, CHUNK_PIXELS // max(1, temporal * height * width)))


def _chunks(frames: Iterator[np.ndarray], first: int, rest: int, factor: int) -> Iterator[np.ndarray]:
    """Stacks of ``first`` then ``rest`` frames; the tail is cut to ``1 + factor * k`` frames (the first chunk)
    or a multiple of ``factor`` (later ones), ``factor`` being the tokenizer's temporal compression."""
    want, buf = first, []
    for frame in frames:
        buf.append(frame)
        if len(buf) == want:
            yield np.stack(buf)
            want, buf = rest, []
    if buf:
        keep = (len(buf) - 1) // factor * factor + 1 if want == first else len(buf) // factor * factor
        if keep > 0:
            yield np.stack(buf[:keep])


DEFAULT_RESERVED_LATENTS = 64  # latent frames a code buffer starts with when no length is known


class CodeGridBuffer:
    """Appends ``(t_i, h, w)`` code chunks to one int32 array held in an anonymous memory map.

    The map doubles when full; pages count toward resident memory only once written, so the
    buffer costs the codes it holds, and it never interleaves with the tensors' heap.
    """

    def __init__(self, latent_frames: int = DEFAULT_RESERVED_LATENTS):
        self._initial = max(1, latent_frames)
        self._array: np.ndarray | None = None
        self.length = 0

    def append(self, chunk: np.ndarray) -> None:
        t = len(chunk)
        if self._array is None:
            self._array = self._allocate(self._initial, chunk.shape[1:])
        elif chunk.shape[1:] != self._array.shape[1:]:
            raise ValueError(f"code chunk of shape {chunk.shape} after chunks of {self._array.shape[1:]}")
        if self.length + t > len(self._array):
            grown = self._allocate(max(2 * len(self._array), self.length + t), self._array.shape[1:])
            grown[: self.length] = self._array[: self.length]
            self._array = grown
        self._array[self.length : self.length + t] = chunk
        self.length += t

    def view(self) -> np.ndarray:
        """The codes so far, ``(t, h, w)`` int32 (a view into the map)."""
        if self._array is None:
            return np.empty((0, 0, 0), dtype=np.int32)
        return self._array[: self.length]

    @staticmethod
    def _allocate(length: int, grid: tuple[int, ...]) -> np.ndarray:
        shape = (length, *grid)
        return np.frombuffer(mmap.mmap(-1, 4 * int(np.prod(shape))), dtype=np.int32).reshape(shape)


@torch.no_grad()
def encode_video(model: VideoTokenizer, path: str | Path, *, fps: float | None = None, size: int | None = None,
                 max_frames: int | None = None, chunk_latents: int | None = None,
                 device: torch.device | str = "cpu",
                 progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, dict]:
    """The ``(t, h, w)`` code grid of a video file and its metadata (for a codes file).

    ``chunk_latents``: latent frames per streamed chunk (default: from the frame size, see
    :func:`chunk_latents_for`); ``progress(n)`` is called with the frames of each chunk encoded.
    """
    model.eval()
    ft = model.temporal_downsample
    size, crop = frame_geometry(path, size, model.spatial_downsample)
    chunk_latents = chunk_latents or chunk_latents_for(*crop, ft)
    frames = iter_frames(path, fps=fps, num_frames=max_frames, size=size, crop=crop)
    info = probe(path)
    used, grid = 0, CodeGridBuffer(_expected_latents(info.num_frames, max_frames, ft))

    def tensors():
        nonlocal used
        for chunk in _chunks(frames, 1 + ft * chunk_latents, ft * chunk_latents, ft):
            used += len(chunk)
            yield frames_to_tensor(chunk)[None].to(device)  # (1, 3, T_i, H, W)

    reported = 0
    for indices in model.encode_stream(tensors()):
        grid.append(indices[0].cpu().numpy())  # (t_i, h, w)
        if progress is not None:
            progress(used - reported)
            reported = used
    if not grid.length:
        raise ReelmError(f"{path}: no frames to encode")
    codes = grid.view()
    meta = {
        "tokenizer": tokenizer_identity(model),
        "source": str(path),
        "frames": used,
        "height": crop[0],
        "width": crop[1],
        "fps": fps if fps is not None else info.fps,
        "size": size,
    }
    return codes, meta


MAX_RESERVED_LATENTS = 4096  # a container claiming more frames is not trusted up front: the buffer grows


def _expected_latents(num_frames: int | None, max_frames: int | None, ft: int) -> int:
    """Latent frames to reserve: from the container's frame count where it has one (a hint; the buffer grows)."""
    known = [f for f in (num_frames, max_frames) if f]
    if not known:
        return DEFAULT_RESERVED_LATENTS
    return min(1 + max(0, min(known) - 1) // ft, MAX_RESERVED_LATENTS)


def iter_decoded(model: VideoTokenizer, codes: np.ndarray, *, chunk_latents: int | None = None,
                 device: torch.device | str = "cpu") -> Iterator[np.ndarray]:
    """``(T_i, H, W, 3)`` uint8 frame chunks of a ``(t, h, w)`` code grid, decoded in causal chunks
    (the first chunk's ``1 + k`` latent frames give ``1 + f k`` frames, later ``k`` give ``f k``), so
    memory is bounded by the chunk, not the grid's length."""
    model.eval()
    grid = torch.as_tensor(np.asarray(codes), dtype=torch.long)
    if grid.ndim != 3 or 0 in grid.shape:
        raise ReelmError(f"codes must be a non-empty (t, h, w) grid, got shape {tuple(grid.shape)}")
    ft, fs = model.temporal_downsample, model.spatial_downsample
    chunk_latents = chunk_latents or chunk_latents_for(grid.shape[1] * fs, grid.shape[2] * fs, ft)
    pieces = [grid[: 1 + chunk_latents]] + list(grid[1 + chunk_latents :].split(chunk_latents))
    chunks = (p[None].to(device) for p in pieces if len(p))
    with torch.no_grad():
        for video in model.decode_stream(chunks):
            yield tensor_to_frames(video[0].cpu())  # (T_i, H, W, 3)


def decode_codes(model: VideoTokenizer, codes: np.ndarray, *, chunk_latents: int | None = None,
                 device: torch.device | str = "cpu") -> np.ndarray:
    """``(T, H, W, 3)`` uint8 frames of a ``(t, h, w)`` code grid (whole; :func:`iter_decoded` streams)."""
    return np.concatenate(list(iter_decoded(model, codes, chunk_latents=chunk_latents, device=device)))
