"""The synthetic captioned video world: seeded, download-free clips with their ground truth.

A clip is defined by ``(seed, split, index)``: ``SyntheticWorld(cfg).clip(i)`` draws its
scene from ``SeedSequence([seed, split, i])`` and renders it, without touching any other
index, so a dataset shards across workers by index and the same seed always gives the
same pixels and captions. Scenes hold 1 to ``max_objects`` objects (shape, color, size,
motion, speed, per-frame track) on a plain or low-contrast textured background; see
:mod:`reelm.data.synthetic.scene` for the vocabulary and :mod:`reelm.data.synthetic.captions` for
the captions.

Splits: "train" never contains a held-out combination; "val" is the train distribution
from a disjoint seed stream; "heldout" clips each contain at least one. The held-out
combinations (``HELD_OUT``) are: blue triangle, orange square, cyan star (shape + color);
red moving up, green moving left, white moving down-right (color + motion).

``render_dataset`` writes ``clips/000000.mp4 ...``, ``manifest.jsonl`` (one clip per
line: ``video`` relative to the manifest, ``caption``, ``attributes``, ``split``,
``index``) and ``contact_sheet.png``.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from reelm.core.config import ConfigError

if TYPE_CHECKING:  # the clip spec's module reads sources, which read this world
    from reelm.data.clip_sampling import ClipSpec
from reelm.data.synthetic.captions import caption_for, parse_caption
from reelm.data.synthetic.render import render_frames
from reelm.data.synthetic.scene import (HELD_OUT, SPLITS, VOCABULARY_FIELDS, Vocabulary, held_out_matches,
                                        is_held_out, sample_scene)

__all__ = [
    "WorldOptions",
    "HELD_OUT",
    "SPLITS",
    "SyntheticClip",
    "SyntheticWorld",
    "WorldConfig",
    "caption_for",
    "held_out_matches",
    "is_held_out",
    "parse_caption",
    "prompt_set",
    "render_dataset",
]

MIN_SIDE = 16
MAX_OBJECTS = 4
CONTACT_SHEET_ROWS = 8


@dataclass(kw_only=True)
class WorldConfig(Vocabulary):
    """What clips the synthetic world draws: frame size, length, rate, seed, split, and the attribute values
    and start positions of its :class:`~reelm.data.synthetic.scene.Vocabulary` (every value by default)."""

    height: int = 64
    width: int = 64
    num_frames: int = 17
    fps: float = 8.0
    seed: int = 0
    max_objects: int = 2
    textured_backgrounds: bool = True
    split: str = "train"

    def __post_init__(self) -> None:
        for name in ("height", "width"):
            value = getattr(self, name)
            if not _is_int(value) or value < MIN_SIDE:
                raise ConfigError(f"world {name} must be an integer >= {MIN_SIDE}, got {value!r}")
        if not _is_int(self.num_frames) or self.num_frames < 1:
            raise ConfigError(f"world num_frames must be an integer >= 1, got {self.num_frames!r}")
        if not isinstance(self.fps, (int, float)) or not 0 < self.fps < 1000:
            raise ConfigError(f"world fps must be a positive number below 1000, got {self.fps!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise ConfigError(f"world seed must be a non-negative integer, got {self.seed!r}")
        if not _is_int(self.max_objects) or not 1 <= self.max_objects <= MAX_OBJECTS:
            raise ConfigError(f"world max_objects must be in 1..{MAX_OBJECTS}, got {self.max_objects!r}")
        if self.split not in SPLITS:
            raise ConfigError(f"world split must be one of {list(SPLITS)}, got {self.split!r}")
        problems = self.problems()
        if problems:
            raise ConfigError(problems[0])
        if self.split != "heldout" and not self.draws_seen():
            raise ConfigError(f"every object this world can draw has a held-out combination, so its {self.split!r} "
                              "split would be empty; widen the vocabulary")
        if self.split == "heldout" and not self.held_out():
            raise ConfigError(f"this world draws none of the held-out combinations {list(HELD_OUT)}, so it has no "
                              f"'heldout' split")


@dataclass(kw_only=True)
class WorldOptions(Vocabulary):
    """What a ``--data synthetic`` source draws, besides the clip geometry its clip spec gives.

    The same options as ``reelm data synthetic``: the split, objects per clip, textured or plain
    backgrounds, the first clip index, and the vocabulary. The world's seed is the job's seed.
    """

    split: str = "train"
    max_objects: int = 2
    textured_backgrounds: bool = True
    start: int = 0  # first clip index, to shard a world between jobs

    def world_config(self, clip: ClipSpec, *, seed: int) -> WorldConfig:
        """The world these options describe, drawing clips of ``clip``'s geometry: ``size`` x ``size``,
        ``num_frames`` at ``fps``."""
        if not _is_int(self.start) or self.start < 0:
            raise ConfigError(f"world start must be a non-negative integer, got {self.start!r}")
        return WorldConfig(height=clip.size, width=clip.size, num_frames=clip.num_frames, fps=clip.fps, seed=seed,
                           split=self.split,
                           max_objects=self.max_objects, textured_backgrounds=self.textured_backgrounds,
                           **{name: getattr(self, name) for name in VOCABULARY_FIELDS})


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True, eq=False)
class SyntheticClip:
    """One rendered clip with its caption and JSON-serialisable ground truth."""

    frames: np.ndarray  # (T, H, W, 3) uint8
    caption: str
    attributes: dict
    index: int


class SyntheticWorld:
    """Random access to the clips of one ``WorldConfig``: ``clip(i)`` for any ``i >= 0``."""

    def __init__(self, cfg: WorldConfig | None = None):
        self.cfg = cfg or WorldConfig()

    def attributes(self, index: int) -> dict:
        """The ground truth of clip ``index``, without rendering it.

        Keys: ``split``, ``seed``, ``index``, ``height``, ``width``, ``num_frames``, ``fps``,
        ``background``, ``objects`` (each with ``shape``, ``color``, ``size``, ``motion``,
        ``speed``, ``radius`` and ``track``) and ``held_out`` (the combinations present).
        """
        cfg = self.cfg
        scene = sample_scene(
            self._rngs(index)[0],
            height=cfg.height,
            width=cfg.width,
            num_frames=cfg.num_frames,
            fps=float(cfg.fps),
            max_objects=cfg.max_objects,
            textured=cfg.textured_backgrounds,
            split=cfg.split,
            vocabulary=cfg.vocabulary(),
        )
        attributes = {
            "split": cfg.split,
            "seed": int(cfg.seed),
            "index": int(index),
            "height": int(cfg.height),
            "width": int(cfg.width),
            "num_frames": int(cfg.num_frames),
            "fps": float(cfg.fps),
            **scene,
        }
        attributes["held_out"] = held_out_matches(attributes)
        return attributes

    def caption(self, index: int, attributes: dict | None = None) -> str:
        """The caption of clip ``index`` (pass its ``attributes`` to skip redrawing them)."""
        if attributes is None:
            attributes = self.attributes(index)
        return caption_for(attributes, self._rngs(index)[1])

    def clip(self, index: int) -> SyntheticClip:
        attributes = self.attributes(index)
        return SyntheticClip(
            frames=render_frames(attributes),
            caption=self.caption(index, attributes),
            attributes=attributes,
            index=int(index),
        )

    __getitem__ = clip

    def __iter__(self) -> Iterator[SyntheticClip]:
        """Clips 0, 1, 2, ... without end; use ``itertools.islice`` to take some."""
        return map(self.clip, itertools.count())

    def _rngs(self, index: int) -> tuple[np.random.Generator, np.random.Generator]:
        """Independent (scene, caption) generators of clip ``index``."""
        if not _is_int(index) or index < 0:
            raise ConfigError(f"clip index must be a non-negative integer, got {index!r}")
        root = np.random.SeedSequence([int(self.cfg.seed), SPLITS.index(self.cfg.split), int(index)])
        scene, caption = root.spawn(2)
        return np.random.default_rng(scene), np.random.default_rng(caption)


def prompt_set(cfg: WorldConfig, count: int, *, start: int = 0) -> list[dict]:
    """``count`` prompts as people type them (:func:`reelm.data.synthetic.captions.typed_prompt`), one per clip of the world
    ``cfg`` from ``start`` on, each with the clip's ``index``, its ground-truth ``attributes``, the attributes
    the prompt names (``expected``, as :func:`parse_caption` reads them) and whether it holds a held-out
    combination (``held_out``). The prompt describes the clip's first object."""
    from reelm.data.synthetic.captions import typed_prompt

    world = SyntheticWorld(cfg)
    prompts = []
    for index in range(start, start + count):
        attributes = world.attributes(index)
        prompt = typed_prompt(attributes["objects"][0])
        expected = parse_caption(prompt)
        prompts.append({"prompt": prompt, "index": index, "attributes": attributes, "expected": expected,
                        "held_out": is_held_out(expected)})
    return prompts


