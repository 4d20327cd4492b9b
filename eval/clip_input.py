"""Clip input for the generation metrics: validation, temporal policy and batching, streamed.

Every metric takes clips as a uint8 array ``(N, T, H, W, 3)`` or an iterable of uint8 arrays,
each one clip ``(T, H, W, 3)`` or a batch ``(n, T, H, W, 3)``. Nothing is held beyond the
batch being yielded: a generator of clips is consumed once, in order.

Temporal policy of the video protocols (``num_frames`` = 16): a clip of 16 or more frames
contributes its first 16 frames; a shorter clip is refused with a one-line error
(``short="refuse"``), or padded by repeating its last frame (``short="pad_last"``, only in
protocols whose name says so). Frame protocols use every frame of every clip.

Follows: StyleGAN-V ``src/metrics/metric_utils.py`` (16 consecutive frames per clip; clips
that are too short are not used as they are).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from reelm.core.errors import ReelmError

SHORT_POLICIES = ("refuse", "pad_last")


class ClipInputError(ReelmError):
    """Clips that are not uint8 (T, H, W, 3) arrays, or too short for the protocol."""


@dataclass
class ClipCounts:
    """What a stream saw: clips, frames, and clips padded or cut to the protocol's length."""

    clips: int = 0
    frames: int = 0
    padded: int = 0
    truncated: int = 0
    shapes: set = field(default_factory=set)

    def as_dict(self) -> dict:
        return {"clips": self.clips, "frames": self.frames, "padded_clips": self.padded,
                "truncated_clips": self.truncated, "clip_shapes": sorted(list(s) for s in self.shapes)}


def iter_clips(clips, *, name: str) -> Iterator[np.ndarray]:
    """Single clips ``(T, H, W, 3)`` uint8 from an array ``(N, T, H, W, 3)`` or an iterable of arrays."""
    if isinstance(clips, np.ndarray):
        if clips.ndim != 5:
            raise ClipInputError(f"{name}: expected a uint8 array (N, T, H, W, 3), got shape {clips.shape}")
        items: Iterable = [clips]
    else:
        items = clips
    index = 0
    for item in items:
        array = np.asarray(item)
        if array.ndim == 4:
            array = array[None]
        if array.ndim != 5 or array.shape[-1] != 3 or array.dtype != np.uint8:
            raise ClipInputError(f"{name}: item {index} is {array.dtype} of shape {array.shape}; "
                                 "expected uint8 (T, H, W, 3) or (N, T, H, W, 3)")
        for clip in array:
            if clip.shape[0] < 1:
                raise ClipInputError(f"{name}: clip {index} has no frames")
            yield clip
            index += 1


def clip_batches(clips, *, name: str, batch_size: int, counts: ClipCounts, num_frames: int | None = None,
                 short: str = "refuse", protocol: str = "") -> Iterator[np.ndarray]:
    """Batches ``(B, T, H, W, 3)`` of same-shape clips, each cut/padded to ``num_frames`` if given."""
    if short not in SHORT_POLICIES:
        raise ValueError(f"short={short!r}: expected one of {SHORT_POLICIES}")
    pending: list[np.ndarray] = []
    for clip in iter_clips(clips, name=name):
        index = counts.clips
        counts.clips += 1
        counts.frames += clip.shape[0]
        counts.shapes.add(tuple(clip.shape[1:3]))
        if num_frames is not None:
            clip = _fit_length(clip, num_frames, short, name=name, index=index, protocol=protocol, counts=counts)
        if pending and pending[0].shape != clip.shape:
            yield np.stack(pending)
            pending = []
        pending.append(clip)
        if len(pending) == batch_size:
            yield np.stack(pending)
            pending = []
    if pending:
        yield np.stack(pending)


def frame_batches(clips, *, name: str, batch_size: int, counts: ClipCounts) -> Iterator[np.ndarray]:
    """Batches ``(B, H, W, 3)`` of same-size frames: every frame of every clip, in order."""
    pending: list[np.ndarray] = []
    for clip in iter_clips(clips, name=name):
        counts.clips += 1
        counts.frames += clip.shape[0]
        counts.shapes.add(tuple(clip.shape[1:3]))
        for frame in clip:
            if pending and pending[0].shape != frame.shape:
                yield np.stack(pending)
                pending = []
            pending.append(frame)
            if len(pending) == batch_size:
                yield np.stack(pending)
                pending = []
    if pending:
        yield np.stack(pending)


def _fit_length(clip: np.ndarray, num_frames: int, short: str, *, name: str, index: int, protocol: str,
                counts: ClipCounts) -> np.ndarray:
    length = clip.shape[0]
    if length > num_frames:
        counts.truncated += 1
        return clip[:num_frames]
    if length == num_frames:
        return clip
    if short == "refuse":
        raise ClipInputError(f"{name}: clip {index} has {length} frames; {protocol or 'this protocol'} needs "
                             f"{num_frames} (the *_padlast protocols pad short clips by repeating the last frame)")
    counts.padded += 1
    return np.concatenate([clip, np.repeat(clip[-1:], num_frames - length, axis=0)])
