"""Temporal quality of generated clips: flicker where nothing should move, smooth motion, how much moves,
and how far a conditioned sample's first frames drift from what they were conditioned on.

All take ``(T, H, W, 3)`` uint8 frames and need no model:

- :func:`flicker`: the mean absolute change between consecutive frames over the *static*
  region — pixels within ``STATIC_TOLERANCE`` of their temporal median in (nearly) every
  frame, i.e. the background once moving objects are set aside — on the 0-255 scale, with
  the per-pixel map a report shows. VBench's temporal-flickering score is ``1 - flicker / 255``.
- :func:`motion_smoothness`: from an object's per-frame center track, the median absolute
  second difference (pixels per frame²); 0 for constant velocity. Bounces off the frame
  edge are single spikes, which the median ignores.
- :func:`dynamic_degree`: the mean absolute change between consecutive frames over the whole
  frame (how much moves at all), and whether the clip moves by more than ``MOVING_THRESHOLD``.
- :func:`drift`: PSNR between a conditioning frame and the generated frame meant to show it.

Follows: VBench (Huang et al., 2024) temporal flickering, motion smoothness and dynamic
degree dimensions, computed analytically for reelm's small synthetic clips.
"""

from __future__ import annotations

import numpy as np

from reelm.eval.reconstruction_metrics import psnr

STATIC_TOLERANCE = 24.0  # 0-255: a pixel this close to its temporal median counts as showing the static scene
STATIC_FRACTION = 0.9  # ... in at least this share of frames
MOVING_THRESHOLD = 1.0  # mean |frame difference| (0-255) above which a clip counts as moving


def flicker(frames: np.ndarray) -> dict:
    """Mean |consecutive difference| over the static region, and its ``map`` (H, W) float32."""
    video = np.asarray(frames, dtype=np.float32)  # (T, H, W, 3)
    if len(video) < 2:
        return {"flicker": 0.0, "static_fraction": 1.0, "map": np.zeros(video.shape[1:3], np.float32)}
    median = np.median(video, axis=0)  # (H, W, 3)
    near = np.abs(video - median).max(axis=-1) <= STATIC_TOLERANCE  # (T, H, W)
    static = near.mean(axis=0) >= STATIC_FRACTION  # (H, W)
    change = np.abs(np.diff(video, axis=0)).mean(axis=-1)  # (T - 1, H, W)
    both = near[1:] & near[:-1] & static  # (T - 1, H, W): static pixels shown in both frames
    per_pixel = np.where(both, change, 0).sum(axis=0) / np.maximum(both.sum(axis=0), 1)  # (H, W)
    value = float(change[both].mean()) if both.any() else 0.0
    return {"flicker": value, "static_fraction": float(static.mean()), "map": per_pixel.astype(np.float32)}


def motion_smoothness(track: list | None) -> float | None:
    """Median |second difference| of a center track (``[x, y]`` or ``None`` per frame); None with < 3 points."""
    if not track:
        return None
    points = [p for p in track if p is not None]
    if len(points) < 3:
        return None
    centers = np.asarray(points, dtype=np.float64)  # (n, 2)
    acceleration = np.linalg.norm(np.diff(centers, n=2, axis=0), axis=1)  # (n - 2,)
    return float(np.median(acceleration))


def dynamic_degree(frames: np.ndarray) -> dict:
    video = np.asarray(frames, dtype=np.float32)
    change = float(np.abs(np.diff(video, axis=0)).mean()) if len(video) > 1 else 0.0
    return {"change": change, "moving": change > MOVING_THRESHOLD}


def drift(condition: np.ndarray, generated: np.ndarray) -> float:
    """PSNR (dB) of the generated frame(s) against the conditioning frame(s) they should show."""
    return psnr(condition, generated)
