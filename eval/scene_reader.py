"""Reading the synthetic world's objects back from decoded frames: color, shape, size, motion, speed.

:func:`read_clip` sees pixels only (no ground truth), so the same reader serves rendered,
reconstructed and generated clips; :mod:`reelm.eval.adherence` compares its readings with
a prompt. How a clip is read:

1. Background: the per-pixel temporal median (where it looks like an object, e.g. under a
   static one, the frame's median color), shifted per frame by the median frame difference
   (global flicker). Foreground: CIELAB distance to it above ``FG_DELTA_E``.
2. Objects: a foreground pixel takes the named color its offset from the background points
   to (cosine in RGB: alpha blending, blur and dimming move a pixel along that line); each
   color's largest blob per frame is a piece, and a piece whose pixels mostly hug a larger
   object (its edge, mixed by a codec's chroma bleed or a blur) joins that object. An object
   must cover ``min_area`` pixels (half the world's smallest object) in ``MIN_PRESENCE`` of
   the frames, and look like some shape (best soft Dice at least ``MIN_SHAPE_SCORE``).
3. Color: the median RGB of the object's strongest half of pixels, named by the nearest
   named color in CIELAB, each allowed to be dimmed toward the background to half strength.
4. Coverage: per frame, each pixel's offset projected onto the object's full-coverage color
   (the median of its strongest quarter of pixels; luma weighted above chroma, which codecs
   halve), near its mask and away from other objects.
   Its sum is the object's area (blur keeps it), its weighted mean the centroid.
5. Shape and size (analysis by synthesis): each shape is rendered anti-aliased at the radius
   that gives the observed area, on the centroid, and compared with the coverage (soft Dice)
   on the frames where the object touches no other; a template may be blurred or carried at
   4:2:0 chroma resolution, whichever fits. The best shapes are refined by a sub-pixel
   search of center and radius. The winner's radius, as a fraction of the shorter side,
   snaps to the nearest named size (log scale). An object touching another on every frame
   is fitted at each named radius on the pixels no other object claims.
6. Track: the centroid on untouched frames; on touching frames, the center of the fitted
   shape on the pixels no other object claims (where enough of it is visible).
7. Motion and speed: per axis, the track is fitted by constant-speed motion bouncing off the
   walls where the object's extent meets the frame edge (the world's physics), from the first
   observed position. This unfolds bounces, so an object starting at a wall still gets its
   initial direction; at a tie the object leaves the wall rather than bouncing at once. The
   velocity snaps to one of eight directions (static below ``STATIC_FRACTION`` of the slowest
   named speed) and its magnitude in frame sides per second to the nearest named speed.

Readings are only as good as the pixels: on 32x32 clips after H.264, small objects (radius
about 2 pixels, on a 16x16 chroma plane) lose their shape now and then.

Follows: analysis-by-synthesis (render a hypothesis, compare it with the pixels) as in
inverse-graphics scene understanding; the world's own geometry (:mod:`reelm.data.synthetic.shapes`)
and physics (:func:`reelm.data.synthetic.scene.bounce`) are the hypotheses.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from skimage.color import rgb2lab

from reelm.data.synthetic.scene import COLORS, MOTIONS, OBJECT_KEYS, SIZES, SPEEDS, bounce
from reelm.data.synthetic.shapes import EXTENTS, SHAPES, inside
from reelm.core.errors import ReelmError

FG_DELTA_E = 20.0  # CIELAB distance from the background that makes a pixel foreground
MIN_AREA_FRACTION = 0.5  # of the smallest object the world draws (a small triangle)
MIN_PRESENCE = 0.5  # fraction of frames an object must be seen in
MIN_SHAPE_SCORE = 0.6  # best shape's soft Dice below which a blob is not an object (noise, smears)
HALO_WIDTH = 2  # pixels around an object where another color's pixels may be its mixed edge
HALO_FRACTION = 0.8  # of a piece's pixels within HALO_WIDTH of a larger object that make it that object's
FRAGMENT_FRACTION = 0.25  # of min_area: the smallest per-color piece that may join an object
REGION_DILATION = 2  # pixels around an object's mask that its coverage may reach
FULL_COVER_QUANTILE = 0.75  # an object's strongest quarter of pixels shows its full-coverage color
MIN_COLOR_STRENGTH = 0.5  # an object's color may be dimmed to this fraction over its background
CHROMA_WEIGHT = 0.25  # of chroma against luma when projecting a pixel onto an object's color
TEMPLATE_SUPERSAMPLE = 4  # samples per pixel side when rendering a template
TEMPLATE_BLURS = (0.0, 0.6, 1.2)  # Gaussian sigmas (pixels) a template may be blurred by
REFINE_SHAPES = 3  # best shapes whose center and radius are refined
REFINE_FRAMES = 8  # frames (spread over the clip) the refinement uses
REFINE_SCALES = (0.9, 0.95, 1.0, 1.05, 1.1)  # radius factors tried around the area's radius
REFINE_SUBSTEPS = 24  # sub-pixel steps per radius, 2..8 per pixel: finer for smaller objects
REFINE_SHIFT = 4  # sub-pixel steps the refined center may move each way
CENTER_SEARCH = 3  # grid half-width of a touching object's center search (1 px, then 1/4 px)
OCCLUDED_FIT_FRAMES = 4  # frames (largest visible area first) fitting an always-touching object
MIN_VISIBLE_FRACTION = 0.3  # of a touching object's template that must be visible to track it
BOUNCE_AT_START_PENALTY = 0.5  # squared pixels: at a tie, an object leaves the wall it starts at
VELOCITY_STEP = 0.05  # pixels per frame, grid of the bounce fit
STATIC_FRACTION = 0.4  # below this fraction of the slowest named speed an object is static

DIRECTIONS = tuple(m for m in MOTIONS if m != "static")
_COLOR_NAMES = tuple(COLORS)
_COLOR_RGB = np.array([COLORS[c] for c in _COLOR_NAMES], dtype=np.float32)  # (K, 3)
_YCBCR = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])  # BT.601
_METRIC = (_YCBCR.T @ np.diag([1.0, CHROMA_WEIGHT, CHROMA_WEIGHT]) @ _YCBCR).astype(np.float32)  # (3, 3)
_PER_FRAME_8 = np.zeros((3, 3, 3), dtype=bool)
_PER_FRAME_8[1] = True  # 8-connectivity within a frame, none across frames


class ClipReadError(ReelmError):
    """Frames that cannot be read: wrong shape or dtype, bad fps or max_objects."""


@dataclass
class ObjectReading:
    """One object read from frames: the five attributes and the evidence they came from.

    ``color`` is a named color; ``shape``, ``size``, ``motion`` and ``speed`` are named values
    or ``None`` when they could not be read (``speed`` is ``None`` for static objects).
    ``track`` holds the center ``[x, y]`` per frame (pixel ``i`` covers ``[i, i + 1)``), or
    ``None`` where the object was unseen or too hidden.
    """

    color: str
    shape: str | None
    size: str | None
    motion: str | None
    speed: str | None
    radius: float | None = None  # fraction of the shorter frame side
    speed_value: float | None = None  # frame sides per second
    velocity: tuple[float, float] | None = None  # initial (dx, dy), pixels per frame
    track: list[list[float] | None] = field(default_factory=list)
    area: float = 0.0  # mean soft area (pixels) over the frames it was seen in
    rgb: tuple[int, int, int] = (0, 0, 0)  # observed full-coverage color
    shape_scores: dict[str, float] = field(default_factory=dict)  # soft Dice per shape
    frames_seen: int = 0
    clean_frames: int = 0  # frames seen without touching another object
    fit_residual: float | None = None  # RMS pixels of the bounce fit

    def attributes(self) -> dict:
        """The five named attributes (``OBJECT_KEYS``) as a dict."""
        return {key: getattr(self, key) for key in OBJECT_KEYS}


def read_clip(frames: np.ndarray, fps: float, max_objects: int | None = None) -> list[ObjectReading]:
    """The objects in ``frames`` ``(T, H, W, 3)`` uint8 at ``fps``, largest first, at most ``max_objects``."""
    video = _check(frames, fps, max_objects)  # (T, H, W, 3) float32
    num_frames, height, width, _ = video.shape
    side = min(height, width)
    background = _background(video)  # (T, H, W, 3)
    offset = video - background  # (T, H, W, 3)
    labels = _color_labels(offset, background, _delta_e(video, background) > FG_DELTA_E)  # (T, H, W)
    min_area = max(3.0, MIN_AREA_FRACTION * _unit_area("triangle") * (min(SIZES.values()) * side) ** 2)
    pieces = [_largest_blobs(labels == k, FRAGMENT_FRACTION * min_area) for k in range(len(_COLOR_NAMES))]
    needed = max(1.0, MIN_PRESENCE * num_frames)
    objects = [m for m in _group(pieces) if ((m.sum(axis=(1, 2)) >= min_area).sum() >= needed)]
    readings = []
    for i, mask in enumerate(objects):
        others = np.zeros_like(mask)
        for j, other in enumerate(objects):
            if j != i:
                others |= other
        reading = _read_object(video, background, offset, mask, others, fps)
        if reading.shape_scores and max(reading.shape_scores.values()) >= MIN_SHAPE_SCORE:
            readings.append(reading)
    return readings[:max_objects]


def _check(frames: np.ndarray, fps: float, max_objects: int | None) -> np.ndarray:
    array = np.asarray(frames)
    if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8 or min(array.shape[:3]) < 1:
        raise ClipReadError(f"frames must be (T, H, W, 3) uint8, got {array.shape} {array.dtype}")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps < float("inf"):
        raise ClipReadError(f"fps must be a positive number, got {fps!r}")
    bad_count = isinstance(max_objects, bool) or not isinstance(max_objects, int) or max_objects < 1
    if max_objects is not None and bad_count:
        raise ClipReadError(f"max_objects must be a positive integer or None, got {max_objects!r}")
    return array.astype(np.float32)


def _background(video: np.ndarray) -> np.ndarray:
    """Per-frame background ``(T, H, W, 3)``: temporal median, object-like pixels filled, flicker kept."""
    still = np.median(video, axis=0)  # (H, W, 3)
    tone = np.median(still.reshape(-1, 3), axis=0)  # (3,)
    still[_delta_e(still, np.broadcast_to(tone, still.shape)) > FG_DELTA_E] = tone
    shift = np.median((video - still).reshape(len(video), -1, 3), axis=1)  # (T, 3)
    return still[None] + shift[:, None, None, :]


def _delta_e(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """CIE76 distance ``(...)`` between RGB arrays ``(..., 3)`` on 0..255."""
    return np.linalg.norm(_lab(a) - _lab(b), axis=-1)


def _color_labels(offset: np.ndarray, background: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    """Per pixel, the index of the named color its offset from the background points to; -1 off the foreground."""
    labels = np.full(foreground.shape, -1, dtype=np.int64)
    pixel, base = offset[foreground], background[foreground]  # (N, 3) each
    colors = _COLOR_RGB.astype(np.float64)  # (K, 3)
    base_dot = base @ colors.T  # (N, K)
    along = pixel @ colors.T - (pixel * base).sum(axis=1, keepdims=True)  # (N, K): pixel . (color - base)
    length = np.sqrt(np.maximum((colors**2).sum(axis=1) - 2 * base_dot + (base**2).sum(axis=1, keepdims=True), 1e-6))
    labels[foreground] = (along / length).argmax(axis=1)  # cosine up to the pixel's own norm
    return labels


def _largest_blobs(mask: np.ndarray, min_area: float) -> np.ndarray:
    """Per frame, the largest 8-connected blob of ``mask`` (T, H, W) if it has ``min_area`` pixels."""
    blobs, count = ndimage.label(mask, structure=_PER_FRAME_8)  # (T, H, W)
    if count == 0:
        return np.zeros_like(mask)
    sizes = np.bincount(blobs.ravel(), minlength=count + 1)  # (count + 1,)
    sizes[0] = 0
    frame_of = np.zeros(count + 1, dtype=np.int64)
    frame_of[blobs.ravel()] = np.repeat(np.arange(mask.shape[0]), mask[0].size)
    keep = np.zeros(count + 1, dtype=bool)
    for t in range(mask.shape[0]):
        ids = np.flatnonzero((frame_of == t) & (sizes >= min_area))
        if len(ids):
            keep[ids[sizes[ids].argmax()]] = True
    keep[0] = False
    return keep[blobs]


def _group(pieces: list[np.ndarray]) -> list[np.ndarray]:
    """Object masks ``(T, H, W)``, largest first, from per-color pieces: a piece whose pixels
    mostly hug a larger object's mask (its edge, in another color after a codec's chroma bleed
    or a blur) joins that object."""
    grow = np.ones((1, 2 * HALO_WIDTH + 1, 2 * HALO_WIDTH + 1), dtype=bool)
    groups: list[np.ndarray] = []
    grown: list[np.ndarray] = []
    for piece in sorted((p for p in pieces if p.any()), key=lambda p: -int(p.sum())):
        hugged = [int((piece & near).sum()) for near in grown]
        if hugged and max(hugged) >= HALO_FRACTION * piece.sum():
            i = int(np.argmax(hugged))
            groups[i] |= piece
            grown[i] |= ndimage.binary_dilation(piece, structure=grow)
        else:
            groups.append(piece.copy())
            grown.append(ndimage.binary_dilation(piece, structure=grow))
    return sorted(groups, key=lambda g: -int(g.sum()))


def _read_object(
    video: np.ndarray,
    background: np.ndarray,
    offset: np.ndarray,
    mask: np.ndarray,
    others: np.ndarray,
    fps: float,
) -> ObjectReading:
    """Read the object of ``mask`` (T, H, W); ``others`` (T, H, W) covers the other objects."""
    num_frames, height, width, _ = video.shape
    side = min(height, width)
    seen = mask.any(axis=(1, 2))  # (T,)
    rgb, color = _core_color(video[mask], offset[mask], background[mask])
    grow = np.ones((1, 2 * REGION_DILATION + 1, 2 * REGION_DILATION + 1), dtype=bool)
    region = ndimage.binary_dilation(mask, structure=grow)  # (T, H, W)
    valid = ~ndimage.binary_dilation(others, structure=np.ones((1, 3, 3), dtype=bool))  # (T, H, W)
    alpha = np.where(region & valid, _alpha(offset, background, rgb), 0.0)  # (T, H, W)
    areas = alpha.sum(axis=(1, 2))  # (T,)
    ys, xs = np.mgrid[0:height, 0:width] + 0.5  # (H, W) pixel centers
    with np.errstate(invalid="ignore", divide="ignore"):
        cx = (alpha * xs).sum(axis=(1, 2)) / areas  # (T,)
        cy = (alpha * ys).sum(axis=(1, 2)) / areas  # (T,)
    seen &= areas > 0
    clean = seen & ~(region & ~valid).any(axis=(1, 2))  # (T,)

    scores, shape, radius_px = _fit_shape(alpha, valid, cx, cy, areas, seen, clean, side)
    tracked = clean.copy()
    if shape:
        for t in np.flatnonzero(seen & ~clean):
            cx[t], cy[t], visible = _fit_center(alpha[t], valid[t], shape, radius_px, cx[t], cy[t])
            tracked[t] = visible >= MIN_VISIBLE_FRACTION
    velocity, residual = _velocity(cx, cy, tracked, shape, radius_px, height, width) if shape else (None, None)
    motion, speed, speed_value = _motion_speed(velocity, fps, side)
    return ObjectReading(
        color=color,
        shape=shape,
        size=_nearest_log(radius_px / side, SIZES) if shape else None,
        motion=motion,
        speed=speed,
        radius=round(radius_px / side, 4) if shape else None,
        speed_value=speed_value,
        velocity=velocity,
        track=[[round(float(cx[t]), 3), round(float(cy[t]), 3)] if tracked[t] else None for t in range(num_frames)],
        area=round(float(areas[seen].mean()), 2) if seen.any() else 0.0,
        rgb=tuple(int(round(c)) for c in rgb),
        shape_scores={s: round(float(v), 4) for s, v in scores.items()},
        frames_seen=int(seen.sum()),
        clean_frames=int(clean.sum()),
        fit_residual=residual,
    )


def _fit_shape(
    alpha: np.ndarray,
    valid: np.ndarray,
    cx: np.ndarray,
    cy: np.ndarray,
    areas: np.ndarray,
    seen: np.ndarray,
    clean: np.ndarray,
    side: int,
) -> tuple[dict[str, float], str | None, float]:
    """Shape scores, the best shape and its radius (pixels): from the frames where the object
    touches nothing, else (always touching) from its largest visible frames."""
    if clean.any():
        scores, radii = _shape_scores(alpha, cx, cy, areas, np.flatnonzero(clean))
        shape = max(scores, key=scores.get)
        return scores, shape, float(np.median(radii[shape]))
    if seen.any():
        frames = np.flatnonzero(seen)
        frames = frames[np.argsort(-areas[frames])][:OCCLUDED_FIT_FRAMES]
        scores, radius = _occluded_shape_scores(alpha, valid, cx, cy, frames, side)
        return scores, max(scores, key=scores.get), radius
    return {}, None, 0.0


def _velocity(
    cx: np.ndarray, cy: np.ndarray, tracked: np.ndarray, shape: str, radius: float, height: int, width: int
) -> tuple[tuple[float, float] | None, float | None]:
    """Initial velocity (pixels per frame) of the track's bouncing fit and its RMS residual (pixels)."""
    if tracked.sum() < 2:
        return None, None
    times = np.flatnonzero(tracked)
    x0, x1, y0, y1 = (e * radius for e in EXTENTS[shape])
    vx, error_x = _axis_velocity(times, cx[times], -x0, width - x1)
    vy, error_y = _axis_velocity(times, cy[times], -y0, height - y1)
    return (round(vx, 3), round(vy, 3)), round(math.sqrt((error_x + error_y) / len(times)), 3)


