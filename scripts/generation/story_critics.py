"""Critics for a story's best-of-N windows: which candidate keeps the object the story showed.

``iter_story(..., candidates=N, choose=critic)`` samples every continuation window N times and keeps the
candidate ``critic`` picks from a :class:`reelm.generation.story_generation.WindowCandidates`. ``choose`` is
any such function, or the name of one here (:data:`STORY_CRITICS`):

- ``outline``: the object keeps its outline. Each frame's foreground is the pixels far from the median
  color of the frame's border (:func:`foreground`). A candidate scores the mean over its new frames of
  (a) the IoU of the frame's mask with the story's first frame's, their centroids aligned: an identity
  reference that does not drift from window to window, wherever the object moved; and (b) the IoU with
  the frame before's, at the shift within 3 pixels that overlaps them best: an outline smeared for a
  frame or two scores low. The highest score is kept.

``outline`` assumes what the synthetic world's scenes are: a plain background and an object that does
not change its outline on purpose. On footage with a textured background or a camera that moves, the
border's color does not separate the object, and the critic is no guide. On the default demo's model,
best of 4 by ``outline`` keeps 83.4 % [78-87] of 259 story boundaries against 71.8 % for one sample,
and 101 against 80 of the 129 held out from choosing it (BENCHMARKS.md, "Best of N windows").
"""

from __future__ import annotations

from typing import Callable

import numpy as np

FOREGROUND_DISTANCE = 40.0  # RGB distance (0-255) from the border's median color that makes a pixel foreground
CHAIN_SHIFT = 3  # pixels a mask may move from one frame to the next for the frame-to-frame overlap


def border_distance(frame: np.ndarray) -> np.ndarray:
    """``(H, W)`` float32: each pixel's RGB distance (0-255 scale) from the median color of an ``(H, W, 3)`` frame's
    border, the background of a plain scene."""
    frame = frame.astype(np.float32)
    border = np.concatenate([frame[0], frame[-1], frame[:, 0], frame[:, -1]])
    return np.linalg.norm(frame - np.median(border, axis=0), axis=-1)


def foreground(frame: np.ndarray, *, threshold: float = FOREGROUND_DISTANCE) -> np.ndarray:
    """``(H, W)`` bool: the pixels of an ``(H, W, 3)`` frame farther than ``threshold`` from its border's median
    color."""
    return border_distance(frame) > threshold


def shifted_iou(before: np.ndarray, after: np.ndarray, *, shift: int) -> float:
    """The best IoU of two ``(H, W)`` foreground masks, ``before`` moved by at most ``shift`` pixels each way (0
    when either is empty)."""
    if not before.any() or not after.any():
        return 0.0
    padded = np.pad(before, shift)
    h, w = after.shape
    return max(float((padded[dy:dy + h, dx:dx + w] & after).sum() / (padded[dy:dy + h, dx:dx + w] | after).sum())
               for dy in range(2 * shift + 1) for dx in range(2 * shift + 1))


def centered_iou(reference: np.ndarray, mask: np.ndarray) -> float:
    """IoU of two ``(H, W)`` foreground masks with ``mask`` moved so that the centroids meet (0 when either is
    empty)."""
    if not reference.any() or not mask.any():
        return 0.0
    (ay, ax), (by, bx) = (np.argwhere(m).mean(0) for m in (reference, mask))
    dy, dx = int(round(ay - by)), int(round(ax - bx))
    moved = np.zeros_like(mask)  # shifted without wrapping around the frame's edges
    h, w = mask.shape
    moved[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = mask[max(-dy, 0):h - max(dy, 0),
                                                                       max(-dx, 0):w - max(dx, 0)]
    return float((reference & moved).sum() / (reference | moved).sum())


def outline_score(first: np.ndarray, last_before: np.ndarray, frames: np.ndarray) -> float:
    """How well ``frames`` keep the outline of the story's ``first`` frame and of the frame before them (see the
    module docstring): in [0, 2], higher is better. Each frame's mask is made once."""
    reference, masks = foreground(first), [foreground(frame) for frame in frames]
    identity = np.mean([centered_iou(reference, mask) for mask in masks])
    before = [foreground(last_before), *masks[:-1]]
    chain = np.mean([shifted_iou(a, b, shift=CHAIN_SHIFT) for a, b in zip(before, masks)])
    return float(identity + chain)


def outline(window) -> int:
    """The candidate of ``window`` (a ``WindowCandidates``) whose object best keeps its outline."""
    first = window.first if window.first is not None else window.before[0]
    return int(np.argmax([outline_score(first, window.before[-1], frames) for frames in window.frames]))


STORY_CRITICS: dict[str, Callable] = {"outline": outline}
