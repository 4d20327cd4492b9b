"""Known defects injected into clips, with their ground truth: what a data audit must find, and where.

Each defect is a function ``(frames, strength, rng) -> (frames, truth)`` on ``(T, H, W, 3)``
uint8 frames; ``strength`` in ``(0, 1]`` grades it (a short freeze or a long one, faint
flicker or strong), and ``truth`` says which frames it touched (``frames``) and how it was
made. :func:`render_defect_set` writes a captioned set of world clips as MP4 with a share of
them defective, and a manifest whose ``defects`` field is the ground truth a test or a
benchmark scores an audit against (:mod:`reelm.eval.audit`).

Defects that live in the file or the dataset rather than the pixels — a duplicate of another
clip (exact or re-encoded), a frame rate below the clip spec's, a caption swapped with another
clip's — are made by :func:`render_defect_set` itself.

Follows: the defect taxonomy of video-data curation pipelines (Panda-70M's splitting and
filtering, Open-Sora's data processing: static, cut, blurry, dark, letterboxed clips).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from scipy.ndimage import gaussian_filter

from reelm.core.errors import ReelmError

PIXEL_DEFECTS = ("frozen", "black", "faded", "flicker", "blur", "cut", "letterbox", "pillarbox")
FILE_DEFECTS = ("duplicate", "reencoded_duplicate", "low_fps", "swapped_caption")
DEFECTS = PIXEL_DEFECTS + FILE_DEFECTS


def freeze(frames: np.ndarray, strength: float, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A frozen segment: a run of ``4 + strength * (T / 2)`` frames (at most ``T - 1``) repeats its first frame."""
    t = len(frames)
    length = int(np.clip(round(4 + strength * t / 2), 3, t - 1))
    start = int(rng.integers(0, t - length + 1))
    out = frames.copy()
    out[start:start + length] = frames[start]
    return out, {"frames": list(range(start + 1, start + length)), "start": start, "length": length}


def black(frames: np.ndarray, strength: float, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Black frames at the start (a fade-in cut short): ``max(2, strength * T / 2)`` of them."""
    count = int(np.clip(round(strength * len(frames) / 2), 2, len(frames) - 1))
    out = frames.copy()
    out[:count] = 0
    return out, {"frames": list(range(count))}


def faded(frames: np.ndarray, strength: float, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Every frame washed out towards mid-grey: contrast kept ``0.08 - 0.06 * strength``."""
    keep = 0.08 - 0.06 * strength
    out = (frames.astype(np.float32) - 128.0) * keep + 128.0
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), {"frames": list(range(len(frames))), "contrast": keep}


def flicker(frames: np.ndarray, strength: float, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Brightness alternating every frame by ``±(4 + 16 * strength)`` levels (a lamp on mains, a bad exposure loop)."""
    amplitude = 4.0 + 16.0 * strength
    signs = np.where(np.arange(len(frames)) % 2 == 0, 1.0, -1.0)[:, None, None, None]
    out = frames.astype(np.float32) + amplitude * signs
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), {"frames": list(range(len(frames))),
                                                            "amplitude": amplitude}


def blur(frames: np.ndarray, strength: float, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Gaussian blur of every frame, sigma ``(0.8 + 2.2 * strength)`` pixels per 64 of the shorter side."""
    sigma = (0.8 + 2.2 * strength) * min(frames.shape[1:3]) / 64
    out = gaussian_filter(frames.astype(np.float32), sigma=(0, sigma, sigma, 0))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), {"frames": list(range(len(frames))), "sigma": sigma}


