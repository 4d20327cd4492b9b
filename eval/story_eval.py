"""Story eval: each segment of a generated story scored for adherence, each boundary for continuity.

``reelm eval generate --model RUN --stories synthetic|FILE --out DIR`` makes every story into one
video (:meth:`reelm.generation.VideoPipeline.story`) and scores it:

- **per segment**: the adherence reader (:func:`reelm.eval.adherence.read_clip`) on that segment's
  frames alone, against what its prompt names (the world's ground truth for ``synthetic`` stories,
  the prompt parsed for a file's), on the attributes the world varies;
- **per boundary** (:func:`continuity_at`): the reader on ``CONTINUITY_FRAMES`` frames either side.
  The boundary keeps continuity when the same object is on both sides — its shape read the same,
  its color read the same unless the story changed it (then the new color) — and it does not jump:
  its center moves from the last frame before to the first after by at most ``max_jump`` pixels
  (twice the world's fastest per-frame step, plus ``JUMP_SLACK``). The first-frame drift across the
  boundary (PSNR of the last frame before against the first after) is recorded beside the PSNR of
  consecutive frames inside segments, its baseline;
- **baseline** (``baseline=True``): each segment's prompt also generated alone as a single-prompt
  text-to-video clip with the same settings, scored the same way: the story's per-segment adherence
  over this is the issue's ratio, measured on the same prompts in the same run. The continuity rule
  is also applied *inside* each of these clips, where a continuation's new frames would start
  (:func:`inside_boundary`): there nothing changes (one prompt, one window), so what it keeps is
  how consistently the model draws one object across a clip, the bar a story's boundaries are
  measured against (``continuity_alone`` in the summary).

``synthetic`` stories are the world's story clips (:mod:`reelm.data.synthetic.stories`) of the
``heldout``-free ``val`` split: never trained on. A FILE is a story file (``reelm generate --story``'s
formats) or a ``.jsonl`` with one story a line (the JSON form). Writes ``DIR/stories/*.mp4``,
``DIR/stories.jsonl``, ``DIR/summary.json`` and ``DIR/report.html``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reelm.core.atomic import write_text
from reelm.core.config import save_json, to_dict
from reelm.data.synthetic.captions import parse_caption
from reelm.data.synthetic.scene import SPEEDS
from reelm.data.video_write import write_mp4
from reelm.eval.adherence import aggregate, read_clip, score_against
from reelm.eval.intervals import wilson
from reelm.eval.temporal import drift
from reelm.lm.sampling import Sampling

CONTINUITY_FRAMES = 4  # frames read on each side of a boundary
JUMP_SLACK = 2.0  # pixels: what the reader's center may be off by
STORY_START = 50_000  # world clip indices of synthetic stories: apart from every other eval's


@dataclass(kw_only=True)
class StoryEvalConfig:
    stories: str = "synthetic"  # "synthetic", a story file, or a .jsonl of stories
    num_stories: int = 64  # synthetic: stories to make
    min_segments: int = 2
    max_segments: int = 4
    segment_frames: int = 8  # synthetic: frames of each segment after the first (the first: the model's clip)
    color_changes: bool = False  # synthetic: the object may also change color at a boundary
    seed: int = 0
    guidance_scale: float | None = None  # None: the pipeline's default
    sampling: Sampling | None = None
    baseline: bool = True  # also each segment's prompt alone (single-prompt text-to-video)
    context: str = "pixels"  # what each continuation window is given (reelm.generation.story.STORY_CONTEXTS)
    world: object = None  # WorldOptions; default: the model's training world (as `reelm eval generate`)
    candidates: int = 1  # continuation windows sampled a window, one kept by evaluate_stories' choose
    choose: str | None = None  # with candidates > 1: a critic's name (reelm.generation.story_critics), unless
    # evaluate_stories is given a function
    weights: str = "model"  # how the decode steps read the LM's weights (reelm.lm.decode_weights): model, fp16, int8


def continuity_at(frames: np.ndarray, boundary: int, fps: float, *, changed_color: str | None, max_jump: float) -> dict:
    """Continuity across the boundary at frame ``boundary`` of ``frames`` (see the module docstring)."""
    before = frames[max(0, boundary - CONTINUITY_FRAMES):boundary]
    after = frames[boundary:boundary + CONTINUITY_FRAMES]
    read_before, read_after = read_clip(before, fps, 1), read_clip(after, fps, 1)
    psnr = _psnr(frames[boundary - 1], frames[boundary])
    record = {"frame": boundary, "psnr": psnr, "max_jump": round(max_jump, 3), "before": None, "after": None,
              "same_shape": False, "color_ok": False, "jump": None, "kept": False}
    if not read_before or not read_after:
        record["reason"] = "no object read " + ("before" if not read_before else "after") + " the boundary"
        return record
    b, a = read_before[0], read_after[0]
    record["before"] = {"color": b.color, "shape": b.shape}
    record["after"] = {"color": a.color, "shape": a.shape}
    record["same_shape"] = a.shape is not None and a.shape == b.shape
    record["color_ok"] = a.color == (changed_color or b.color)
    last, first = _last(b.track), _first(a.track)
    if last is not None and first is not None:
        record["jump"] = round(float(np.hypot(first[0] - last[0], first[1] - last[1])), 3)
    record["kept"] = bool(record["same_shape"] and record["color_ok"] and record["jump"] is not None
                          and record["jump"] <= max_jump)
    if not record["kept"]:
        record["reason"] = ("shape changed" if not record["same_shape"] else "color changed" if not record["color_ok"]
                            else "position unread" if record["jump"] is None else
                            f"jumped {record['jump']:.1f} px > {max_jump:.1f}")
    return record


def inside_boundary(latent_frames: int, temporal_downsample: int) -> int:
    """The frame of a single clip of ``latent_frames`` latent frames where a continuation's new frames would start
    (after :func:`reelm.data.token_layout.continuation_context` latent frames: frame 5 of a 9-frame clip), the
    point :func:`continuity_at` is applied to inside single-prompt clips."""
    from reelm.data.token_layout import continuation_context

    return 1 + (continuation_context(latent_frames) - 1) * temporal_downsample


def max_jump_for(world, height: int, width: int) -> float:
    """Twice the fastest per-frame step of the world's objects, plus the reader's slack, in pixels."""
    fastest = max((SPEEDS[s] for s in world.speeds), default=0.0)
    return 2 * fastest * min(height, width) / world.fps + JUMP_SLACK


def score_story(frames: np.ndarray, fps: float, segments: list[dict], *, keys, max_jump: float) -> dict:
    """Every segment's adherence and every boundary's continuity for one story's frames; ``segments`` carry
    ``start``, ``end``, ``expected`` (``{"objects": [...]}`` or None) and ``change`` (what the story changed)."""
    scored = []
    for segment in segments:
        readings = read_clip(frames[segment["start"]:segment["end"]], fps, 1)
        entry = {"read": [r.attributes() for r in readings]}
        if segment.get("expected") is not None:
            entry["score"] = _lean(score_against(readings, _only(segment["expected"], keys)))
        scored.append(entry)
    boundaries = [continuity_at(frames, segment["start"], fps, changed_color=(segment.get("change") or {}).get("color"),
                                max_jump=max_jump) for segment in segments[1:]]
    inside = [_psnr(frames[t - 1], frames[t]) for s in segments for t in range(s["start"] + 1, s["end"])]
    return {"segments": scored, "boundaries": boundaries,
            "inside_psnr": round(float(np.median(inside)), 3) if inside else None}


def evaluate_stories(model, out: str | Path, cfg: StoryEvalConfig, *, video_tokenizer: str | Path | None = None,
                     device: str = "auto", progress: bool = True, choose=None) -> dict:
    """Make and score every story (see the module docstring); returns the summary. ``choose``: with
    ``cfg.candidates > 1``, the critic that keeps one of each window's candidates
    (:func:`reelm.generation.story_generation.iter_story`)."""
    from reelm.core.device import torch_threads
    from reelm.eval.generation_eval import GenerationEvalConfig, eval_world, varied_attributes
    from reelm.generation.pipeline import VideoPipeline

    pipe = model if isinstance(model, VideoPipeline) else \
        VideoPipeline.from_pretrained(model, video_tokenizer=video_tokenizer, device=device, weights=cfg.weights)
    world = eval_world(pipe, GenerationEvalConfig(world=cfg.world, seed=cfg.seed))
    keys = varied_attributes(world)
    fps = pipe.model.clip.fps
    stories = _stories(cfg, world, pipe)
    max_jump = max_jump_for(world, pipe.model.clip.size, pipe.model.clip.size)
    out = Path(out)
    (out / "stories").mkdir(parents=True, exist_ok=True)
    from reelm.generation.pipeline import DEFAULT_GUIDANCE

    settings = dict(guidance_scale=DEFAULT_GUIDANCE if cfg.guidance_scale is None else cfg.guidance_scale,
                    sampling=cfg.sampling)
    began, records = time.perf_counter(), []
    from reelm.core.progress import progress_bar

    with torch_threads(1 if pipe.device.type == "cpu" else None), \
            progress_bar(len(stories), desc="stories", unit="story", enabled=progress) as bar:
        for story in stories:
            segments = [_story_segment(s) for s in story["segments"]]
            made = pipe.story(segments, seed=_story_seed(cfg.seed, story["id"]), context=cfg.context,
                              candidates=cfg.candidates, choose=cfg.choose if choose is None else choose, **settings)
            planned = [{**s, "start": m["start_frame"], "end": m["end_frame"]}
                       for s, m in zip(story["segments"], made.segments)]
            scores = score_story(made.video, fps, planned, keys=keys, max_jump=max_jump)
            record = {"id": story["id"], "file": f"story-{story['id']:03d}.mp4", "caption": story.get("caption"),
                      "segments": [{"prompt": s["prompt"], "start": s["start"], "end": s["end"],
                                    "change": s.get("change") or {}, **scored}
                                   for s, scored in zip(planned, scores["segments"])],
                      "boundaries": scores["boundaries"], "inside_psnr": scores["inside_psnr"],
                      "seconds": round(sum(m["generate_s"] for m in made.segments), 3)}
            if cfg.baseline:
                record["baseline"], record["baseline_inside"] = _baseline(pipe, story, planned, cfg, keys, fps,
                                                                          settings, max_jump=max_jump)
            write_mp4(out / "stories" / record["file"], made.video, fps)
            record["video"] = made.video
            records.append(record)
            bar.update(1)
    summary = story_summary(records, cfg, keys)
    summary.update(config=to_dict(cfg) | {"world": dataclasses.asdict(world)}, max_jump=round(max_jump, 3),
                   model=pipe.model.identity(), timings={"seconds": round(time.perf_counter() - began, 2)})
    write_text(out / "stories.jsonl", "".join(json.dumps({k: v for k, v in r.items() if k != "video"}) + "\n"
                                              for r in records))
    save_json(out / "summary.json", summary)
    from reelm.eval.reports.story_report import write_story_report

    summary["report"] = str(write_story_report(out, summary, records, fps))
    return summary


def story_summary(records: list[dict], cfg: StoryEvalConfig, keys) -> dict:
    """Per-segment adherence (per attribute), the baseline's, their ratio, and continuity kept at boundaries (in all,
    by boundary index and, with the baseline, inside single-prompt clips)."""
    segments = [s["score"] for r in records for s in r["segments"] if "score" in s]
    adherence = aggregate(segments) if segments else None
    boundaries = [b for r in records for b in r["boundaries"]]
    kept = sum(b["kept"] for b in boundaries)
    summary = {"stories": len(records), "segments": sum(len(r["segments"]) for r in records),
               "adherence": adherence, "continuity": _ratio(kept, len(boundaries)),
               "boundary_psnr": _median([b["psnr"] for b in boundaries]),
               "inside_psnr": _median([r["inside_psnr"] for r in records if r["inside_psnr"] is not None]),
               "broken": _counts([b.get("reason", "").split(" ")[0] for b in boundaries if not b["kept"]]),
               "by_boundary": _by_boundary(records), "by_segments": {}}
    for n in sorted({len(r["segments"]) for r in records}):
        group = [r for r in records if len(r["segments"]) == n]
        summary["by_segments"][str(n)] = {"stories": len(group), "seconds": _median([r["seconds"] for r in group])}
    base = [s for r in records for s in r.get("baseline", [])]
    if base:
        baseline = aggregate(base)
        summary["baseline"] = baseline
        summary["ratio"] = {key: _divide(adherence["attributes"][key]["accuracy"], baseline["attributes"][key]["accuracy"])
                            for key in keys}
        summary["ratio"]["all"] = _divide(adherence["accuracy"], baseline["accuracy"])
    inside = [b for r in records for b in r.get("baseline_inside", [])]
    if inside:
        summary["continuity_alone"] = _ratio(sum(b["kept"] for b in inside), len(inside))
        summary["continuity_alone"]["broken"] = _counts([b.get("reason", "").split(" ")[0] for b in inside
                                                         if not b["kept"]])
        summary["ratio"]["continuity"] = _divide(summary["continuity"]["share"], summary["continuity_alone"]["share"])
    return summary


def _by_boundary(records: list[dict]) -> dict:
    """Continuity kept at each story's 1st, 2nd, 3rd ... boundary: whether it drifts as windows follow each other."""
    count = max((len(r["boundaries"]) for r in records), default=0)
    return {str(i + 1): _ratio(sum(r["boundaries"][i]["kept"] for r in records if len(r["boundaries"]) > i),
                               sum(len(r["boundaries"]) > i for r in records)) for i in range(count)}


