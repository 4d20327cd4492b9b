"""The six stages of ``reelm demo``, each a call of the library that ``reelm`` commands make, in one run folder.

Every stage is resumable: the training stages continue from their last checkpoint, the
pre-tokenization writes only its missing chunks, and a finished stage leaves
``DIR/stages/NAME.json`` (its summary line, figures and seconds) so a re-run skips it.

    DIR/data/{seen,heldout}/   held-out clips as MP4 + manifest + contact sheet
    DIR/tokenizer/             the video tokenizer run       DIR/eval/tokenizer/   its reconstruction eval
    DIR/shards/                text tokenizer + LM shards    DIR/lm/               the LM run (model folders)
    DIR/eval/generate/         samples, scores, report       DIR/report.html       the demo's report
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from reelm.core.checkpoint_format import list_checkpoints
from reelm.demo.demo_config import DemoConfig


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    title: str
    run: Callable[[DemoConfig, Path, bool], dict]  # (config, run folder, progress) -> {"line": ..., ...}


def _world(cfg: DemoConfig, split: str):
    return dataclasses.replace(cfg.world, split=split).world_config(cfg.clip, seed=cfg.seed)


def render_sets(cfg: DemoConfig, out: Path, progress: bool) -> dict:
    """Held-out clips to MP4: the training set itself is drawn from the world on the fly by the next stages."""
    from reelm.data.synthetic.world import render_dataset

    figures = {}
    for name, split in (("seen", "val"), ("heldout", "heldout")):
        summary = render_dataset(out / "data" / name, cfg.heldout_clips, _world(cfg, split))
        figures[name] = {"clips": summary["num_clips"], "manifest": summary["manifest"],
                         "contact_sheet": summary["contact_sheet"]}
    line = (f"{cfg.heldout_clips} seen-combination and {cfg.heldout_clips} held-out-combination clips "
            f"({cfg.clip.size}x{cfg.clip.size}, {cfg.clip.num_frames} frames at {cfg.clip.fps:g} fps) in {out / 'data'}; the "
            f"{cfg.train_clips} training clips are drawn from the world as they are needed")
    return {"line": line, **figures}


def train_tokenizer(cfg: DemoConfig, out: Path, progress: bool) -> dict:
    from reelm.eval.reconstruct import ReconstructConfig, evaluate_reconstruction
    from reelm.tokenizer.train import train

    run = out / "tokenizer"
    training = cfg.tokenizer_train
    training = dataclasses.replace(training, seed=cfg.seed, world=cfg.world, clip=dataclasses.replace(
        cfg.clip, temporal_crop="random"))
    resume = bool(list_checkpoints(run))
    train(run, model=None if resume else cfg.tokenizer, config=None if resume else training, resume=resume,
          progress=progress)
    summary = evaluate_reconstruction(
        run, "synthetic", out / "eval" / "tokenizer",
        ReconstructConfig(clip=cfg.clip, num_clips=cfg.tokenizer_eval_clips,
                          world=dataclasses.replace(cfg.world, split="val"), seed=cfg.seed + 1),
        progress=progress)
    adherence = summary.get("adherence", {}).get("attributes", {})
    read = ", ".join(f"{name} {value['accuracy']:.0%}" for name, value in adherence.items() if value["total"])
    line = (f"{training.steps} steps; held-out reconstructions: PSNR {summary['psnr']['mean']:.2f} dB, "
            f"SSIM {summary['ssim']['mean']:.3f}, codebook {summary['codebook']['usage']:.0%} used; read back: {read}")
    return {"line": line, "psnr": summary["psnr"]["mean"], "ssim": summary["ssim"]["mean"],
            "codebook": summary["codebook"], "adherence": summary.get("adherence"),
            "report": summary["report"]}


def make_shards(cfg: DemoConfig, out: Path, progress: bool) -> dict:
    from reelm.tokenizer.pretokenize import TokenizeConfig, tokenize_dataset

    tokenize = TokenizeConfig(clip=cfg.clip, num_clips=cfg.train_clips, world=cfg.world,
                              chunk_rows=cfg.chunk_rows, text_vocab_size=cfg.text_vocab_size, seed=cfg.seed,
                              batch_size=32, story_clips=cfg.story_clips)
    summary = tokenize_dataset("synthetic", out / "tokenizer", out / "shards", tokenize, progress=progress)
    stories = f" ({cfg.story_clips} of them training stories)" if cfg.story_clips else ""
    return {"line": f"{summary['line']}{stories}; byte-level BPE of up to {cfg.text_vocab_size} tokens fitted on the "
                    f"captions",
            "clips": summary["clips"], "skipped": summary["skipped"]}


def train_lm(cfg: DemoConfig, out: Path, progress: bool) -> dict:
    from reelm.core.distributed import shutdown_distributed
    from reelm.lm.train import train

    run = out / "lm"
    training = dataclasses.replace(cfg.lm_train, seed=cfg.seed)
    resume = bool(list_checkpoints(run))
    try:
        result = train(out / "shards", run, model=None if resume else cfg.lm, config=None if resume else training,
                       resume=resume, progress=progress, device="cpu")
    finally:
        shutdown_distributed()
    loss = result.metrics.get("loss")
    line = (f"{result.step} steps with DeepSpeed (one process)" + (f", train loss {loss:.3f}" if loss else "")
            + f"; model folder {result.checkpoint}")
    return {"line": line, "step": result.step, "metrics": result.metrics, "checkpoint": str(result.checkpoint)}


EVAL_PROCESSES = 4  # at most: the eval decodes on one thread a process, so each core can take a share of its batches


def generate_and_score(cfg: DemoConfig, out: Path, progress: bool) -> dict:
    """The generation eval, split across one process a core (up to :data:`EVAL_PROCESSES`): it decodes token by
    token on one thread, and its batches are seeded by their number, so the split changes no score."""
    import functools
    import os

    from reelm.core.distributed import run_local_ranks
    from reelm.eval.generation_eval import GenerationEvalConfig, evaluate_generation
    from reelm.generation.pipeline import DEFAULT_GUIDANCE

    eval_cfg = GenerationEvalConfig(
        num_prompts=cfg.eval_prompts, num_samples=cfg.eval_samples, seed=cfg.seed,
        guidance_scale=DEFAULT_GUIDANCE if cfg.guidance_scale is None else cfg.guidance_scale,
        image_to_video=cfg.image_to_video, continuation=cfg.continuation, captions=cfg.captions,
        binding_clips=cfg.binding_clips, world=cfg.world)
    processes = max(1, min(os.cpu_count() or 1, EVAL_PROCESSES))
    evaluate = functools.partial(evaluate_generation, device="cpu", progress=progress)
    summary = run_local_ranks(evaluate, processes, out / "lm", out / "eval" / "generate", eval_cfg)
    seen = summary["adherence"].get("seen", {}).get("accuracy")
    held = summary["adherence"].get("held-out", {}).get("accuracy")
    line = (f"{summary['counts']['samples']} text-to-video samples ({seen:.0%} of attributes right on seen, "
            f"{held:.0%} on held-out combinations), {summary['counts']['conditioned']} image-to-video and "
            f"continuation samples, {summary['counts']['captions']} captions")
    return {"line": line, "summary_file": str(out / "eval" / "generate" / "summary.json"),
            "report": summary["report"]}


STAGES = (
    Stage("data", "render the synthetic world's held-out sets", render_sets),
    Stage("tokenizer", "train the video tokenizer, score its reconstructions", train_tokenizer),
    Stage("shards", "fit the text tokenizer, pre-tokenize the training clips", make_shards),
    Stage("lm", "pretrain the LM with DeepSpeed on the task mixture", train_lm),
    Stage("generate", "generate and score samples: text/image-to-video, continuation, captions", generate_and_score),
)
