"""``reelm eval ...``: score reconstructions and generations, with JSON results and an HTML report."""

from __future__ import annotations

import argparse
from pathlib import Path

from reelm.commands import (
    add_device_flag,
    add_group,
    add_progress_flag,
    add_source_flags,
    add_sampling_flags,
    add_story_candidates_flags,
    add_story_context_flag,
    check_story_candidates,
    add_weights_flag,
    add_world_flags,
    sampling_from,
    world_flags,
    source_options,
    world_options,
)


def register(subparsers) -> None:
    group = add_group(subparsers, "eval", "Eval: score reconstructions and generations (JSON + an HTML report).")

    p = group.add_parser(
        "reconstruct", help="Score a video tokenizer's reconstructions (PSNR, SSIM, LPIPS, codebook, rFVD).",
        description="Encode and decode the clips of SOURCE (a manifest, a folder, one video file or 'synthetic') "
        "with a video tokenizer and score every clip: PSNR and SSIM, LPIPS with --lpips, codebook usage and "
        "perplexity, rFVD with --i3d, and for synthetic clips the attributes the adherence scorer reads back. "
        "Writes OUT/clips.jsonl, OUT/summary.json and OUT/report.html.")
    p.add_argument("--tokenizer", required=True, metavar="RUN", help="tokenizer run folder or checkpoint folder")
    p.add_argument("--data", default="synthetic", metavar="SOURCE",
                   help="manifest, folder, video file or 'synthetic' (default)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the results and the report")
    _clip_flags(p)
    p.add_argument("--num-clips", type=int, default=64, metavar="N", help="synthetic clips to score (default: 64)")
    add_world_flags(p, scope=" (with --data synthetic)")
    p.add_argument("--lpips", metavar="FILE", help="LPIPS-VGG16 weights (safetensors) to report LPIPS")
    p.add_argument("--i3d", metavar="FILE", help="I3D weights (TorchScript detector or pytorch-i3d state dict) "
                   "to report rFVD")
    p.add_argument("--batch-size", type=int, default=8, metavar="B", help="clips per tokenizer forward (default: 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic world and the clip windows")
    add_source_flags(p)
    add_device_flag(p)
    add_progress_flag(p)
    p.set_defaults(func=reconstruct_main)

    p = group.add_parser(
        "generate", help="Generate samples with a model folder and score them (adherence, temporal, FVD, ...).",
        description="Generate --num-samples videos per prompt (--prompts FILE, or 'synthetic': prompts typed from the "
        "world's seen and held-out combinations) and score them: prompt adherence per attribute (seen vs held-out), "
        "temporal quality, and with synthetic prompts image-to-video, continuation and video-to-text; FVD/KVD with "
        "--i3d, FID/KID/IS with --inception, CLIPSIM with --clip. Under torchrun or the deepspeed launcher the work "
        "is split across processes. Writes OUT/samples/, OUT/samples.jsonl, OUT/summary.json and OUT/report.html.")
    p.add_argument("--model", required=True, metavar="RUN", help="LM run folder or step-NNNNNN folder")
    p.add_argument("--prompts", default="synthetic", metavar="FILE|synthetic",
                   help="one prompt per line (UTF-8), or 'synthetic' (default)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the samples, results and report")
    p.add_argument("--stories", metavar="FILE|synthetic", help="score stories instead: each made into one video "
                   "(reelm generate --story), every segment for adherence on its own frames and every boundary for "
                   "continuity (same object, no jump, PSNR drift); 'synthetic': the world's story clips, or a story "
                   "file / a .jsonl of stories (one JSON story a line)")
    p.add_argument("--num-stories", type=int, default=64, metavar="N", help="synthetic stories (default: 64)")
    p.add_argument("--story-segments", default="2-4", metavar="A-B", help="synthetic: segments a story (default: 2-4)")
    p.add_argument("--color-changes", action="store_true", help="synthetic stories: the object may change color")
    add_story_context_flag(p)
    add_story_candidates_flags(p)
    p.add_argument("--no-baseline", action="store_true", help="stories: skip each segment's prompt alone (the "
                   "single-prompt baseline the per-segment adherence is compared with)")
    p.add_argument("--video-tokenizer", metavar="DIR", help="use this video tokenizer instead of the model folder's")
    p.add_argument("--num-prompts", type=int, default=24, metavar="N",
                   help="synthetic: prompts per group, seen and held-out (default: 24)")
    p.add_argument("--num-samples", type=int, default=2, metavar="N", help="videos per prompt (default: 2)")
    p.add_argument("--frames", type=int, metavar="N", help="frames per video (default: the training length)")
    p.add_argument("--image-to-video", type=int, default=8, metavar="N",
                   help="synthetic: real clips continued from their first frame (default: 8)")
    p.add_argument("--continuation", type=int, default=8, metavar="N",
                   help="synthetic: real clips continued from their first latent frames (default: 8)")
    p.add_argument("--captions", type=int, default=16, metavar="N", help="synthetic: clips to caption per group, "
                   "seen and held-out combinations (default: 16)")
    p.add_argument("--reference", type=int, default=64, metavar="N",
                   help="real clips for FVD / KVD / FID / KID (default: 64)")
    p.add_argument("--reference-data", metavar="DATA", help="the real clips FVD / KVD / FID / KID compare with: a "
                   "folder or manifest, read at the model's clip spec (default: the synthetic world's, only for a "
                   "model trained on it; recorded in each result's protocol)")
    p.add_argument("--binding-clips", type=int, default=96, metavar="N",
                   help="synthetic: val clips of the prompt-binding diagnostic, teacher-forced (default: 96; 0: none)")
    p.add_argument("--guidance-scale", type=float, metavar="G", help="classifier-free guidance scale (default: the "
                   "pipeline's)")
    add_sampling_flags(p, default="the pipeline's")
    p.add_argument("--batch-size", type=int, default=8, metavar="B", help="prompts per batch (default: 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of prompts, samples and real clips (default: 0)")
    add_world_flags(p, scope=" (synthetic prompts; default: the model's training world)")
    p.add_argument("--i3d", metavar="FILE", help="I3D weights for FVD / KVD")
    p.add_argument("--inception", metavar="FILE", help="torch-fidelity's Inception weights for FID / KID / IS")
    p.add_argument("--clip", metavar="DIR", help="a CLIP model folder for CLIPSIM")
    add_device_flag(p)
    add_weights_flag(p)
    add_progress_flag(p)
    p.set_defaults(func=generate_main)