def render_dataset(out_dir: str | Path, num_clips: int, cfg: WorldConfig | None = None, *, start: int = 0) -> dict:
    """Write clips ``start .. start + num_clips - 1`` as MP4, their manifest and a contact sheet.

    Returns a summary: ``out_dir``, ``manifest``, ``contact_sheet``, ``num_clips``,
    ``split``, ``held_out_clips`` (clips with a held-out combination), ``seconds``.
    """
    from reelm.core.atomic import write_text
    from reelm.data.contact_sheet import contact_sheet
    from reelm.data.video_write import write_mp4

    cfg = cfg or WorldConfig()
    if not _is_int(num_clips) or num_clips < 1:
        raise ConfigError(f"num_clips must be a positive integer, got {num_clips!r}")
    if not _is_int(start) or start < 0:
        raise ConfigError(f"start must be a non-negative integer, got {start!r}")
    began = time.perf_counter()
    out_dir = Path(out_dir)
    (out_dir / "clips").mkdir(parents=True, exist_ok=True)
    world = SyntheticWorld(cfg)
    lines, sheet_rows, sheet_labels, held_out_clips = [], [], [], 0
    for index in range(start, start + num_clips):
        clip = world.clip(index)
        video = Path("clips") / f"{index:06d}.mp4"
        write_mp4(out_dir / video, clip.frames, cfg.fps)
        record = {
            "video": video.as_posix(),
            "caption": clip.caption,
            "attributes": clip.attributes,
            "split": cfg.split,
            "index": index,
        }
        lines.append(json.dumps(record, separators=(",", ":")))
        held_out_clips += bool(clip.attributes["held_out"])
        if len(sheet_rows) < CONTACT_SHEET_ROWS:
            sheet_rows.append(clip.frames)
            sheet_labels.append(clip.caption)

    sheet = contact_sheet(sheet_rows, out_dir / "contact_sheet.png", labels=sheet_labels)
    manifest = write_text(out_dir / "manifest.jsonl", "\n".join(lines) + "\n")
    return {
        "out_dir": str(out_dir),
        "manifest": str(manifest),
        "contact_sheet": str(sheet),
        "num_clips": num_clips,
        "split": cfg.split,
        "held_out_clips": held_out_clips,
        "seconds": round(time.perf_counter() - began, 3),
    }
