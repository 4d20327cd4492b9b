"""Prompt adherence in the synthetic world: scoring what frames or captions show against what was asked.

- :func:`read_clip` (from :mod:`reelm.eval.scene_reader`) reads each object's color, shape,
  size, motion and speed from decoded frames alone.
- :func:`score_against` scores readings against an attributes dict: what
  :func:`reelm.data.synthetic.captions.parse_caption` makes of a prompt, or a clip's ground truth.
  Attributes the prompt leaves out (``None``) are not scored, so "a red circle moves to the
  left" scores color, shape and motion only.
- :func:`caption_accuracy` scores a generated caption (video-to-text) against ground truth:
  which of the true attributes it names correctly; an attribute it leaves out is wrong.
- :func:`aggregate` sums many clips' scores into accuracy per attribute and overall.

    readings = read_clip(frames, fps=8.0)  # (T, H, W, 3) uint8 decoded frames
    score = score_against(readings, parse_caption("a red circle moves to the left"))
    score["accuracy"], score["attributes"]["motion"]  # 1.0, {"correct": 1, "total": 1, ...}
    report = aggregate(scores_of_many_clips)

``fps`` must be the clip's true frame rate (speeds are frame sides per second). Pass
``max_objects`` (the world's, e.g. 2) to keep only the largest objects read.

Expected objects are matched one-to-one to read objects by color first (a color match
outweighs agreement on every other attribute), then by how many other attributes agree
(Hungarian assignment). An expected object with no read object left is "not found" and
all its scored attributes count as wrong; read objects left over are counted as ``extra``.

Follows: VBench (Huang et al., 2024) — per-dimension scores with every sample's own result
kept — applied to the attribute vocabulary of :mod:`reelm.data.synthetic.scene`.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from reelm.data.synthetic.captions import parse_caption
from reelm.data.synthetic.scene import OBJECT_KEYS
from reelm.core.errors import ReelmError
from reelm.eval.scene_reader import ClipReadError, ObjectReading, read_clip

__all__ = [
    "ATTRIBUTES",
    "AdherenceError",
    "ClipReadError",
    "ObjectReading",
    "aggregate",
    "caption_accuracy",
    "read_clip",
    "score_against",
]

ATTRIBUTES = OBJECT_KEYS  # ("shape", "color", "size", "motion", "speed")
COLOR_WEIGHT = len(ATTRIBUTES)  # a color match outweighs agreement on all other attributes


class AdherenceError(ReelmError):
    """Expected attributes or scores that cannot be used: not an ``{"objects": [...]}`` dict."""


def score_against(readings: Sequence[ObjectReading | Mapping], expected: Mapping) -> dict:
    """Score ``readings`` (from :func:`read_clip`, or attribute dicts) against ``expected``.

    Returns ``attributes`` (per attribute ``correct``, ``total``, ``accuracy``), overall
    ``correct``, ``total`` and ``accuracy`` (``None`` when nothing is scored), ``found`` (of
    ``expected_objects``), ``extra`` read objects, and ``objects``: per expected object its
    attributes, the index of the reading it was matched to (``None``: not found) and, per
    scored attribute, whether it was right.
    """
    wanted = _objects(expected, "expected")
    got = [r.attributes() if isinstance(r, ObjectReading) else _attributes(r, "reading") for r in readings]
    return _score(wanted, got)


def caption_accuracy(caption: str, attributes: Mapping, *, keys: Sequence[str] = ATTRIBUTES) -> dict:
    """Score a generated ``caption`` against a clip's ground-truth ``attributes``.

    The caption is parsed with :func:`reelm.data.synthetic.captions.parse_caption`; every ground-truth
    attribute in ``keys`` (``None`` ones, the speed of a static object, aside) counts, and one the
    caption does not name is wrong. ``keys`` leaves out attributes a world never varies (one size,
    one speed), which tell nothing about the clip. Same result layout as :func:`score_against`
    (``extra``: clauses describing objects the clip does not have).
    """
    if not isinstance(caption, str):
        raise AdherenceError(f"caption must be a string, got {type(caption).__name__}")
    unknown = [key for key in keys if key not in ATTRIBUTES]
    if unknown:
        raise AdherenceError(f"unknown attributes {unknown}; choose from {list(ATTRIBUTES)}")
    wanted = [{key: (value if key in keys else None) for key, value in obj.items()}
              for obj in _objects(attributes, "attributes")]
    return _score(wanted, parse_caption(caption)["objects"])


def aggregate(scores: Iterable[Mapping]) -> dict:
    """Sum :func:`score_against` / :func:`caption_accuracy` results over clips.

    Returns ``clips``, ``attributes`` (per attribute ``correct``, ``total``, ``accuracy``),
    overall ``correct``, ``total``, ``accuracy`` (pooled over attributes), ``clip_accuracy``
    (mean of the clips' own accuracies), ``expected_objects``, ``found`` and ``extra``.
    """
    totals = {key: [0, 0] for key in ATTRIBUTES}
    clips, per_clip, expected, found, extra = 0, [], 0, 0, 0
    for score in scores:
        if not isinstance(score, Mapping) or "attributes" not in score:
            raise AdherenceError(f"aggregate takes score dicts from score_against, got {type(score).__name__}")
        clips += 1
        for key in ATTRIBUTES:
            totals[key][0] += score["attributes"][key]["correct"]
            totals[key][1] += score["attributes"][key]["total"]
        if score["accuracy"] is not None:
            per_clip.append(score["accuracy"])
        expected, found, extra = expected + score["expected_objects"], found + score["found"], extra + score["extra"]
    correct, total = sum(c for c, _ in totals.values()), sum(n for _, n in totals.values())
    return {
        "clips": clips,
        "attributes": {key: _ratio(c, n) for key, (c, n) in totals.items()},
        **_ratio(correct, total),
        "clip_accuracy": float(np.mean(per_clip)) if per_clip else None,
        "expected_objects": expected,
        "found": found,
        "extra": extra,
    }


def _score(wanted: list[dict], got: list[dict]) -> dict:
    match = _match(wanted, got)
    totals = {key: [0, 0] for key in ATTRIBUTES}
    objects = []
    for i, obj in enumerate(wanted):
        j = match.get(i)
        right = {}
        for key in ATTRIBUTES:
            if obj.get(key) is None:
                continue
            right[key] = j is not None and got[j].get(key) == obj[key]
            totals[key][0] += right[key]
            totals[key][1] += 1
        objects.append({"expected": {key: obj.get(key) for key in ATTRIBUTES}, "read": j, "correct": right})
    correct, total = sum(c for c, _ in totals.values()), sum(n for _, n in totals.values())
    return {
        "attributes": {key: _ratio(c, n) for key, (c, n) in totals.items()},
        **_ratio(correct, total),
        "expected_objects": len(wanted),
        "found": len(match),
        "extra": len(got) - len(match),
        "objects": objects,
    }


def _match(wanted: list[dict], got: list[dict]) -> dict[int, int]:
    """Expected index -> read index, one-to-one, maximising color-first agreement."""
    if not wanted or not got:
        return {}
    agreement = np.zeros((len(wanted), len(got)))
    for i, obj in enumerate(wanted):
        for j, other in enumerate(got):
            for key in ATTRIBUTES:
                if obj.get(key) is not None and other.get(key) == obj[key]:
                    agreement[i, j] += COLOR_WEIGHT if key == "color" else 1
    rows, cols = linear_sum_assignment(agreement, maximize=True)
    return {int(i): int(j) for i, j in zip(rows, cols)}


def _ratio(correct: int, total: int) -> dict:
    return {"correct": int(correct), "total": int(total), "accuracy": correct / total if total else None}


def _objects(attributes: Mapping, name: str) -> list[dict]:
    objects = attributes.get("objects") if isinstance(attributes, Mapping) else None
    if not isinstance(objects, (list, tuple)):
        raise AdherenceError(f"{name} must be a dict with an 'objects' list, got {type(attributes).__name__}")
    return [_attributes(obj, f"{name} object") for obj in objects]


def _attributes(obj: Mapping, name: str) -> dict:
    if not isinstance(obj, Mapping):
        raise AdherenceError(f"each {name} must be a dict of {list(ATTRIBUTES)}, got {type(obj).__name__}")
    return {key: obj.get(key) for key in ATTRIBUTES}
