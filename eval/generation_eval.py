"""Generation eval: samples from a model folder, decoded and scored, with every number's protocol and a report.

``reelm eval generate --model RUN --prompts FILE|synthetic --out DIR`` generates
``num_samples`` videos per prompt through :class:`reelm.generation.VideoPipeline` (batched,
seeded) and scores each one:

- **prompt adherence**: the analytic scorer (:mod:`reelm.eval.adherence`) reads every object's
  color, shape, size, motion and speed from the decoded frames and compares them with what
  the prompt names; accuracy per attribute and overall, separately for prompts with seen and
  with held-out attribute combinations (``synthetic`` prompts are typed like a person types
  them, from one-object scenes of the world's ``val`` and ``heldout`` splits);
- **temporal quality** (:mod:`reelm.eval.temporal`): flicker on static regions, motion
  smoothness, how much moves at all;
- with synthetic prompts the **prompt binding** diagnostic (:mod:`reelm.eval.prompt_binding`: how much
  more likely the model finds real clips under their own prompt than with one attribute swapped);
- with synthetic prompts also **image-to-video and continuation** (real clips' first frame or
  first latent frames as the condition: does the object keep its color and shape and move the
  way the real clip does; how far the first frame drifts from the condition) and
  **video-to-text** (captions of ``val`` clips, the combinations seen in training, and of ``heldout``
  clips, the held-out combinations, scored apart: attributes named correctly);
- **FVD, KVD, FID, KID, IS, CLIPSIM** (:mod:`reelm.eval.distribution.registry`) when their weights are given,
  against real clips of the world; without weights the result says so.

Under ``torchrun`` or the ``deepspeed`` launcher the work is split by fixed batches across
processes (batch ``j`` to rank ``j % world_size``, each seeded by ``(seed, j)``) and gathered on
rank 0, so the result equals a one-process run with the same seeds. Rank 0 writes
``DIR/samples/*.mp4``, ``DIR/samples.jsonl`` (every sample's scores), ``DIR/summary.json``
(scores and protocol) and ``DIR/report.html``. The same command gives the same JSON, timings aside.

Follows: VBench (per-dimension scores, every sample's own result kept); StyleGAN-V's named
metric protocols; VideoPoet's zero-shot evaluation of text-to-video, image-to-video and
continuation.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reelm import __version__
from reelm.core.atomic import write_text
from reelm.core.config import from_dict, save_json, to_dict
from reelm.data.synthetic.captions import parse_caption, typed_prompt
from reelm.data.synthetic.world import SyntheticWorld, WorldOptions, is_held_out, prompt_set
from reelm.data.token_layout import continuation_context
from reelm.data.video_write import write_mp4
from reelm.core.device import torch_threads
from reelm.core.seeds import derive_seed
from reelm.core.distributed import init_distributed
from reelm.eval.reference_data import check_reference, reference_from, synthetic_reference
from reelm.eval.adherence import aggregate, caption_accuracy, read_clip, score_against
from reelm.eval.temporal import drift, dynamic_degree, flicker, motion_smoothness
from reelm.generation.outputs import read_prompts
from reelm.generation.pipeline import DEFAULT_GUIDANCE, DEFAULT_SAMPLING, VideoPipeline
from reelm.lm.sampling import Sampling

SUMMARY_FILE = "summary.json"
SAMPLES_FILE = "samples.jsonl"
SEEN, HELD_OUT, FROM_FILE = "seen", "held-out", "file"
# Disjoint runs of world clip indices for each use, so no clip serves twice.
PROMPT_START, I2V_START, CONTINUATION_START, CAPTION_START = 0, 10_000, 20_000, 30_000  # reference: 40_000 on


@dataclass(kw_only=True)
class GenerationEvalConfig:
    prompts: str = "synthetic"  # "synthetic" or a UTF-8 file, one prompt per line
    num_prompts: int = 24  # synthetic: prompts per group (seen and held-out combinations)
    num_samples: int = 2  # videos per prompt
    seed: int = 0
    guidance_scale: float = DEFAULT_GUIDANCE
    sampling: Sampling = field(default_factory=lambda: DEFAULT_SAMPLING)
    batch_size: int = 8  # prompts per batch
    num_frames: int | None = None  # default: the model's training clips
    image_to_video: int = 8  # synthetic: clips continued from their first frame
    continuation: int = 8  # synthetic: clips continued from their first latent frames
    captions: int = 16  # synthetic: clips to caption per group (seen and held-out combinations)
    reference: int = 64  # real clips for FVD / KVD / FID / KID
    reference_data: Any = None  # a folder, manifest or datasets.Dataset of real clips; None: the synthetic world's
    binding_clips: int = 96  # synthetic: val clips of the prompt-binding diagnostic (reelm.eval.prompt_binding); 0: none
    world: WorldOptions | None = None  # default: the model's training world, else one object on plain backgrounds
    i3d_path: str | None = None
    inception_path: str | None = None
    clip_path: str | None = None
    weights: str = "model"  # how the decode steps read the LM's weights (reelm.lm.decode_weights): model, fp16, int8


def evaluate_generation(model: str | Path | VideoPipeline, out: str | Path, cfg: GenerationEvalConfig, *,
                        video_tokenizer: str | Path | None = None, device: str = "auto",
                        progress: bool = True) -> dict | None:
    """Generate and score (see the module docstring); returns the summary on rank 0, None on other ranks.

    On CPUs it runs on one thread: its work is token-by-token decoding and small convolutions and array
    code, which two threads did not speed up and made 4-9x slower whenever another process used a core.
    """
    dist = init_distributed(device)
    with torch_threads(1 if dist.device.type == "cpu" else None):
        return _evaluate(model, out, cfg, dist, video_tokenizer, progress)


def _evaluate(model, out, cfg: GenerationEvalConfig, dist, video_tokenizer, progress: bool) -> dict | None:
    pipe = model if isinstance(model, VideoPipeline) else \
        VideoPipeline.from_pretrained(model, video_tokenizer=video_tokenizer, device=str(dist.device), weights=cfg.weights)
    if cfg.i3d_path or cfg.inception_path:  # a distribution metric will need a reference that means something
        check_reference(pipe.model.meta, cfg.reference_data)
    world = eval_world(pipe, cfg)
    began = time.perf_counter()
    prompts = _prompts(cfg, world)
    bar = _bar(progress and dist.is_main, prompts, cfg, pipe)
    samples = _gather(dist, _text_to_video(pipe, prompts, cfg, dist, bar))
    conditioned, captions = [], []
    if cfg.prompts == "synthetic":
        conditioned = _gather(dist, _conditioned(pipe, world, cfg, dist, bar))
        captions = _gather(dist, _captions(pipe, world, cfg, dist))
    bar.close()
    if not dist.is_main:
        return None
    out = Path(out)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    fps = pipe.model.clip.fps
    for record in samples + conditioned:
        write_mp4(out / "samples" / record["file"], record["video"], fps)
    summary = _summary(pipe, cfg, world, prompts, samples, conditioned, captions)
    if cfg.prompts == "synthetic" and cfg.binding_clips:
        from reelm.eval.prompt_binding import prompt_binding

        summary["binding"] = prompt_binding(pipe, world, num_clips=cfg.binding_clips, seed=cfg.seed)
    summary["distribution"] = _distribution(samples, world, cfg, pipe)
    summary["timings"] = {"seconds": round(time.perf_counter() - began, 2)}
    lines = [json.dumps(_plain(r), sort_keys=True) for r in samples + conditioned + captions]
    write_text(out / SAMPLES_FILE, "".join(line + "\n" for line in lines))
    save_json(out / SUMMARY_FILE, summary)
    from reelm.eval.reports.generation_report import write_report

    summary["report"] = str(write_report(out, summary, samples, conditioned, captions))
    return summary


# --- what to generate ----------------------------------------------------------------------------


def eval_world(pipe: VideoPipeline, cfg: GenerationEvalConfig):
    """The world the prompts and real clips come from: the config's, the model's training world, or one object."""
    options = cfg.world
    if options is None:
        trained = (pipe.model.meta.get("data") or {}).get("world")
        options = from_dict(WorldOptions, trained) if trained else WorldOptions(max_objects=1,
                                                                                textured_backgrounds=False)
    clip = pipe.model.clip
    return options.world_config(clip, seed=cfg.seed)


def _prompts(cfg: GenerationEvalConfig, world) -> list[dict]:
    if cfg.prompts != "synthetic":
        prompts = []
        for i, prompt in enumerate(read_prompts(cfg.prompts)):
            expected = parse_caption(prompt)
            scoreable = all(o.get("color") and o.get("shape") for o in expected["objects"])
            prompts.append({"id": i, "prompt": prompt, "group": HELD_OUT if is_held_out(expected) else SEEN,
                            "expected": expected if scoreable else None})
        return prompts
    from dataclasses import replace

    prompts = []
    for group, split in ((SEEN, "val"), (HELD_OUT, "heldout")):
        one_object = replace(world, split=split, max_objects=1)
        for item in prompt_set(one_object, cfg.num_prompts, start=PROMPT_START):
            prompts.append({"id": len(prompts), "prompt": item["prompt"], "group": group,
                            "expected": item["expected"], "world_index": item["index"]})
    return prompts


def _job_seed(seed: int, job: str, batch: int) -> int:
    """The pipeline seed of one batch of one eval job ("t2v", "i2v", "v2v", "v2t")."""
    return derive_seed(seed, sum(map(ord, job)), batch)


# --- text-to-video -------------------------------------------------------------------------------


def _text_to_video(pipe, prompts, cfg, dist, bar) -> list[dict]:
    records = []
    batches = [prompts[i:i + cfg.batch_size] for i in range(0, len(prompts), cfg.batch_size)]
    for j in range(dist.rank, len(batches), dist.world_size):
        batch = batches[j]
        out = pipe.text_to_video([p["prompt"] for p in batch], num_samples=cfg.num_samples,
                                 seed=_job_seed(cfg.seed, "t2v", j), guidance_scale=cfg.guidance_scale,
                                 sampling=cfg.sampling, batch_size=cfg.batch_size, num_frames=cfg.num_frames,
                                 progress=bar.update)
        for k, video in enumerate(out.videos):
            prompt = batch[k // cfg.num_samples]
            records.append(_score_sample(prompt, k % cfg.num_samples, video, pipe.model.clip.fps))
    return records


def _score_sample(prompt: dict, sample: int, video: np.ndarray, fps: float) -> dict:
    readings = read_clip(video, fps)
    record = {"kind": "t2v", "id": prompt["id"], "group": prompt["group"], "prompt": prompt["prompt"],
              "sample": sample, "file": f"t2v-{prompt['id']:03d}-{sample:02d}.mp4",
              "read": [r.attributes() for r in readings], "video": video}
    if prompt.get("expected") is not None:
        record["score"] = _lean(score_against(readings, prompt["expected"]))
    shimmer = flicker(video)
    record["flicker"], record["flicker_map"] = shimmer["flicker"], shimmer["map"]
    record["smoothness"] = motion_smoothness(readings[0].track) if readings else None
    record["dynamic"] = dynamic_degree(video)
    return record


# --- image-to-video and continuation ---------------------------------------------------------------


def _conditioned(pipe, world, cfg, dist, bar) -> list[dict]:
    """Real ``val`` clips continued from their first frame (i2v) or first latent frames (continuation)."""
    from dataclasses import replace

    source = SyntheticWorld(replace(world, split="val", max_objects=1))
    jobs = [("i2v", I2V_START + i) for i in range(cfg.image_to_video)] + \
        [("v2v", CONTINUATION_START + i) for i in range(cfg.continuation)]
    k = continuation_context(pipe.model.latent_frames)
    records = []
    for j in range(dist.rank, len(jobs), dist.world_size):
        kind, index = jobs[j]
        clip = source.clip(index)
        prompt = typed_prompt(clip.attributes["objects"][0])
        given = 1 if kind == "i2v" else pipe.tokenizer.pixel_frames(k)  # condition frames
        seed = _job_seed(cfg.seed, kind, j)
        settings = dict(seed=seed, guidance_scale=cfg.guidance_scale, sampling=cfg.sampling, progress=bar.update)
        if kind == "i2v":
            out = pipe.image_to_video(clip.frames[0], prompt, **settings)
        else:
            out = pipe.continue_video(clip.frames[:given], prompt, context_frames=k, **settings)
        video = out.videos[0]
        records.append(_score_conditioned(kind, j, index, prompt, clip, video, given, pipe.model.clip.fps))
    return records


def _score_conditioned(kind, j, index, prompt, clip, video, given, fps) -> dict:
    """Color and shape of the object, and its motion over the generated frames against the real clip's."""
    truth = clip.attributes["objects"][0]
    read_all = read_clip(video, fps)
    generated = read_clip(video[given:], fps) if len(video) - given >= 3 else []
    real = read_clip(clip.frames[given:len(video)], fps) if len(video) - given >= 3 else []
    match = next((r for r in read_all if r.color == truth["color"]), read_all[0] if read_all else None)
    moving = next((r for r in generated if r.color == truth["color"]), generated[0] if generated else None)
    expected_motion = real[0].motion if real else truth["motion"]
    right = {"color": bool(match and match.color == truth["color"]),
             "shape": bool(match and match.shape == truth["shape"]),
             "motion": bool(moving and moving.motion == expected_motion)}
    return {"kind": kind, "id": j, "world_index": index, "prompt": prompt, "file": f"{kind}-{j:03d}.mp4",
            "truth": {key: truth[key] for key in ("color", "shape", "motion")}, "expected_motion": expected_motion,
            "read": match.attributes() if match else None, "right": right, "kept": all(right.values()),
            "drift_psnr": drift(clip.frames[:given][-1:], video[given - 1:given]), "video": video,
            "condition": clip.frames[:given]}