def cut(frames: np.ndarray, other: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A hard cut: the first frames of one clip, then the rest of ``other`` from a frame in the middle third."""
    t = len(frames)
    at = int(rng.integers(max(1, t // 3), max(2, 2 * t // 3 + 1)))
    out = frames.copy()
    out[at:] = other[at:]
    return out, {"frames": [at], "at": at}


def letterbox(frames: np.ndarray, strength: float, rng: np.random.Generator, *, axis: int = 1) -> tuple[np.ndarray, dict]:
    """Black bars over ``4 + 8 * strength`` % of the side at each end (rows: letterbox; ``axis=2``: pillarbox)."""
    side = frames.shape[axis]
    bar = max(1, round(side * (0.04 + 0.08 * strength)))
    out = frames.copy()
    index = [slice(None)] * 4
    for part in (slice(0, bar), slice(side - bar, side)):
        index[axis] = part
        out[tuple(index)] = 0
    return out, {"frames": list(range(len(frames))), "bar": bar, "share": 2 * bar / side}


def pillarbox(frames: np.ndarray, strength: float, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    return letterbox(frames, strength, rng, axis=2)


INJECT: dict[str, Callable] = {"frozen": freeze, "black": black, "faded": faded, "flicker": flicker, "blur": blur,
                               "letterbox": letterbox, "pillarbox": pillarbox}


@dataclass(kw_only=True)
class DefectSetConfig:
    """A set of world clips, ``share`` of them with one defect each, drawn evenly from ``defects`` at strengths
    drawn uniformly from ``strengths`` (graded), the rest clean."""

    num_clips: int = 200
    share: float = 0.5
    defects: tuple[str, ...] = DEFECTS
    strengths: tuple[float, float] = (0.2, 1.0)
    seed: int = 0


def render_defect_set(out_dir: str | Path, cfg: DefectSetConfig, world_cfg=None) -> dict:
    """Write ``cfg.num_clips`` world clips to ``out_dir/clips`` as MP4 with ``manifest.jsonl``; each record has the
    clip's ``caption``, ``attributes`` (the world's ground truth) and ``defects``: ``[]`` for a clean clip, else one
    ``{"kind", "strength", "frames", ...}`` (``duplicate_of``: the manifest row it copies). Returns a summary."""
    from reelm.core.atomic import write_text
    from reelm.data.synthetic.world import SyntheticWorld, WorldConfig
    from reelm.data.video_write import write_mp4

    unknown = sorted(set(cfg.defects) - set(DEFECTS))
    if unknown:
        raise ReelmError(f"unknown defects {unknown}; choose from {list(DEFECTS)}")
    if not 0 <= cfg.share <= 1:
        raise ReelmError(f"defect share must be in [0, 1], got {cfg.share}")
    world = SyntheticWorld(world_cfg or WorldConfig())
    began = time.perf_counter()
    out = Path(out_dir)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    fps = float(world.cfg.fps)
    defective = int(round(cfg.share * cfg.num_clips))
    kinds = [cfg.defects[i % len(cfg.defects)] for i in range(defective)] + [None] * (cfg.num_clips - defective)
    order = rng.permutation(cfg.num_clips)
    plan = [kinds[j] for j in order]
    records, counts = [], {}
    for index, kind in enumerate(plan):
        clip = world.clip(index)
        if kind in ("frozen", "flicker", "cut"):  # a defect that shows only in a clip that moves
            shift = 0
            while all(o["motion"] == "static" for o in clip.attributes["objects"]):
                shift += 1
                clip = world.clip(2 * 10**6 + 1000 * index + shift)
        frames, caption, attributes, world_index, truth = clip.frames, clip.caption, clip.attributes, clip.index, []
        name = Path("clips") / f"{index:06d}.mp4"
        rate, crf = fps, 18
        strength = float(rng.uniform(*cfg.strengths))
        if kind in INJECT:
            frames, detail = INJECT[kind](frames, strength, rng)
            truth = [{"kind": kind, "strength": strength, **detail}]
        elif kind == "cut":
            other = world.clip(10**6 + index).frames
            frames, detail = cut(frames, other, rng)
            truth = [{"kind": kind, "strength": strength, **detail}]
        elif kind in ("duplicate", "reencoded_duplicate") and records:
            clean = [i for i, r in enumerate(records) if not r["defects"]] or list(range(len(records)))
            source = clean[int(rng.integers(len(clean)))]  # a clean clip where there is one
            src = records[source]
            world_index, caption, attributes = src["world_index"], src["caption"], src["attributes"]
            frames = world.clip(world_index).frames
            crf = 18 if kind == "duplicate" else 34
            truth = [{"kind": kind, "strength": strength, "duplicate_of": source, "frames": []}]
        elif kind == "low_fps":
            frames = frames[::2]
            rate = fps / 2
            truth = [{"kind": kind, "strength": strength, "fps": rate, "frames": []}]
        elif kind == "swapped_caption":
            caption = world.caption(10**6 + index)
            truth = [{"kind": kind, "strength": strength, "frames": []}]
        if kind in ("duplicate", "reencoded_duplicate") and not records:
            kind = None  # nothing to copy yet: the first clip stays clean
        if kind == "duplicate" and records:
            (out / name).write_bytes((out / records[truth[0]["duplicate_of"]]["video"]).read_bytes())
        else:
            write_mp4(out / name, frames, rate, crf=crf)
        counts[kind or "clean"] = counts.get(kind or "clean", 0) + 1
        records.append({"video": name.as_posix(), "caption": caption, "attributes": attributes, "index": index,
                        "world_index": world_index, "defects": truth})
    manifest = write_text(out / "manifest.jsonl", "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
    return {"out_dir": str(out), "manifest": str(manifest), "num_clips": cfg.num_clips, "counts": counts,
            "seconds": round(time.perf_counter() - began, 3)}
