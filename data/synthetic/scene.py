"""Scenes of the synthetic world: the attribute vocabulary, the held-out combinations, and
sampling a scene's ground truth (objects, their per-frame tracks, the background) without pixels.

Every object has a shape, a color, a size (radius as a fraction of the frame's shorter
side), a motion (eight directions or static) and a speed (frame sides per second; ``None``
when static), each drawn from a :class:`Vocabulary` (by default every value there is).
Where objects start is the vocabulary's ``start_positions``: ``"away"`` (the default) puts a
moving object in the half of the frame its motion leads away from; ``"independent"`` draws
every object's start from one region, the same for every motion, inside which no motion of
the vocabulary reaches a frame edge during the clip, so frame 0 says nothing about the motion.
Objects bounce off the frame edges, so the whole shape stays in frame on every frame; the
captioned motion is the initial direction. Objects in one scene have distinct colors.

Held-out combinations (``HELD_OUT``), never in the "train" or "val" splits, present in
every "heldout" clip, for compositional generalization tests:

- shape + color:  blue triangle, orange square, cyan star
- color + motion: red moving up, green moving left, white moving down-right

Track coordinates are pixels with pixel ``i`` covering ``[i, i + 1)``: ``center`` is
``[x, y]``, ``bbox`` is ``[x0, y0, x1, y1]``, and ``visible`` is false on frames where
the object's center is covered by an object drawn after it (later objects are on top).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from reelm.data.synthetic.shapes import EXTENTS, SHAPES, inside

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30),
    "green": (30, 200, 50),
    "blue": (40, 80, 255),
    "yellow": (245, 225, 30),
    "magenta": (225, 40, 225),
    "cyan": (30, 215, 230),
    "orange": (255, 140, 0),
    "white": (240, 240, 240),
}
SIZES: dict[str, float] = {"small": 0.07, "medium": 0.11, "large": 0.16}
SPEEDS: dict[str, float] = {"slow": 0.25, "fast": 0.6}
_D = 1 / math.sqrt(2)
MOTIONS: dict[str, tuple[float, float]] = {  # unit (dx, dy), y down
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
    "up-left": (-_D, -_D),
    "up-right": (_D, -_D),
    "down-left": (-_D, _D),
    "down-right": (_D, _D),
    "static": (0.0, 0.0),
}
BACKGROUND_TONES: dict[str, tuple[int, int, int]] = {
    "black": (14, 14, 16),
    "charcoal": (42, 42, 46),
    "grey": (78, 78, 78),
    "slate": (38, 46, 58),
}
BACKGROUND_KINDS = ("plain", "stripes", "checker", "noise")
STRIPE_ORIENTATIONS = ("horizontal", "vertical", "diagonal")
TEXTURE_CONTRAST = 22
NOISE_AMPLITUDE = 14.0

HELD_OUT: tuple[dict[str, str], ...] = (
    {"shape": "triangle", "color": "blue"},
    {"shape": "square", "color": "orange"},
    {"shape": "star", "color": "cyan"},
    {"color": "red", "motion": "up"},
    {"color": "green", "motion": "left"},
    {"color": "white", "motion": "down-right"},
)

SPLITS = ("train", "val", "heldout")
OBJECT_KEYS = ("shape", "color", "size", "motion", "speed")  # what a caption names per object
MIN_SEPARATION_TRIES = 20
DECIMALS = 3


START_POSITIONS = ("away", "independent")


@dataclass(kw_only=True)
class Vocabulary:
    """The attribute values a world draws from (a subset of the tables above, in their order) and where objects start.

    The world's configs (:class:`reelm.data.synthetic.world.WorldConfig`, ``WorldOptions``) extend it, so the
    same keys are ``--set world.shapes=[...]`` settings everywhere.
    """

    shapes: tuple[str, ...] = SHAPES
    colors: tuple[str, ...] = tuple(COLORS)
    sizes: tuple[str, ...] = tuple(SIZES)
    motions: tuple[str, ...] = tuple(MOTIONS)
    speeds: tuple[str, ...] = tuple(SPEEDS)
    start_positions: str = "away"

    def problems(self) -> list[str]:
        """What is wrong with these values, one message each (empty when they are usable)."""
        found = []
        for name, table in (("shapes", SHAPES), ("colors", COLORS), ("sizes", SIZES), ("motions", MOTIONS),
                            ("speeds", SPEEDS)):
            values = getattr(self, name)
            if isinstance(values, str) or not isinstance(values, (list, tuple)):
                found.append(f"world {name} must be a list of names, got {values!r}")
                continue
            unknown = [v for v in values if v not in table]
            if not values or unknown or len(set(values)) != len(values):
                found.append(f"world {name} must be distinct values from {list(table)}, got {list(values)!r}")
        if self.start_positions not in START_POSITIONS:
            found.append(f"world start_positions must be one of {list(START_POSITIONS)}, got {self.start_positions!r}")
        return found

    def held_out(self) -> tuple[dict[str, str], ...]:
        """The ``HELD_OUT`` combinations this vocabulary can draw."""
        tables = {"shape": self.shapes, "color": self.colors, "motion": self.motions}
        return tuple(combo for combo in HELD_OUT if all(v in tables[k] for k, v in combo.items()))

    def draws_seen(self) -> bool:
        """Whether some object of this vocabulary has no held-out combination (what "train" and "val" draw)."""
        return any(not any(_matches({"shape": shape, "color": color, "motion": motion}, combo) for combo in HELD_OUT)
                   for shape in self.shapes for color in self.colors for motion in self.motions)

    def vocabulary(self) -> Vocabulary:
        """These values alone (a world config's, without its geometry)."""
        return Vocabulary(**{f: getattr(self, f) for f in VOCABULARY_FIELDS})


FULL = Vocabulary()
VOCABULARY_FIELDS = ("shapes", "colors", "sizes", "motions", "speeds", "start_positions")


def held_out_matches(attributes: dict) -> list[dict[str, str]]:
    """The ``HELD_OUT`` combinations present in a scene (``attributes["objects"]``), in order."""
    return [dict(combo) for combo in HELD_OUT if any(_matches(obj, combo) for obj in attributes["objects"])]


def is_held_out(attributes: dict) -> bool:
    """Whether any object of the scene has a held-out combination."""
    return bool(held_out_matches(attributes))


def _matches(obj: dict, combo: dict[str, str]) -> bool:
    return all(obj.get(key) == value for key, value in combo.items())


def sample_scene(
    rng: np.random.Generator,
    *,
    height: int,
    width: int,
    num_frames: int,
    fps: float,
    max_objects: int,
    textured: bool,
    split: str,
    vocabulary: Vocabulary = FULL,
) -> dict:
    """Draw one scene's ground truth: ``{"background": ..., "objects": [...]}`` with tracks."""
    objects = _sample_objects(rng, int(rng.integers(1, max_objects + 1)), split, vocabulary)
    background = _sample_background(rng, height, width, textured)
    starts: list[tuple[float, float, float]] = []
    reach = _reach(vocabulary, height, width, num_frames, fps) if vocabulary.start_positions == "independent" else None
    for obj in objects:
        obj["radius"] = round(SIZES[obj["size"]] * min(height, width), DECIMALS)
        center = _sample_start(rng, obj, height, width, starts, reach)
        starts.append((*center, obj["radius"]))
        obj["track"] = _track(obj, center, height, width, num_frames, fps)
    _mark_occlusions(objects)
    return {"background": background, "objects": objects}


def _sample_objects(rng: np.random.Generator, count: int, split: str, vocabulary: Vocabulary) -> list[dict]:
    """``count`` objects with distinct colors; for "heldout", one carries a held-out combination."""
    objects: list[dict] = []
    held_out = vocabulary.held_out()
    if split == "heldout":
        combo = held_out[int(rng.integers(len(held_out)))]
        objects.append(_sample_object(rng, vocabulary, fixed=combo, used_colors=set()))
    count = min(count, len(vocabulary.colors))
    while len(objects) < count:
        obj = _sample_object(rng, vocabulary, fixed={}, used_colors={o["color"] for o in objects})
        if split == "heldout" or not any(_matches(obj, combo) for combo in HELD_OUT):
            objects.append(obj)
    if split == "heldout":
        objects.insert(int(rng.integers(count)), objects.pop(0))
    return objects


def _sample_object(rng: np.random.Generator, vocabulary: Vocabulary, *, fixed: dict[str, str],
                   used_colors: set[str]) -> dict:
    colors = [c for c in vocabulary.colors if c not in used_colors]
    obj = {
        "shape": vocabulary.shapes[int(rng.integers(len(vocabulary.shapes)))],
        "color": colors[int(rng.integers(len(colors)))],
        "size": vocabulary.sizes[int(rng.integers(len(vocabulary.sizes)))],
        "motion": vocabulary.motions[int(rng.integers(len(vocabulary.motions)))],
        "speed": vocabulary.speeds[int(rng.integers(len(vocabulary.speeds)))],
    }
    obj.update(fixed)
    if obj["motion"] == "static":
        obj["speed"] = None
    return obj


def center_range(obj: dict, height: int, width: int) -> tuple[float, float, float, float]:
    """``(x_lo, x_hi, y_lo, y_hi)``: where the center may be with the whole shape in frame."""
    x0, x1, y0, y1 = (e * obj["radius"] for e in EXTENTS[obj["shape"]])
    return -x0, width - x1, -y0, height - y1


def _reach(vocabulary: Vocabulary, height: int, width: int, num_frames: int, fps: float) -> tuple[float, float]:
    """``(x, y)`` pixels the farthest-moving object of the vocabulary travels along each axis during a clip."""
    fastest = max(SPEEDS[s] for s in vocabulary.speeds) * min(height, width) / fps * max(num_frames - 1, 0)
    moving = [MOTIONS[m] for m in vocabulary.motions if m != "static"]
    return (fastest * max((abs(ux) for ux, _ in moving), default=0.0),
            fastest * max((abs(uy) for _, uy in moving), default=0.0))


def _sample_start(
    rng: np.random.Generator, obj: dict, height: int, width: int, others: list[tuple[float, float, float]],
    reach: tuple[float, float] | None = None,
) -> tuple[float, float]:
    """A start center (see the module docstring: ``reach`` set means independent of the motion), apart from
    earlier objects if it can be."""
    x_lo, x_hi, y_lo, y_hi = center_range(obj, height, width)
    vx, vy = MOTIONS[obj["motion"]]
    if reach is not None:  # one region for every motion: the center, shrunk by how far any motion travels
        x_lo, x_hi = _shrunk(x_lo, x_hi, reach[0])
        y_lo, y_hi = _shrunk(y_lo, y_hi, reach[1])
        vx = vy = 0.0
    for _ in range(MIN_SEPARATION_TRIES):
        center = (_start_coord(rng, x_lo, x_hi, vx), _start_coord(rng, y_lo, y_hi, vy))
        if all(math.dist(center, (ox, oy)) >= obj["radius"] + r for ox, oy, r in others):
            break
    return center


def _shrunk(lo: float, hi: float, margin: float) -> tuple[float, float]:
    """``[lo + margin, hi - margin]``, or the middle of ``[lo, hi]`` where that is empty."""
    if hi - lo <= 2 * margin:
        mid = (lo + hi) / 2
        return mid, mid
    return lo + margin, hi - margin


def _start_coord(rng: np.random.Generator, lo: float, hi: float, velocity: float) -> float:
    mid = (lo + hi) / 2
    if velocity > 0:
        return float(rng.uniform(lo, mid))
    if velocity < 0:
        return float(rng.uniform(mid, hi))
    return float(rng.uniform(lo, hi))


def _track(obj: dict, start: tuple[float, float], height: int, width: int, num_frames: int, fps: float) -> dict:
    """Per-frame center and bbox, moving at the object's speed and bouncing off the edges."""
    x_lo, x_hi, y_lo, y_hi = center_range(obj, height, width)
    step = SPEEDS[obj["speed"]] * min(height, width) / fps if obj["speed"] else 0.0  # pixels per frame
    ux, uy = MOTIONS[obj["motion"]]
    t = np.arange(num_frames)  # (T,)
    cx = np.round(bounce(start[0] + ux * step * t, x_lo, x_hi), DECIMALS)  # (T,)
    cy = np.round(bounce(start[1] + uy * step * t, y_lo, y_hi), DECIMALS)  # (T,)
    x0, x1, y0, y1 = (e * obj["radius"] for e in EXTENTS[obj["shape"]])
    bbox = np.round(np.stack([cx + x0, cy + y0, cx + x1, cy + y1], axis=1), DECIMALS)  # (T, 4)
    return {
        "center": np.stack([cx, cy], axis=1).tolist(),
        "bbox": bbox.tolist(),
        "visible": [True] * num_frames,
    }


def bounce(position: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Fold unbounded positions into ``[lo, hi]`` as a ball bouncing between two walls."""
    span = hi - lo
    if span <= 0:
        return np.full_like(position, (lo + hi) / 2)
    phase = np.mod(position - lo, 2 * span)
    return lo + np.where(phase <= span, phase, 2 * span - phase)


def _mark_occlusions(objects: list[dict]) -> None:
    """Set ``visible`` false where a later (upper) object covers an object's center."""
    for j, obj in enumerate(objects):
        center = np.asarray(obj["track"]["center"])  # (T, 2)
        covered = np.zeros(len(center), dtype=bool)  # (T,)
        for upper in objects[j + 1 :]:
            offset = (center - np.asarray(upper["track"]["center"])) / upper["radius"]  # (T, 2)
            covered |= inside(upper["shape"], offset[:, 0], offset[:, 1])
        obj["track"]["visible"] = (~covered).tolist()


def _sample_background(rng: np.random.Generator, height: int, width: int, textured: bool) -> dict:
    """A plain or low-contrast textured, desaturated dark background (never an object color)."""
    kind = BACKGROUND_KINDS[int(rng.integers(len(BACKGROUND_KINDS)))] if textured else "plain"
    tone = list(BACKGROUND_TONES)[int(rng.integers(len(BACKGROUND_TONES)))]
    base = BACKGROUND_TONES[tone]
    background: dict = {"kind": kind, "tone": tone, "rgb": [list(base)]}
    if kind in ("stripes", "checker"):
        background["rgb"].append([c + TEXTURE_CONTRAST for c in base])
        period = round(float(rng.uniform(0.1, 0.25)) * min(height, width), DECIMALS)
        background["period"] = max(period, 2.0)
    if kind == "stripes":
        background["orientation"] = STRIPE_ORIENTATIONS[int(rng.integers(len(STRIPE_ORIENTATIONS)))]
    if kind == "noise":
        background["grid"] = [int(rng.integers(3, 8)), int(rng.integers(3, 8))]
        background["amplitude"] = NOISE_AMPLITUDE
        background["seed"] = int(rng.integers(2**31))
    return background