def synthetic_stories(cfg: StoryEvalConfig, world, first_frames: int) -> list:
    """The ``synthetic`` stories of ``cfg`` in ``world``: its :class:`~reelm.data.synthetic.stories.StoryClip` s, each
    rendered from the ground truth (its frames are what a perfect model would make), the first segment
    ``first_frames`` long."""
    from reelm.data.synthetic.stories import story_clip

    one = dataclasses.replace(world, split="val", max_objects=1)
    return [story_clip(one, STORY_START + i, segments=(cfg.min_segments, cfg.max_segments), first_frames=first_frames,
                       segment_frames=cfg.segment_frames, color_changes=cfg.color_changes)
            for i in range(cfg.num_stories)]


def _stories(cfg: StoryEvalConfig, world, pipe) -> list[dict]:
    if cfg.stories == "synthetic":
        stories = []
        for i, clip in enumerate(synthetic_stories(cfg, world, pipe.model.clip.num_frames)):
            stories.append({"id": i, "caption": clip.caption, "segments": [
                {"prompt": s["prompt"], "frames": s["end"] - s["start"], "expected": s["attributes"],
                 "change": s["change"]} for s in clip.segments]})
        return stories
    from reelm.generation.story import read_story, parse_story_json

    path = Path(cfg.stories)
    lists = [parse_story_json(json.loads(line), source=f"{path}, line {n}") for n, line in
             enumerate(path.read_text(encoding="utf-8").splitlines(), start=1) if line.strip()] \
        if path.suffix.lower() == ".jsonl" else [read_story(path)]
    stories = []
    for i, segments in enumerate(lists):
        previous, entries = None, []
        for s in segments:
            expected = parse_caption(s.prompt)
            scoreable = expected["objects"] and all(o.get("color") and o.get("shape") for o in expected["objects"])
            color = expected["objects"][0].get("color") if scoreable else None
            entries.append({"prompt": s.prompt, "seconds": s.seconds, "frames": s.frames,
                            "expected": expected if scoreable else None,
                            "change": {"color": color} if previous and color and color != previous else {}})
            previous = color or previous
        stories.append({"id": i, "segments": entries})
    return stories