def _core_color(pixels: np.ndarray, offsets: np.ndarray, backgrounds: np.ndarray) -> tuple[np.ndarray, str]:
    """An object's full-coverage RGB ``(3,)`` and its named color, from its pixels ``(N, 3)``.

    The RGB (the reference for coverage) is the median of the pixels in the top
    ``1 - FULL_COVER_QUANTILE`` by distance from the background; the name is the nearest
    named color in CIELAB to the median of the stronger half, each named color allowed to be
    dimmed toward the local background down to ``MIN_COLOR_STRENGTH`` (blur, partial cover).
    """
    strength = np.linalg.norm(offsets, axis=-1)  # (N,)
    rgb = np.median(pixels[strength >= np.quantile(strength, FULL_COVER_QUANTILE)], axis=0)  # (3,)
    core = strength >= np.median(strength)  # (N,)
    background = np.median(backgrounds[core], axis=0)  # (3,)
    strengths = np.linspace(MIN_COLOR_STRENGTH, 1.0, 11)  # (A,)
    candidates = background + strengths[None, :, None] * (_COLOR_RGB[:, None, :] - background)  # (K, A, 3)
    distance = np.linalg.norm(_lab(candidates) - _lab(np.median(pixels[core], axis=0)), axis=-1).min(axis=1)  # (K,)
    return rgb, _COLOR_NAMES[int(distance.argmin())]