def _clip_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--num-frames", type=int, default=17, help="frames per clip, 1 + 4k (default: 17)")
    p.add_argument("--fps", type=float, default=8.0, help="clip frame rate (default: 8)")
    p.add_argument("--size", type=int, default=64, help="square clip side after resize + center crop (default: 64)")


def reconstruct_main(args: argparse.Namespace) -> int:
    from reelm.data.clip_sampling import ClipSpec
    from reelm.eval.reconstruct import ReconstructConfig, evaluate_reconstruction

    cfg = ReconstructConfig(clip=ClipSpec(num_frames=args.num_frames, fps=args.fps, size=args.size),
                            num_clips=args.num_clips, world=world_options(args), seed=args.seed,
                            batch_size=args.batch_size, lpips_path=args.lpips, i3d_path=args.i3d,
                            source=source_options(args))
    summary = evaluate_reconstruction(args.tokenizer, args.data, args.out, cfg, device=args.device,
                                      progress=args.progress)
    adherence = summary.get("adherence")
    read_back = ""
    if adherence:
        read_back = ", read back: " + ", ".join(f"{name} {value['accuracy']:.0%}" for name, value in
                                                adherence["attributes"].items() if value["total"])
    print(f"reelm eval reconstruct: {summary['clips']} clips, PSNR {summary['psnr']['mean']:.2f} dB, "
          f"SSIM {summary['ssim']['mean']:.4f}, codebook {summary['codebook']['usage']:.1%} used{read_back} "
          f"-> {summary['report']}")
    return 0


