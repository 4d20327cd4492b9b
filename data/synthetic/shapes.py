"""Shape geometry of the synthetic world: inside tests and extents, in units of the object radius.

A shape is centered on its track point with image axes (x right, y down) and scaled by
the object's radius ``r``: a point ``(x, y)`` is covered when ``inside(shape, (x - cx) / r,
(y - cy) / r)``. ``EXTENTS`` bound each shape, so ``cx + x0 * r .. cx + x1 * r`` is its
horizontal extent; the triangle and the star point up and are not vertically symmetric.
"""

from __future__ import annotations

import math

import numpy as np

SQUARE_HALF = 0.85
CROSS_HALF, CROSS_ARM = 0.9, 0.3
STAR_POINTS, STAR_INNER = 5, 0.45

SHAPES = ("circle", "square", "triangle", "diamond", "cross", "star")

EXTENTS: dict[str, tuple[float, float, float, float]] = {  # (x0, x1, y0, y1)
    "circle": (-1.0, 1.0, -1.0, 1.0),
    "square": (-SQUARE_HALF, SQUARE_HALF, -SQUARE_HALF, SQUARE_HALF),
    "triangle": (-math.sqrt(3) / 2, math.sqrt(3) / 2, -1.0, 0.5),
    "diamond": (-1.0, 1.0, -1.0, 1.0),
    "cross": (-CROSS_HALF, CROSS_HALF, -CROSS_HALF, CROSS_HALF),
    "star": (-math.sin(2 * math.pi / 5), math.sin(2 * math.pi / 5), -1.0, math.cos(math.pi / 5)),
}


def inside(shape: str, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Whether points ``(dx, dy)`` (broadcastable, in radii from the center) are covered."""
    ax, ay = np.abs(dx), np.abs(dy)
    if shape == "circle":
        return dx * dx + dy * dy <= 1.0
    if shape == "square":
        return np.maximum(ax, ay) <= SQUARE_HALF
    if shape == "triangle":
        return (dy <= 0.5) & (math.sqrt(3) * ax - dy <= 1.0)
    if shape == "diamond":
        return ax + ay <= 1.0
    if shape == "cross":
        return (np.minimum(ax, ay) <= CROSS_ARM) & (np.maximum(ax, ay) <= CROSS_HALF)
    if shape == "star":
        return _inside_star(dx, dy)
    raise ValueError(f"unknown shape {shape!r}; choose from {SHAPES}")


def _inside_star(dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """A five-pointed star, one point up: fold the angle onto one half-spike, test one edge."""
    sector = 2 * math.pi / STAR_POINTS
    angle = np.arctan2(dx, -dy)
    folded = np.abs(np.mod(angle + sector / 2, sector) - sector / 2)  # 0 at a point, sector/2 at a notch
    rho = np.hypot(dx, dy)
    px, py = rho * np.cos(folded), rho * np.sin(folded)
    bx, by = STAR_INNER * math.cos(sector / 2), STAR_INNER * math.sin(sector / 2)
    return (bx - 1.0) * py - by * (px - 1.0) >= 0.0