def _lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB of RGB ``(..., 3)`` on 0..255."""
    return rgb2lab(np.clip(rgb, 0, 255) / 255.0)


def _alpha(offset: np.ndarray, background: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """Coverage ``(T, H, W)`` in [0, 1]: each pixel's offset projected onto ``rgb - background``.

    Luma weighs above chroma (``CHROMA_WEIGHT``) since codecs keep chroma at half resolution;
    chroma still decides where the object's luma contrast is low.
    """
    toward = rgb - background  # (T, H, W, 3)
    weighted = toward @ _METRIC  # (T, H, W, 3)
    alpha = np.einsum("thwc,thwc->thw", offset, weighted) / (np.einsum("thwc,thwc->thw", toward, weighted) + 1e-6)
    return np.clip(alpha, 0.0, 1.0)


@functools.cache
def _unit_area(shape: str) -> float:
    """Area of ``shape`` at radius 1, measured on a fine grid."""
    grid = (np.arange(1000) + 0.5) / 500 - 1.0  # (1000,)
    return float(inside(shape, grid[None, :], grid[:, None]).mean() * 4.0)


@functools.cache
def _smallest_unit_area() -> float:
    return min(_unit_area(shape) for shape in SHAPES)


def _coverages(shape: str, cx: np.ndarray, cy: np.ndarray, radius, height: int, width: int) -> np.ndarray:
    """Anti-aliased coverage ``(C, H, W)`` of ``shape`` centered at each ``(cx, cy)`` (pixel
    coordinates), at one radius or one per center."""
    s = TEMPLATE_SUPERSAMPLE
    radius = np.broadcast_to(np.asarray(radius, dtype=np.float64), cx.shape)[:, None]  # (C, 1)
    sub_x = ((np.arange(width * s) + 0.5) / s - cx[:, None]) / radius  # (C, W*s)
    sub_y = ((np.arange(height * s) + 0.5) / s - cy[:, None]) / radius  # (C, H*s)
    covered = inside(shape, sub_x[:, None, :], sub_y[:, :, None])  # (C, H*s, W*s)
    return covered.reshape(len(cx), height, s, width, s).mean(axis=(2, 4))


def _raster_table(
    shape: str, radius: float, cx: float, cy: float, height: int, width: int, s: int, margin: int
) -> np.ndarray:
    """Integral image of ``shape`` (centered at ``(cx, cy)``) rasterized ``s`` times supersampled
    over a ``height`` x ``width`` patch widened by ``margin`` pixels each way."""
    sub_x = ((np.arange((width + 2 * margin) * s) + 0.5) / s - margin - cx) / radius  # (W',)
    sub_y = ((np.arange((height + 2 * margin) * s) + 0.5) / s - margin - cy) / radius  # (H',)
    raster = inside(shape, sub_x[None, :], sub_y[:, None]).astype(np.float32)  # (H', W')
    return np.pad(raster.cumsum(0).cumsum(1), ((1, 0), (1, 0)))  # (H' + 1, W' + 1)


def _shifted(table: np.ndarray, shifts: np.ndarray, height: int, width: int, s: int, margin: int) -> np.ndarray:
    """Coverage ``(C, H, W)`` of a :func:`_raster_table` shape moved by ``(dx, dy) / s`` pixels
    for each integer row of ``shifts`` (C, 2), each ``|d| < margin * s``: box sums of the table."""
    r0 = margin * s + np.arange(height)[None, :, None] * s - shifts[:, 1, None, None]  # (C, H, 1)
    c0 = margin * s + np.arange(width)[None, None, :] * s - shifts[:, 0, None, None]  # (C, 1, W)
    return (table[r0 + s, c0 + s] - table[r0, c0 + s] - table[r0 + s, c0] + table[r0, c0]) / s**2


def _grid(half: int, step: int = 1, center: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Integer offsets ``(C, 2)`` on a square grid around ``center``."""
    offsets = np.arange(-half, half + 1) * step
    gx, gy = np.meshgrid(center[0] + offsets, center[1] + offsets)
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def _subsampled(images: np.ndarray) -> np.ndarray:
    """``(..., h, w)`` (even ``h``, ``w``) as 4:2:0 chroma carries it: 2x2 means, each repeated 2x2."""
    *lead, h, w = images.shape
    means = images.reshape(*lead, h // 2, 2, w // 2, 2).mean(axis=(-3, -1), keepdims=True)
    return np.broadcast_to(means, (*lead, h // 2, 2, w // 2, 2)).reshape(images.shape)


def _patches(
    alpha: np.ndarray, cx: np.ndarray, cy: np.ndarray, reach: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Square patches ``(n, S, S)``, ``S = 2 reach + 2``, around each frame's centroid, their
    top and left (even, so 2x2 pooling keeps the frame's 4:2:0 grid), zero outside the frame."""
    size = 2 * reach + 2
    pad = size + size % 2
    padded = np.pad(alpha, ((0, 0), (pad, pad), (pad, pad)))  # (n, H + 2 pad, W + 2 pad)
    top = (np.floor(cy).astype(np.int64) - reach) // 2 * 2  # (n,)
    left = (np.floor(cx).astype(np.int64) - reach) // 2 * 2  # (n,)
    patches = [padded[i, y + pad : y + pad + size, x + pad : x + pad + size] for i, (y, x) in enumerate(zip(top, left))]
    return np.stack(patches), top, left  # (n, S, S), (n,), (n,)


def _shape_scores(
    alpha: np.ndarray, cx: np.ndarray, cy: np.ndarray, areas: np.ndarray, frames: np.ndarray
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Soft Dice ``1 - |coverage - template| / (|coverage| + |template|)`` of each shape over
    ``frames``, best over template variants, and each shape's radius (pixels) per frame."""
    reach = int(math.ceil(math.sqrt(areas[frames].max() / _smallest_unit_area()))) + 3  # any shape, plus blur
    patches, top, left = _patches(alpha[frames], cx[frames], cy[frames], reach)  # (n, S, S)
    mass = 2.0 * float(areas[frames].sum())
    scores, radii = {}, {}
    for shape in SHAPES:
        radii[shape] = np.sqrt(areas[frames] / _unit_area(shape))  # (n,)
        templates = _coverages(shape, cx[frames] - left, cy[frames] - top, radii[shape], *patches.shape[1:])
        errors = [float(np.abs(_subsampled(templates) - patches).sum())]
        for sigma in TEMPLATE_BLURS:
            blurred = ndimage.gaussian_filter(templates, (0, sigma, sigma), mode="constant") if sigma else templates
            errors.append(float(np.abs(blurred - patches).sum()))
        scores[shape] = 1.0 - min(errors) / mass
    picked = np.unique(np.linspace(0, len(frames) - 1, min(len(frames), REFINE_FRAMES)).round().astype(np.int64))
    for shape in sorted(scores, key=scores.get, reverse=True)[:REFINE_SHAPES]:
        scores[shape] = max(scores[shape], _refined_score(shape, patches[picked], cx[frames][picked] - left[picked],
                                                           cy[frames][picked] - top[picked], radii[shape][picked]))
    return scores, radii


def _refined_score(shape: str, patches: np.ndarray, cx: np.ndarray, cy: np.ndarray, radii: np.ndarray) -> float:
    """Soft Dice of ``shape`` with center and radius refined per frame by descent over a grid of
    sub-pixel shifts (up to ``REFINE_SHIFT`` steps of ``1 / s`` pixel) and ``REFINE_SCALES``;
    the sharp template or its 4:2:0 version, whichever fits better over the frames."""
    sharp = subsampled = mass = 0.0
    for patch, x, y, radius in zip(patches, cx, cy, radii):
        s = int(np.clip(round(REFINE_SUBSTEPS / radius), 2, 8))
        margin = REFINE_SHIFT // s + 1
        tables: dict[int, np.ndarray] = {}
        errors: dict[tuple[int, int, int], tuple[float, float]] = {}
        state = (len(REFINE_SCALES) // 2, 0, 0)
        while True:
            todo: dict[int, list[tuple[int, int]]] = {}
            for k in range(max(0, state[0] - 1), min(len(REFINE_SCALES), state[0] + 2)):
                for dx in range(max(-REFINE_SHIFT, state[1] - 1), min(REFINE_SHIFT, state[1] + 1) + 1):
                    for dy in range(max(-REFINE_SHIFT, state[2] - 1), min(REFINE_SHIFT, state[2] + 1) + 1):
                        if (k, dx, dy) not in errors:
                            todo.setdefault(k, []).append((dx, dy))
            for k, shifts in todo.items():
                if k not in tables:
                    tables[k] = _raster_table(shape, radius * REFINE_SCALES[k], x, y, *patch.shape, s, margin)
                templates = _shifted(tables[k], np.array(shifts), *patch.shape, s, margin)  # (C, S, S)
                sharp_errors = np.abs(templates - patch).sum(axis=(1, 2))  # (C,)
                subsampled_errors = np.abs(_subsampled(templates) - patch).sum(axis=(1, 2))  # (C,)
                for (dx, dy), e1, e2 in zip(shifts, sharp_errors, subsampled_errors):
                    errors[k, dx, dy] = (float(e1), float(e2))
            best = min(errors, key=lambda key: errors[key][0])
            if best == state:
                break
            state = best
        sharp += errors[state][0]
        subsampled += min(e[1] for e in errors.values())
        mass += 2.0 * float(patch.sum())
    return 1.0 - min(sharp, subsampled) / mass


def _fit_center(
    alpha: np.ndarray, valid: np.ndarray, shape: str, radius: float, cx: float, cy: float
) -> tuple[float, float, float]:
    """Center ``(cx, cy)`` of ``shape`` best explaining ``alpha`` (H, W) on ``valid`` pixels and
    the fraction of the template visible there: a 1-pixel, then a 1/4-pixel grid search."""
    s, height, width = TEMPLATE_SUPERSAMPLE, *alpha.shape
    reach = int(math.ceil(radius * 1.2)) + 1
    top, left = max(0, int(cy) - reach), max(0, int(cx) - reach)
    rows, cols = slice(top, min(height, int(cy) + reach + 1)), slice(left, min(width, int(cx) + reach + 1))
    patch, keep = alpha[rows, cols], valid[rows, cols]  # (h, w)
    margin = CENTER_SEARCH + 2
    table = _raster_table(shape, radius, cx - left, cy - top, *patch.shape, s, margin)
    best = (0, 0)
    for step in (s, 1):
        shifts = _grid(CENTER_SEARCH, step, best)  # (C, 2)
        templates = _shifted(table, shifts, *patch.shape, s, margin)  # (C, h, w)
        i = int((np.abs(templates - patch) * keep).sum(axis=(1, 2)).argmin())
        best = (int(shifts[i, 0]), int(shifts[i, 1]))
    visible = float((templates[i] * keep).sum() / max(float(templates[i].sum()), 1e-6))
    return cx + best[0] / s, cy + best[1] / s, visible


def _occluded_shape_scores(
    alpha: np.ndarray, valid: np.ndarray, cx: np.ndarray, cy: np.ndarray, frames: np.ndarray, side: int
) -> tuple[dict[str, float], float]:
    """Shape scores of an object touching another on every frame: each shape at each named
    radius, centered by :func:`_fit_center`, compared on the pixels no other object claims."""
    scores: dict[str, float] = {}
    best_radius, best_score = 0.0, -np.inf
    height, width = alpha.shape[1:]
    for shape in SHAPES:
        for fraction in SIZES.values():
            radius = fraction * side
            error = norm = 0.0
            for t in frames:
                x, y, _ = _fit_center(alpha[t], valid[t], shape, radius, cx[t], cy[t])
                template = _coverages(shape, np.array([x]), np.array([y]), radius, height, width)[0]  # (H, W)
                error += float((np.abs(template - alpha[t]) * valid[t]).sum())
                norm += float(((template + alpha[t]) * valid[t]).sum())
            score = 1.0 - error / max(norm, 1e-6)
            scores[shape] = max(scores.get(shape, -np.inf), score)
            if score > best_score:
                best_radius, best_score = radius, score
    return scores, best_radius


def _axis_velocity(times: np.ndarray, positions: np.ndarray, lo: float, hi: float) -> tuple[float, float]:
    """Velocity (pixels per frame) of the constant-speed, wall-bouncing fit to one axis of a
    track, and its summed squared error. Walls are widened to every observed position."""
    t = (times - times[0]).astype(np.float64)  # (n,)
    lo, hi = min(lo, float(positions.min())), max(hi, float(positions.max()))
    limit = 1.5 * float((np.abs(np.diff(positions)) / np.diff(t)).max()) + 1.0
    velocities = np.arange(-limit, limit + VELOCITY_STEP / 2, VELOCITY_STEP)  # (V,)
    starts = np.clip(positions[0] + np.linspace(-0.5, 0.5, 11), lo, hi)  # (S,)
    unbounded = starts[:, None, None] + velocities[None, :, None] * t[None, None, :]  # (S, V, n)
    predicted = bounce(unbounded, lo, hi) if hi > lo else unbounded
    error = ((predicted - positions) ** 2).sum(axis=-1)  # (S, V)
    error += BOUNCE_AT_START_PENALTY * ((unbounded[..., 1] < lo) | (unbounded[..., 1] > hi))
    best = np.unravel_index(error.argmin(), error.shape)
    return float(velocities[best[1]]), float(error[best])


def _motion_speed(
    velocity: tuple[float, float] | None, fps: float, side: int
) -> tuple[str | None, str | None, float | None]:
    """Named motion, named speed (``None`` when static) and speed in frame sides per second."""
    if velocity is None:
        return None, None, None
    value = math.hypot(*velocity) * fps / side
    if value < STATIC_FRACTION * min(SPEEDS.values()):
        return "static", None, round(value, 4)
    angle = math.atan2(velocity[1], velocity[0])
    motion = max(DIRECTIONS, key=lambda m: math.cos(angle - math.atan2(MOTIONS[m][1], MOTIONS[m][0])))
    return motion, _nearest_log(value, SPEEDS), round(value, 4)


def _nearest_log(value: float, table: dict[str, float]) -> str:
    return min(table, key=lambda name: abs(math.log(value / table[name])))
