"""Captions of synthetic-world scenes: templates and paraphrases from attributes, and parsing back.

A caption describes every object in scene order, as one clause each, joined by "and" /
"while" / "meanwhile", optionally followed by the background ("on a grey striped
background"). A clause always names the object's color, shape and motion and, like real
captions, names its size and speed only sometimes. Each attribute value has a few word
forms; ``parse_caption`` inverts any caption ``caption_for`` can write (attributes a caption
leaves out parse as ``None``). :func:`typed_prompt` is how a person would type it.

    a small red circle moves to the left slowly
    a red circle, small, sliding left slowly
    a blue square drifts upward and a tiny white star stays still
"""

from __future__ import annotations

import re

import numpy as np

from reelm.data.synthetic.scene import COLORS

SHAPE_WORDS = {
    "circle": ("circle", "disc"),
    "square": ("square",),
    "triangle": ("triangle",),
    "diamond": ("diamond", "rhombus"),
    "cross": ("cross", "plus sign"),
    "star": ("star",),
}
COLOR_WORDS = {name: (name,) for name in COLORS}
SIZE_WORDS = {"small": ("small", "tiny"), "medium": ("medium-sized", "mid-sized"), "large": ("large", "big")}
DIRECTION_WORDS = {
    "left": ("to the left", "left", "leftward"),
    "right": ("to the right", "right", "rightward"),
    "up": ("up", "upward"),
    "down": ("down", "downward"),
    "up-left": ("to the upper left", "diagonally up-left"),
    "up-right": ("to the upper right", "diagonally up-right"),
    "down-left": ("to the lower left", "diagonally down-left"),
    "down-right": ("to the lower right", "diagonally down-right"),
}
SPEED_WORDS = {"slow": ("slowly", "at a slow pace"), "fast": ("quickly", "fast", "at high speed")}
SPEED_ADVERBS = {"slow": ("slowly",), "fast": ("quickly", "rapidly")}
MOVE_VERBS = ("moves", "slides", "drifts", "travels", "glides")
MOVE_PARTICIPLES = ("moving", "sliding", "drifting", "travelling", "gliding")
STATIC_VERBS = ("stays still", "sits still", "does not move", "stays in place")
STATIC_PARTICIPLES = ("staying still", "sitting still", "not moving", "resting in place")
BACKGROUND_WORDS = {"plain": ("plain",), "stripes": ("striped",), "checker": ("checkered",), "noise": ("mottled",)}
JOINERS = (" and ", ", while ", "; meanwhile ")
PREFIXES = ("", "a video of ", "footage of ")
BACKGROUND_PROBABILITY = 0.5

SIZE_PROBABILITY = 0.6  # a caption names an object's size this often (color, shape and motion always)
SPEED_PROBABILITY = 0.6  # ... and a moving object's speed this often: captions, like people, leave things out
_TEMPLATES = {  # (finite verb, static, names the size, names the speed) -> clause templates
    (True, False, True, True): (
        "a {size} {color} {shape} {verb} {direction} {speed}",
        "a {size} {color} {shape} {adverb} {verb} {direction}",
    ),
    (True, False, True, False): ("a {size} {color} {shape} {verb} {direction}",),
    (True, False, False, True): ("a {color} {shape} {verb} {direction} {speed}", "a {color} {shape} {adverb} {verb} {direction}"),
    (True, False, False, False): ("a {color} {shape} {verb} {direction}",),
    (False, False, True, True): (
        "a {color} {shape}, {size}, {participle} {direction} {speed}",
        "a {size} {color} {shape} {participle} {direction} {speed}",
    ),
    (False, False, True, False): ("a {size} {color} {shape} {participle} {direction}",
                                  "a {color} {shape}, {size}, {participle} {direction}"),
    (False, False, False, True): ("a {color} {shape} {participle} {direction} {speed}",),
    (False, False, False, False): ("a {color} {shape} {participle} {direction}",),
    (True, True, True, False): ("a {size} {color} {shape} {verb}",),
    (True, True, False, False): ("a {color} {shape} {verb}",),
    (False, True, True, False): ("a {color} {shape}, {size}, {participle}", "a {size} {color} {shape} {participle}"),
    (False, True, False, False): ("a {color} {shape} {participle}",),
}


