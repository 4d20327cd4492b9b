"""Story clips of the synthetic world: one object whose motion (and, optionally, color) changes at known frames.

A story clip starts as a world clip (its first segment, ``first_frames`` long, is an ordinary
clip of the world's one-object scenes) and goes on for more segments of ``segment_frames``
each; at every boundary the object takes a new motion drawn from the world's vocabulary (one
that keeps it inside the frame for the whole segment, so no bounce hides the motion) and, with
``color_changes``, sometimes a new color. Outside the "heldout" split no segment shows a held-out
combination (a red object moving up, a blue triangle: :data:`reelm.data.synthetic.scene.HELD_OUT`),
as no world clip of those splits does. The track continues from where the last segment
left the object, so the clip is one continuous shot.

Every segment carries its ground truth (``start``, ``end`` frames, the object's attributes as
:func:`reelm.eval.adherence.score_against` reads them), the prompt a person would type for it
alone (:func:`~reelm.data.synthetic.captions.typed_prompt`) and the way people tell a story
("a red circle moves to the right, then it moves up, then it turns blue and moves left"):
:attr:`StoryClip.caption`.

:func:`story_row` makes the LM's training story: a 2-segment clip of the world's clip length whose
motion (or color) changes at a given frame, captioned by its second segment alone (the world's
phrasing of it, or the way a story goes on: "then it moves up"). As a continuation example
(:mod:`reelm.data.token_layout`, "Stories") its context shows the first segment and the text
says what comes next.

Follows: Phenaki's story prompts (a sentence a segment, one continuous video).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from reelm.core.config import ConfigError
from reelm.data.synthetic.captions import DIRECTION_WORDS, caption_for, typed_prompt
from reelm.data.synthetic.render import render_frames
from reelm.data.synthetic.scene import DECIMALS, EXTENTS, MOTIONS, SPEEDS, SPLITS, bounce, center_range, is_held_out
from reelm.data.synthetic.world import SyntheticWorld, WorldConfig


@dataclass(frozen=True, eq=False)
class StoryClip:
    frames: np.ndarray  # (T, H, W, 3) uint8, the whole story
    segments: list[dict]  # each: index, start, end, prompt, sentence, change, attributes ({"objects": [...]})
    attributes: dict  # the first segment's world attributes (background, geometry, split, seed, index)
    index: int
    anchor_gap: int = 0  # frames left out after the first (an anchored training row, see story_row)

    @property
    def changes(self) -> list[int]:
        """The frames where a segment starts, after the first."""
        return [s["start"] for s in self.segments[1:]]

    @property
    def caption(self) -> str:
        """The story told the way people do: the first segment's prompt, then ", then ..." for each change."""
        return ", ".join(s["sentence"] for s in self.segments)


def story_clip(world: WorldConfig, index: int, *, segments: int | tuple[int, int] = (2, 4), first_frames: int | None = None,
               segment_frames: int = 8, color_changes: bool = False) -> StoryClip:
    """Story clip ``index`` of ``world`` (one object, see the module docstring): ``segments`` is a count or a
    ``(fewest, most)`` range drawn per clip; the first segment is ``first_frames`` long (default: the world's
    clip length), every later one ``segment_frames``."""
    first_frames = world.num_frames if first_frames is None else first_frames
    if first_frames < 2 or segment_frames < 2:
        raise ConfigError(f"story segments must be at least 2 frames, got {first_frames} and {segment_frames}")
    if world.max_objects != 1:
        raise ConfigError(f"story clips follow one object: the world's max_objects must be 1, got {world.max_objects}")
    first_world = SyntheticWorld(_replace(world, num_frames=first_frames))
    attributes = first_world.attributes(index)
    rng = np.random.default_rng(np.random.SeedSequence([int(world.seed), SPLITS.index(world.split), int(index), 7]))
    count = segments if isinstance(segments, int) else int(rng.integers(segments[0], segments[1] + 1))
    if count < 1:
        raise ConfigError(f"a story has at least one segment, got {count}")
    obj = attributes["objects"][0]
    story = [_segment(0, 0, first_frames, obj, sentence=typed_prompt(obj), change={})]
    pieces = [render_frames(attributes)]
    height, width, fps = attributes["height"], attributes["width"], attributes["fps"]
    before = obj
    for number in range(1, count):
        after = _next_object(rng, world, before, height, width, segment_frames, fps, color_changes)
        start = story[-1]["end"]
        change = {key: after[key] for key in ("motion", "color") if after[key] != before[key]}
        story.append(_segment(number, start, start + segment_frames, after, sentence=_then(change, after),
                              change=change))
        pieces.append(render_frames({**attributes, "num_frames": segment_frames, "objects": [after]}))
        before = after
    return StoryClip(np.concatenate(pieces), story, attributes, int(index))