# --- video-to-text ---------------------------------------------------------------------------------


def _captions(pipe, world, cfg, dist) -> list[dict]:
    """Greedy captions of ``cfg.captions`` clips of each group: ``val`` (seen combinations) and ``heldout``."""
    from dataclasses import replace

    jobs = [(group, split, CAPTION_START + i) for group, split in ((SEEN, "val"), (HELD_OUT, "heldout"))
            for i in range(cfg.captions)]
    sources = {split: SyntheticWorld(replace(world, split=split)) for split in ("val", "heldout")}
    mine = [(j, job) for j, job in enumerate(jobs) if j % dist.world_size == dist.rank]
    records = []
    for start in range(0, len(mine), cfg.batch_size):
        chunk = mine[start:start + cfg.batch_size]
        clips = [sources[split].clip(index) for _, (_, split, index) in chunk]
        out = pipe.caption([c.frames for c in clips], seed=cfg.seed)
        for (j, (group, _, index)), clip, caption in zip(chunk, clips, out.captions):
            score = caption_accuracy(caption, clip.attributes, keys=varied_attributes(world))
            records.append({"kind": "v2t", "id": j, "group": group, "world_index": index, "caption": caption,
                            "truth": clip.caption, "score": _lean(score)})
    return records


def varied_attributes(world) -> tuple[str, ...]:
    """The object attributes the world draws more than one value of: what a caption must tell (a world of one
    size and one speed gains nothing from a caption naming them)."""
    values = {"shape": world.shapes, "color": world.colors, "size": world.sizes, "motion": world.motions,
              "speed": world.speeds}
    return tuple(key for key in ("shape", "color", "size", "motion", "speed") if len(values[key]) > 1)