def caption_for(attributes: dict, rng: np.random.Generator) -> str:
    """A caption of a scene's ``attributes`` (``objects``, ``background``), paraphrased by ``rng``."""
    objects = attributes["objects"]
    finite = bool(rng.integers(2))
    clauses = [_clause(obj, rng, finite) for obj in objects]
    if finite:
        text = _pick(rng, JOINERS).join(clauses)
    else:
        text = _pick(rng, PREFIXES) + " and ".join(clauses)
    if rng.random() < BACKGROUND_PROBABILITY:
        background = attributes["background"]
        kind = _pick(rng, BACKGROUND_WORDS[background["kind"]])
        text += f", {_pick(rng, ('on', 'over', 'against'))} a {background['tone']} {kind} background"
    return text


def _clause(obj: dict, rng: np.random.Generator, finite: bool) -> str:
    static = obj["motion"] == "static"
    names_size = bool(rng.random() < SIZE_PROBABILITY)
    names_speed = not static and bool(rng.random() < SPEED_PROBABILITY)
    template = _pick(rng, _TEMPLATES[finite, static, names_size, names_speed])
    words = {
        "size": _pick(rng, SIZE_WORDS[obj["size"]]),
        "color": _pick(rng, COLOR_WORDS[obj["color"]]),
        "shape": _pick(rng, SHAPE_WORDS[obj["shape"]]),
        "verb": _pick(rng, STATIC_VERBS if static else MOVE_VERBS),
        "participle": _pick(rng, STATIC_PARTICIPLES if static else MOVE_PARTICIPLES),
    }
    if not static:
        words["direction"] = _pick(rng, DIRECTION_WORDS[obj["motion"]])
        words["speed"] = _pick(rng, SPEED_WORDS[obj["speed"]])
        words["adverb"] = _pick(rng, SPEED_ADVERBS[obj["speed"]])
    clause = template.format(**words)
    return "an" + clause[1:] if clause[2] in "aeiou" else clause


def typed_prompt(obj: dict) -> str:
    """A prompt as a person types it: color, shape and motion in their plainest words ("a red circle moves to
    the left", "a green star stays still")."""
    motion = STATIC_VERBS[0] if obj["motion"] == "static" else f"{MOVE_VERBS[0]} {DIRECTION_WORDS[obj['motion']][0]}"
    return f"a {COLOR_WORDS[obj['color']][0]} {SHAPE_WORDS[obj['shape']][0]} {motion}"


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _matcher(table: dict[str, tuple[str, ...]]) -> tuple[re.Pattern, dict[str, str]]:
    """One regex over every word form of a table (longest first) and the form -> value map."""
    lookup = {form: value for value, forms in table.items() for form in forms}
    alternatives = "|".join(re.escape(form) for form in sorted(lookup, key=len, reverse=True))
    return re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])"), lookup


_MATCHERS = {
    "shape": _matcher(SHAPE_WORDS),
    "color": _matcher(COLOR_WORDS),
    "size": _matcher(SIZE_WORDS),
    "motion": _matcher({**DIRECTION_WORDS, "static": STATIC_VERBS + STATIC_PARTICIPLES}),
    "speed": _matcher({speed: SPEED_WORDS[speed] + SPEED_ADVERBS[speed] for speed in SPEED_WORDS}),
}
_JOINER = re.compile("|".join(re.escape(j) for j in JOINERS))
_BACKGROUND = re.compile(r", (?:on|over|against) a (\w+) (\w+) background$")
_BACKGROUND_KINDS = {form: kind for kind, forms in BACKGROUND_WORDS.items() for form in forms}


def parse_caption(caption: str) -> dict:
    """Invert :func:`caption_for`: ``{"objects": [{shape, color, size, motion, speed}], "background"}``.

    Attributes a clause does not name are ``None``; ``background`` is ``{"kind", "tone"}``
    or ``None`` when the caption does not mention it.
    """
    text = caption.strip().lower()
    background = None
    found = _BACKGROUND.search(text)
    if found and found.group(2) in _BACKGROUND_KINDS:
        background = {"kind": _BACKGROUND_KINDS[found.group(2)], "tone": found.group(1)}
        text = text[: found.start()]
    for prefix in PREFIXES:
        if prefix and text.startswith(prefix):
            text = text[len(prefix) :]
    return {"objects": [_parse_clause(clause) for clause in _JOINER.split(text)], "background": background}


def _parse_clause(clause: str) -> dict:
    obj = {}
    for key, (pattern, lookup) in _MATCHERS.items():
        found = pattern.search(clause)
        obj[key] = lookup[found.group(0)] if found else None
    return obj