def story_row(world: WorldConfig, index: int, change_frame: int, *, color_changes: bool = True,
              anchor_gap: int = 0) -> tuple[StoryClip, str]:
    """The training story ``index`` of ``world``: ``(clip, caption)``, a clip of ``world.num_frames`` frames whose
    second segment starts at ``change_frame``, and that segment's caption (see the module docstring).

    ``anchor_gap > 0`` makes an *anchored* row, what a story window sees with an identity anchor
    (:func:`reelm.generation.story_generation.iter_story`, ``context="anchor"``): the story's first frame, then
    the frames from ``anchor_gap + 1`` on, as if ``anchor_gap`` frames had been made between them. The first
    segment is ``anchor_gap`` frames longer, so the change still falls at ``change_frame`` of the row."""
    if not 2 <= change_frame <= world.num_frames - 2:
        raise ConfigError(f"a story's change frame must leave 2 frames on each side of it, got {change_frame} "
                          f"of {world.num_frames}")
    if anchor_gap < 0:
        raise ConfigError(f"a story's anchor gap is a number of frames, got {anchor_gap}")
    clip = story_clip(world, index, segments=2, first_frames=change_frame + anchor_gap,
                      segment_frames=world.num_frames - change_frame, color_changes=color_changes)
    if anchor_gap:
        first, second = clip.segments
        segments = [{**first, "end": first["end"] - anchor_gap, "track": first["track"][:1] + first["track"][anchor_gap + 1:]},
                    {**second, "start": second["start"] - anchor_gap, "end": second["end"] - anchor_gap}]
        clip = StoryClip(np.concatenate([clip.frames[:1], clip.frames[anchor_gap + 1:]]), segments, clip.attributes,
                         clip.index, anchor_gap)
    rng = np.random.default_rng(np.random.SeedSequence([int(world.seed), SPLITS.index(world.split), int(index), 8]))
    second = clip.segments[1]
    if rng.random() < 0.5:
        caption = second["sentence"]
    else:
        caption = caption_for({**clip.attributes, "objects": second["attributes"]["objects"]}, rng)
    return clip, caption


def _replace(world: WorldConfig, **changes) -> WorldConfig:
    import dataclasses

    return dataclasses.replace(world, **changes)


def _segment(number: int, start: int, end: int, obj: dict, *, sentence: str, change: dict) -> dict:
    objects = [{key: obj[key] for key in ("shape", "color", "size", "motion", "speed")}]
    return {"index": number, "start": start, "end": end, "prompt": typed_prompt(obj), "sentence": sentence,
            "change": change, "attributes": {"objects": objects}, "track": obj["track"]["center"]}


def _next_object(rng: np.random.Generator, world: WorldConfig, before: dict, height: int, width: int, frames: int,
                 fps: float, color_changes: bool) -> dict:
    """The object of the next segment: a new motion that stays in frame (and maybe a new color), its track
    continuing from where the last segment left it."""
    last = np.asarray(before["track"]["center"][-1], dtype=np.float64)
    x_lo, x_hi, y_lo, y_hi = center_range(before, height, width)
    speed = before["speed"] or world.speeds[0]  # a still object that starts moving takes the world's first speed
    step = SPEEDS[speed] * min(height, width) / fps if speed else 0.0

    def fits(motion: str) -> bool:
        ux, uy = MOTIONS[motion]
        end = last + np.asarray([ux, uy]) * step * frames
        return x_lo <= end[0] <= x_hi and y_lo <= end[1] <= y_hi

    def allowed(**change) -> bool:  # outside the "heldout" split no segment shows a held-out combination
        return world.split == "heldout" or not is_held_out({"objects": [{**before, **change}]})

    choices = [m for m in world.motions if m != before["motion"] and fits(m) and allowed(motion=m)]
    after = copy.deepcopy(before)
    after["motion"] = choices[int(rng.integers(len(choices)))] if choices else "static"
    after["speed"] = None if after["motion"] == "static" else speed
    if color_changes and rng.random() < 0.5:
        colors = [c for c in world.colors if c != before["color"] and allowed(motion=after["motion"], color=c)]
        if colors:
            after["color"] = colors[int(rng.integers(len(colors)))]
    ux, uy = MOTIONS[after["motion"]]
    t = np.arange(1, frames + 1)
    cx = np.round(bounce(last[0] + ux * step * t, x_lo, x_hi), DECIMALS)
    cy = np.round(bounce(last[1] + uy * step * t, y_lo, y_hi), DECIMALS)
    x0, x1, y0, y1 = (e * after["radius"] for e in EXTENTS[after["shape"]])
    after["track"] = {"center": np.stack([cx, cy], axis=1).tolist(),
                      "bbox": np.round(np.stack([cx + x0, cy + y0, cx + x1, cy + y1], axis=1), DECIMALS).tolist(),
                      "visible": [True] * frames}
    return after


def _then(change: dict, obj: dict) -> str:
    """How people go on: "then it moves up", "then it turns blue and moves left", "then it stops"."""
    motion = "stops" if obj["motion"] == "static" else f"moves {DIRECTION_WORDS[obj['motion']][0]}"
    if "color" in change:
        return f"then it turns {obj['color']} and {motion}" if "motion" in change else f"then it turns {obj['color']}"
    return f"then it {motion}"