def generate_main(args: argparse.Namespace) -> int:
    from transformers.utils import logging as hf_logging

    from reelm.core.distributed import shutdown_distributed
    from reelm.core.errors import ReelmError
    from reelm.eval.generation_eval import GenerationEvalConfig, evaluate_generation
    from reelm.generation.pipeline import DEFAULT_GUIDANCE, DEFAULT_SAMPLING

    hf_logging.disable_progress_bar()
    check_story_candidates(args, "--stories FILE|synthetic", story=bool(args.stories))
    if args.stories:
        return stories_main(args)
    if args.story_context != "pixels":
        raise ReelmError("--story-context is for stories: give --stories FILE|synthetic")
    for name in ("num_prompts", "num_samples", "batch_size", "frames"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ReelmError(f"--{name.replace('_', '-')} {value}: must be at least 1")
    cfg = GenerationEvalConfig(
        prompts=args.prompts, num_prompts=args.num_prompts, num_samples=args.num_samples, seed=args.seed,
        guidance_scale=DEFAULT_GUIDANCE if args.guidance_scale is None else args.guidance_scale,
        sampling=sampling_from(args, DEFAULT_SAMPLING), batch_size=args.batch_size, num_frames=args.frames,
        image_to_video=args.image_to_video, continuation=args.continuation, captions=args.captions,
        reference=args.reference, reference_data=args.reference_data, binding_clips=args.binding_clips,
        world=world_options(args) if world_flags(args) else None,
        i3d_path=args.i3d, inception_path=args.inception, clip_path=args.clip, weights=args.weights)
    try:
        summary = evaluate_generation(args.model, args.out, cfg, video_tokenizer=args.video_tokenizer,
                                      device=args.device, progress=args.progress)
    finally:
        shutdown_distributed()
    if summary is None:  # not rank 0
        return 0
    for line in summary_lines(summary):
        print(line)
    print(f"reelm eval generate: {summary['report']}")
    return 0


def stories_main(args: argparse.Namespace) -> int:
    """``reelm eval generate --stories ...``: the story eval (:mod:`reelm.eval.story_eval`)."""
    import re

    from reelm.core.errors import ReelmError
    from reelm.eval.story_eval import StoryEvalConfig, evaluate_stories
    from reelm.generation.pipeline import DEFAULT_SAMPLING

    match = re.fullmatch(r"(\d+)(?:-(\d+))?", args.story_segments)
    if not match or int(match.group(1)) < 1 or int(match.group(2) or match.group(1)) < int(match.group(1)):
        raise ReelmError(f"--story-segments {args.story_segments!r}: expected N or A-B with 1 <= A <= B (e.g. 2-4)")
    if args.stories != "synthetic" and not Path(args.stories).is_file():
        raise ReelmError(f"--stories {args.stories}: not found; give a story file, a .jsonl of stories or 'synthetic'")
    if args.num_stories < 1:
        raise ReelmError(f"--num-stories {args.num_stories}: must be at least 1")
    low, high = int(match.group(1)), int(match.group(2) or match.group(1))
    cfg = StoryEvalConfig(stories=args.stories, num_stories=args.num_stories, min_segments=low, max_segments=high,
                          color_changes=args.color_changes, seed=args.seed, guidance_scale=args.guidance_scale,
                          sampling=sampling_from(args, DEFAULT_SAMPLING), baseline=not args.no_baseline,
                          context=args.story_context, candidates=args.candidates, choose=args.choose,
                          weights=args.weights, world=world_options(args) if world_flags(args) else None)
    summary = evaluate_stories(args.model, args.out, cfg, video_tokenizer=args.video_tokenizer, device=args.device,
                               progress=args.progress)
    adherence, continuity = summary.get("adherence") or {}, summary["continuity"]
    for key, value in (adherence.get("attributes") or {}).items():
        if value["total"]:
            ratio = (summary.get("ratio") or {}).get(key)
            print(f"  segment {key:<8} {value['accuracy']:.1%} of {value['total']}"
                  + (f"  ({ratio:.2f}x each prompt alone)" if ratio is not None else ""))
    if continuity["total"]:
        alone = summary.get("continuity_alone")
        print(f"  continuity kept at {continuity['share']:.1%} of {continuity['total']} boundaries"
              + (f"  (the same rule inside each prompt's clip alone: {alone['share']:.1%} of {alone['total']})"
                 if alone else ""))
        print("  by boundary: " + ", ".join(f"{i}: {v['kept']}/{v['total']}" for i, v in summary["by_boundary"].items()))
    print(f"reelm eval generate --stories: {summary['report']}")
    return 0


def summary_lines(summary: dict) -> list[str]:
    """The summary table of a generation eval, as aligned lines for a terminal."""
    rows = []
    for group, result in summary["adherence"].items():
        parts = "  ".join(f"{name} {value['accuracy']:.0%}" for name, value in result["attributes"].items()
                          if value["total"])
        rows.append((f"text-to-video ({group})", f"{result['accuracy']:.1%}   {parts}"))
    for kind, name in (("i2v", "image-to-video kept"), ("v2v", "continuation kept")):
        if kind in summary:
            rows.append((name, f"{summary[kind]['kept']:.1%} of {summary[kind]['samples']}"))
    for key, group in (("v2t", "seen"), ("v2t_held_out", "held-out")):
        if key in summary:
            rows.append((f"video-to-text ({group})", f"{summary[key]['accuracy']:.1%} of attributes"))
    if summary["temporal"]["flicker_mean"] is not None:
        rows.append(("flicker (0-255)", f"{summary['temporal']['flicker_mean']:.2f}"))
    for name, result in summary.get("distribution", {}).items():
        if result.get("computed"):
            rows.append((name.upper(), f"{result['value']:.4g}"))
    width = max(len(name) for name, _ in rows) if rows else 0
    return [f"  {name:<{width}}  {value}" for name, value in rows]