# --- gathering and summaries -----------------------------------------------------------------------


def _gather(dist, records: list[dict]) -> list[dict]:
    """Every rank's records on every rank, in a fixed order (so the result does not depend on the split)."""
    if dist.world_size > 1:
        import torch.distributed

        parts: list = [None] * dist.world_size
        torch.distributed.all_gather_object(parts, records)
        records = [r for part in parts for r in part]
    return sorted(records, key=lambda r: (r["kind"], r["id"], r.get("sample", 0)))


def _summary(pipe, cfg, world, prompts, samples, conditioned, captions) -> dict:
    summary: dict[str, Any] = {"adherence": {}, "temporal": {}}
    for group in (SEEN, HELD_OUT):
        scores = [s["score"] for s in samples if s["group"] == group and "score" in s]
        if scores:
            summary["adherence"][group] = aggregate(scores)
    flickers = [s["flicker"] for s in samples]
    smooth = [s["smoothness"] for s in samples if s["smoothness"] is not None]
    summary["temporal"] = {
        "flicker_mean": float(np.mean(flickers)) if flickers else None,
        "temporal_flickering_score": float(1 - np.mean(flickers) / 255) if flickers else None,
        "motion_smoothness_median": float(np.median(smooth)) if smooth else None,
        "dynamic_fraction": float(np.mean([s["dynamic"]["moving"] for s in samples])) if samples else None,
    }
    for kind in ("i2v", "v2v"):
        records = [r for r in conditioned if r["kind"] == kind]
        if records:
            summary[kind] = {"samples": len(records), "kept": float(np.mean([r["kept"] for r in records])),
                             **{f"{key}_right": float(np.mean([r["right"][key] for r in records]))
                                for key in ("color", "shape", "motion")},
                             "drift_psnr_mean": float(np.mean([min(r["drift_psnr"], 99.0) for r in records]))}
    for key, group in (("v2t", SEEN), ("v2t_held_out", HELD_OUT)):
        scores = [c["score"] for c in captions if c["group"] == group]
        if scores:
            summary[key] = aggregate(scores)
    summary["counts"] = {"prompts": len(prompts), "samples": len(samples), "conditioned": len(conditioned),
                         "captions": len(captions)}
    summary["protocol"] = {
        "reelm_version": __version__,
        "model": pipe.model.identity(),
        "prompts": cfg.prompts,
        "world": {key: value for key, value in to_dict(world).items()},
        "settings": {key: value for key, value in to_dict(cfg).items() if key not in ("world",)},
        "scorer": "reelm.eval.adherence (analytic; >= 99 % on rendered clips, tests/test_adherence.py)",
        "caption_attributes": list(varied_attributes(world)),
        "groups": {SEEN: "val split: combinations seen in training", HELD_OUT: "heldout split: held-out "
                   "combinations (" + ", ".join(" ".join(combo.values()) for combo in world.held_out()) + ")"},
    }
    return summary


