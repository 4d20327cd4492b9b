"""Rasterizing synthetic-world scenes with numpy: backgrounds, then anti-aliased shapes on top.

Pixels depend only on a scene's attributes (see :mod:`reelm.data.synthetic.scene`), so
a manifest's ground truth re-renders its clip exactly. Each object is drawn inside a
small window around its bbox, sampled ``SUPERSAMPLE`` x ``SUPERSAMPLE`` times per pixel
for edge coverage, and alpha-blended over what is below; all frames are drawn at once.
"""

from __future__ import annotations

import math

import numpy as np

from reelm.data.synthetic.scene import COLORS
from reelm.data.synthetic.shapes import EXTENTS, inside

SUPERSAMPLE = 2


def render_frames(attributes: dict) -> np.ndarray:
    """The clip ``(T, H, W, 3)`` uint8 of a scene's attributes."""
    height, width, num_frames = attributes["height"], attributes["width"], attributes["num_frames"]
    background = render_background(attributes["background"], height, width)  # (H, W, 3)
    frames = np.repeat(background[None], num_frames, axis=0)  # (T, H, W, 3)
    for obj in attributes["objects"]:
        _draw(frames, obj)
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def render_background(background: dict, height: int, width: int) -> np.ndarray:
    """The static background ``(H, W, 3)`` float32 of a scene."""
    rgb = np.asarray(background["rgb"], dtype=np.float32)  # (K, 3)
    kind = background["kind"]
    y, x = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5  # (H, W) each, pixel centers
    if kind == "plain":
        return np.broadcast_to(rgb[0], (height, width, 3)).copy()
    if kind == "stripes":
        along = {"horizontal": y, "vertical": x, "diagonal": (x + y) / math.sqrt(2)}[background["orientation"]]
        return rgb[(np.floor(along / (background["period"] / 2)) % 2).astype(np.int64)]
    if kind == "checker":
        cell = background["period"] / 2
        return rgb[((np.floor(x / cell) + np.floor(y / cell)) % 2).astype(np.int64)]
    if kind == "noise":
        grid = np.random.default_rng(background["seed"]).uniform(-1.0, 1.0, size=background["grid"])  # (gh, gw)
        noise = _bilinear(grid, height, width) * background["amplitude"]  # (H, W)
        return (rgb[0] + noise[..., None]).astype(np.float32)
    raise ValueError(f"unknown background kind {kind!r}")


def _bilinear(grid: np.ndarray, height: int, width: int) -> np.ndarray:
    """Upsample ``grid`` (gh, gw) to ``(height, width)``, corners aligned."""
    gy = np.linspace(0, grid.shape[0] - 1, height)  # (H,)
    gx = np.linspace(0, grid.shape[1] - 1, width)  # (W,)
    y0 = np.minimum(gy.astype(np.int64), grid.shape[0] - 2)
    x0 = np.minimum(gx.astype(np.int64), grid.shape[1] - 2)
    fy, fx = (gy - y0)[:, None], (gx - x0)[None, :]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx  # (H, W)
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx  # (H, W)
    return top * (1 - fy) + bottom * fy


def _draw(frames: np.ndarray, obj: dict) -> None:
    """Alpha-blend one object onto ``frames`` (T, H, W, 3) in place, on every frame."""
    num_frames, height, width, _ = frames.shape
    radius = obj["radius"]
    center = np.asarray(obj["track"]["center"], dtype=np.float64)  # (T, 2)
    x0, x1, y0, y1 = EXTENTS[obj["shape"]]
    win_h = min(height, math.ceil((y1 - y0) * radius) + 2)
    win_w = min(width, math.ceil((x1 - x0) * radius) + 2)
    top = np.clip(np.floor(center[:, 1] + y0 * radius).astype(np.int64), 0, height - win_h)  # (T,)
    left = np.clip(np.floor(center[:, 0] + x0 * radius).astype(np.int64), 0, width - win_w)  # (T,)

    s = SUPERSAMPLE
    sub_y = (np.arange(win_h * s) + 0.5) / s  # (h*s,)
    sub_x = (np.arange(win_w * s) + 0.5) / s  # (w*s,)
    dy = (top[:, None] + sub_y[None] - center[:, 1:2]) / radius  # (T, h*s)
    dx = (left[:, None] + sub_x[None] - center[:, 0:1]) / radius  # (T, w*s)
    mask = inside(obj["shape"], dx[:, None, :], dy[:, :, None])  # (T, h*s, w*s)
    alpha = mask.reshape(num_frames, win_h, s, win_w, s).mean(axis=(2, 4), dtype=np.float32)  # (T, h, w)

    t = np.arange(num_frames)[:, None, None]  # (T, 1, 1)
    rows = (top[:, None] + np.arange(win_h))[:, :, None]  # (T, h, 1)
    cols = (left[:, None] + np.arange(win_w))[:, None, :]  # (T, 1, w)
    region = frames[t, rows, cols]  # (T, h, w, 3)
    color = np.asarray(COLORS[obj["color"]], dtype=np.float32)
    frames[t, rows, cols] = region + alpha[..., None] * (color - region)