def _story_segment(entry: dict):
    from reelm.generation.story import StorySegment

    return StorySegment(entry["prompt"], seconds=entry.get("seconds"), frames=entry.get("frames"))


def _story_seed(seed: int, story: int) -> int:
    from reelm.core.seeds import derive_seed, text_key

    return derive_seed(seed, text_key("story-eval"), story)


def _baseline(pipe, story, planned, cfg, keys, fps, settings, *, max_jump: float) -> tuple[list[dict], list[dict]]:
    """Each segment's prompt alone: a text-to-video clip of the model's length, scored on the segment's attributes,
    and the continuity rule inside each clip (at :func:`inside_boundary`)."""
    prompts = [s["prompt"] for s in planned]
    out = pipe.text_to_video(prompts, seed=_story_seed(cfg.seed, 100_000 + story["id"]), **settings)
    scores = [_lean(score_against(read_clip(video, fps, 1), _only(s["expected"], keys)))
              for video, s in zip(out.videos, planned) if s.get("expected") is not None]
    at = inside_boundary(pipe.model.latent_frames, pipe.tokenizer.temporal_downsample)
    inside = [{k: v for k, v in continuity_at(video, at, fps, changed_color=None, max_jump=max_jump).items()
               if k in ("frame", "kept", "reason")} for video in out.videos]
    return scores, inside


def _only(expected: dict, keys) -> dict:
    """The expected objects with the attributes outside ``keys`` left unscored (None)."""
    return {"objects": [{k: (v if k in keys else None) for k, v in o.items()} for o in expected["objects"]]}


def _lean(score: dict) -> dict:
    return {k: score[k] for k in ("attributes", "correct", "total", "accuracy", "expected_objects", "found", "extra")}


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    """First-frame drift (:func:`reelm.eval.temporal.drift`) of frame ``b`` from ``a``, 99 dB for equal frames."""
    return round(min(drift(a[None], b[None]), 99.0), 3)


def _first(track):
    return next((p for p in track if p is not None), None)


def _last(track):
    return next((p for p in reversed(track) if p is not None), None)


def _ratio(k: int, n: int) -> dict:
    low, high = wilson(k, n) if n else (None, None)
    return {"kept": k, "total": n, "share": k / n if n else None, "interval": [low, high]}


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(float(np.median(values)), 3) if values else None


def _divide(a, b):
    return round(a / b, 4) if a is not None and b else None


def _counts(words) -> dict:
    counts: dict[str, int] = {}
    for w in words:
        counts[w] = counts.get(w, 0) + 1
    return counts