def _distribution(samples, world, cfg, pipe) -> dict:
    """FVD / KVD / FID / KID / IS / CLIPSIM of the text-to-video samples, for the metrics whose weights are given."""
    from reelm.eval.distribution.registry import compute

    generated = [s["video"] for s in samples]
    prompts = [s["prompt"] for s in samples]
    needs = {"fvd": cfg.i3d_path, "kvd": cfg.i3d_path, "fid": cfg.inception_path, "kid": cfg.inception_path,
             "is": cfg.inception_path, "clipsim": cfg.clip_path}
    if not any(needs.values()) or not generated:
        return {name: {"computed": False, "reason": "no weights given (--i3d, --inception, --clip)"}
                for name in needs}
    reference = synthetic_reference(world, cfg.reference) if cfg.reference_data is None else \
        reference_from(cfg.reference_data, pipe.model.clip, cfg.reference, seed=cfg.seed)
    frames = min(len(v) for v in generated)
    short = "" if frames >= 16 else "_padlast"
    protocols = {"fvd": f"fvd_16f{short}", "kvd": f"kvd_16f{short}", "fid": "fid_frames", "kid": "kid_frames",
                 "is": "is_frames", "clipsim": "clipsim"}
    results = {}
    for name, protocol in protocols.items():
        if not needs[name]:
            results[name] = {"computed": False, "reason": f"no weights given for {name}"}
            continue
        uses_reference = name not in ("is", "clipsim")
        result = compute(protocol, generated, reference.clips if uses_reference else None,
                         prompts=prompts if name == "clipsim" else None, i3d_path=cfg.i3d_path,
                         inception_path=cfg.inception_path, clip_path=cfg.clip_path, device=str(pipe.model.device))
        if uses_reference and isinstance(result.get("protocol"), dict):
            result["protocol"]["reference_data"] = reference.record  # beside the detector's hash
        results[name] = result
    return results


def _lean(score: dict) -> dict:
    return {key: value for key, value in score.items() if key != "objects"} | {
        "objects": [{"expected": o["expected"], "read": o["read"], "correct": o["correct"]} for o in score["objects"]]}


def _plain(record: dict) -> dict:
    """A record without its arrays (the videos are written as files)."""
    return {key: value for key, value in record.items() if not isinstance(value, np.ndarray)}


def _bar(enabled: bool, prompts: list, cfg: GenerationEvalConfig, pipe: VideoPipeline):
    from reelm.core.progress import progress_bar

    frames = cfg.num_frames or pipe.model.clip.num_frames
    latents = pipe.tokenizer.latent_frames(frames)
    total = (len(prompts) * cfg.num_samples + (cfg.image_to_video + cfg.continuation
                                               if cfg.prompts == "synthetic" else 0)) * latents
    return progress_bar(total * pipe.layout.codes_per_frame, desc="eval generate", unit="tok", unit_scale=True,
                        enabled=enabled)
