"""``reelm generate`` and ``reelm caption``: zero-shot generation from a model folder (thin mains over
:class:`reelm.generation.VideoPipeline`)."""

from __future__ import annotations

import argparse
import sys

from reelm.commands import (add_device_flag, add_progress_flag, add_sampling_flags, add_story_candidates_flags,
                            add_story_context_flag, check_story_candidates, add_weights_flag,
                            sampling_from)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "generate", help="Generate videos from a prompt, a first frame (--image) or a clip (--video).",
        description="Generate videos with a trained model folder: text-to-video from PROMPT (or --prompts FILE), "
        "image-to-video with --image, continuation with --video. Writes each video (.mp4 or .gif), a contact-sheet "
        "PNG and a JSON sidecar (prompt, seed, settings, model identity, token counts, timings) beside it. "
        "Under 'torchrun --nproc_per_node N $(command -v reelm) generate ...' the videos are split across the N "
        "processes; each sample's seed comes from (--seed, prompt, sample number), so the split changes no video.")
    p.add_argument("prompt", nargs="?", help="the text prompt (optional with --image or --video)")
    _model_flags(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="video to write (.mp4 or .gif); several "
                   "videos are written as OUT-P-S.mp4 (prompt P, sample S)")
    p.add_argument("--image", metavar="PATH", help="image-to-video: this image is the first frame")
    p.add_argument("--video", metavar="PATH", help="continuation: the end of this clip is kept and extended")
    p.add_argument("--context-frames", type=int, metavar="K", help="with --video: latent frames of context to keep "
                   "(default: half the training length, rounded up, leaving at least one to generate)")
    p.add_argument("--prompts", metavar="FILE", help="one prompt per line (UTF-8), generated in batches")
    p.add_argument("--story", metavar="FILE", help="one video from a story: 'DURATION: PROMPT' a line (e.g. "
                   "'2s: a red circle moves right', '16f: ...') or JSON [{\"prompt\", \"seconds\"|\"frames\"}]; "
                   "each segment continues the frames before it under its own prompt (with --image: from that "
                   "first frame); the sheet has a row a segment, the sidecar each segment's frames, seed and context")
    add_story_context_flag(p)
    add_story_candidates_flags(p)
    p.add_argument("--num-samples", type=int, default=1, metavar="N", help="videos per prompt (default: 1)")
    p.add_argument("--frames", type=int, metavar="N", help="frames per video (default: the training length; "
                   "longer videos are made window by window)")
    p.add_argument("--guidance-scale", type=float, metavar="G",
                   help="classifier-free guidance scale; 1 = none (default: the pipeline's, see README)")
    p.add_argument("--negative-prompt", metavar="TEXT", help="guidance's other branch: steer away from TEXT "
                   "(default: the empty prompt)")
    p.add_argument("--batch-size", type=int, default=8, metavar="B", help="prompts per batch (default: 8); each "
                   "batch's videos are written as soon as it finishes")
    p.add_argument("--skip-existing", action="store_true", help="leave out the videos an earlier run wrote whole "
                   "(its sidecar, written last, is there): a killed --prompts run resumes where it stopped")
    p.add_argument("--naming", choices=("numbered", "vbench"), default="numbered",
                   help="numbered (default): OUT-P-S.mp4 for several videos; vbench: -o is a folder and each video "
                   "is '{prompt}-{S}.mp4', as VBench reads them (sheets and sidecars in OUT/reelm/)")
    add_sampling_flags(p, default="sampling (temperature 1)")
    p.set_defaults(func=generate_main)

    p = subparsers.add_parser(
        "caption", help="Caption videos (video-to-text) with a trained model folder.",
        description="Describe each VIDEO in text with a trained model folder (the first training-length window of "
        "the clip, at the model's frame rate and size); prints one caption per video.")
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video (or image) files")
    _model_flags(p)
    p.add_argument("--json", metavar="OUT", help="also write the captions with their settings to this JSON file")
    p.add_argument("--max-tokens", type=int, metavar="N", help="text ids at most per caption (default: 48)")
    p.add_argument("--batch-size", type=int, default=8, metavar="B", help="videos per batch (default: 8)")
    add_sampling_flags(p, default="greedy")
    p.set_defaults(func=caption_main)


def _model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="RUN", help="LM run folder (its latest checkpoint) or a "
                   "step-NNNNNN folder; it carries its video tokenizer and clip spec")
    p.add_argument("--video-tokenizer", metavar="DIR", help="use this video tokenizer instead of the folder's "
                   "(its identity must match the model's)")
    p.add_argument("--fps", type=float, help="frame rate (default: the model's training clips'); needed with --size "
                   "only for folders made before reelm 0.2")
    p.add_argument("--size", type=int, help="frame size of folders made before reelm 0.2 (others know theirs)")
    p.add_argument("--seed", type=int, default=0, help="seed: the same seed and settings give the same output "
                   "(default: 0)")
    add_device_flag(p)
    add_weights_flag(p)
    add_progress_flag(p)


def _pipeline(args: argparse.Namespace):
    from transformers.utils import logging as hf_logging

    from reelm.data.clip_sampling import ClipSpec
    from reelm.generation import VideoPipeline

    hf_logging.disable_progress_bar()  # loading a small model needs no bar of its own

    clip = ClipSpec(num_frames=args.frames or 17, fps=args.fps, size=args.size) if args.size and args.fps else None
    return VideoPipeline.from_pretrained(args.model, video_tokenizer=args.video_tokenizer, device=args.device,
                                         clip=clip, weights=args.weights)


def _bar(enabled: bool, total: int | None, what: str):
    from reelm.core.progress import progress_bar

    return progress_bar(total, desc=what, unit="tok", unit_scale=True, enabled=enabled)


def generate_main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from reelm.core.distributed import init_distributed, shutdown_distributed
    from reelm.core.errors import ReelmError
    from reelm.data.video_write import check_video_path
    from reelm.core.atomic import output_folder
    from reelm.generation.outputs import VBENCH_SIDE_FOLDER, plan_samples, read_prompts

    check_story_candidates(args, "--story FILE", story=bool(args.story))
    if args.story:
        return story_main(args)
    if args.story_context != "pixels":
        raise ReelmError("--story-context is for stories: give --story FILE")
    if args.naming == "vbench":
        output = Path(args.output)
        if output.suffix.lower() in (".mp4", ".gif"):
            raise ReelmError(f"-o {args.output}: with --naming vbench, -o is the folder the videos go to")
        output_folder(output / VBENCH_SIDE_FOLDER / "sidecar.json")  # the folder and its side folder
    else:
        output = check_video_path(args.output)
    if args.image and args.video:
        raise ReelmError("give --image (image-to-video) or --video (continuation), not both")
    if args.prompt is not None and args.prompts:
        raise ReelmError("give a PROMPT or --prompts FILE, not both")
    prompts = read_prompts(args.prompts) if args.prompts else [args.prompt]
    if (args.image or args.video) and len(prompts) > 1:
        raise ReelmError("--image and --video take one prompt (or none), not a prompts file")
    if prompts == [None] and not (args.image or args.video):
        raise ReelmError("nothing to generate from: give a PROMPT, --prompts FILE, --image or --video")
    for name in ("num_samples", "batch_size", "frames", "context_frames"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ReelmError(f"--{name.replace('_', '-')} {value}: must be at least 1")
    planned = plan_samples(output, prompts, args.num_samples, args.naming)
    todo = [files for files in planned if not (args.skip_existing and files.complete())]
    dist = init_distributed(args.device)
    try:
        mine = todo[dist.rank::dist.world_size]  # prompts split across the processes of torchrun / deepspeed
        who = f" (rank {dist.rank} of {dist.world_size})" if dist.world_size > 1 else ""
        if len(todo) < len(planned) and dist.is_main:
            print(f"reelm generate: {len(planned) - len(todo)} of {len(planned)} video(s) already written, skipped "
                  "(--skip-existing)")
        if mine:
            _generate_samples(args, mine, who)
        elif not todo and dist.is_main:
            print("reelm generate: nothing left to generate")
    finally:
        shutdown_distributed()
    return 0


def _generate_samples(args: argparse.Namespace, samples: list, who: str) -> None:
    """Generate ``samples`` (their prompts and sample numbers) batch by batch, writing each batch's videos at once."""
    import time

    from reelm.generation.outputs import write_sample
    from reelm.generation.pipeline import DEFAULT_GUIDANCE, DEFAULT_SAMPLING

    pipe = _pipeline(args)
    settings = dict(num_frames=args.frames, seed=args.seed,
                    guidance_scale=DEFAULT_GUIDANCE if args.guidance_scale is None else args.guidance_scale,
                    sampling=sampling_from(args, DEFAULT_SAMPLING), negative_prompt=args.negative_prompt)
    fps = args.fps or pipe.model.clip.fps
    latents = pipe.tokenizer.latent_frames(args.frames or pipe.model.clip.num_frames)
    per_batch = args.batch_size * args.num_samples  # rows of one engine call, as --batch-size prompts x samples
    conditioned = {"image": args.image, "video": args.video, "context_frames": args.context_frames}
    began, tokens = time.perf_counter(), 0
    with _bar(args.progress, len(samples) * latents * pipe.layout.codes_per_frame, "generate") as bar:
        for start in range(0, len(samples), per_batch):
            batch = samples[start:start + per_batch]
            numbers = [files.sample for files in batch]
            call = dict(settings, batch_size=len(batch), sample_numbers=numbers, progress=bar.update)
            if args.image:
                out = pipe.image_to_video(args.image, batch[0].prompt, **call)
            elif args.video:
                out = pipe.continue_video(args.video, batch[0].prompt, context_frames=args.context_frames, **call)
            else:
                out = pipe.text_to_video([files.prompt for files in batch], **call)
            info = {key: value for key, value in out.info.items()
                    if key not in ("engine", "sample_seeds", "sample_numbers", "num_samples", "batch_size")}
            tokens += out.info["tokens"]["generated"]
            for index, (files, video) in enumerate(zip(batch, out.videos)):
                sidecar = {"prompt": files.prompt, "sample": files.sample, **conditioned, **info,
                           "num_samples": args.num_samples, "batch_size": args.batch_size,
                           "sample_seed": out.info["sample_seeds"][index],
                           "tokens_this_sample": int(len(out.codes[index].reshape(-1)))}
                write_sample(files, video, fps, sidecar, label=files.prompt)
                bar.write(f"reelm generate{who}: {files.video} ({len(video)} frames {video.shape[1]}x"
                          f"{video.shape[2]}), {files.sheet.name}, {files.sidecar.name}")
    seconds = time.perf_counter() - began
    print(f"reelm generate{who}: {len(samples)} video(s), {tokens} tokens in {seconds:.1f} s")


def story_main(args: argparse.Namespace) -> int:
    """``reelm generate --story FILE -o OUT``: one video, streamed to OUT window by window."""
    import os
    import time

    from reelm.core.errors import ReelmError
    from reelm.data.video_write import check_video_path
    from reelm.generation.outputs import plan_samples, write_story
    from reelm.generation.pipeline import DEFAULT_SAMPLING
    from reelm.generation.story import plan_segments, read_story
    from reelm.generation.story_generation import StoryRecorder, story_info

    clashes = [flag for flag, given in (("PROMPT", args.prompt is not None), ("--prompts", args.prompts),
                                        ("--video", args.video), ("--frames", args.frames),
                                        ("--num-samples", args.num_samples != 1), ("--naming", args.naming != "numbered"),
                                        ("--skip-existing", args.skip_existing)) if given]
    if clashes:
        raise ReelmError(f"--story makes one video from the story's prompts and lengths: drop {', '.join(clashes)}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ReelmError("--story makes one video, window after window: run it in one process, not under torchrun")
    output = check_video_path(args.output)
    segments = read_story(args.story)
    pipe = _pipeline(args)
    fps = pipe.model.clip.fps
    planned = plan_segments(segments, fps, pipe.tokenizer.temporal_downsample)
    settings = dict(seed=args.seed, guidance_scale=args.guidance_scale, sampling=sampling_from(args, DEFAULT_SAMPLING),
                    negative_prompt=args.negative_prompt, image=args.image, context=args.story_context,
                    candidates=args.candidates, choose=args.choose)
    recorder = StoryRecorder(fps, args.seed)
    files = plan_samples(output, [None], 1)[0]
    began = time.perf_counter()
    latents = sum(s.latent_frames for s in planned)
    first = min(planned[0].latent_frames, pipe.model.latent_frames)  # the first window: one sample, no choice
    total = (first + (latents - first) * args.candidates) * pipe.layout.codes_per_frame
    with _bar(args.progress, total, "story") as bar:
        def report(piece):
            if piece.last:
                seg = piece.segment
                bar.write(f"reelm generate --story: segment {seg.index + 1}/{len(planned)} frames {seg.start}-"
                          f"{seg.end - 1} ({seg.start / fps:.2f} s): {seg.segment.prompt}")

        record = write_story(files, pipe.iter_story(segments, progress=bar.update, **settings), fps,
                             {"story": str(args.story), **story_info(pipe, **settings)}, recorder, on_piece=report)
    print(f"reelm generate --story: {output} ({record['frames']} frames, {len(planned)} segments, "
          f"{record['frames'] / fps:.2f} s), {files.sheet.name}, {files.sidecar.name} in "
          f"{time.perf_counter() - began:.1f} s")
    return 0


def caption_main(args: argparse.Namespace) -> int:
    from reelm.core.atomic import write_json
    from reelm.generation.pipeline import DEFAULT_CAPTION_TOKENS
    from reelm.lm.sampling import Sampling

    from reelm.core.errors import ReelmError

    if args.max_tokens is not None and args.max_tokens < 1:
        raise ReelmError(f"--max-tokens {args.max_tokens}: must be at least 1")
    if args.json is not None:
        from reelm.core.atomic import output_folder

        output_folder(args.json)
    pipe = _pipeline(args)
    with _bar(args.progress, None, "caption") as bar:
        out = pipe.caption(args.videos, max_tokens=args.max_tokens or DEFAULT_CAPTION_TOKENS, seed=args.seed,
                           sampling=sampling_from(args, Sampling(greedy=True)), batch_size=args.batch_size,
                           progress=bar.update)
    for video, caption in zip(args.videos, out.captions):
        print(f"{video}: {caption}")
    if args.json:
        write_json(args.json, {"captions": [{"video": v, "caption": c} for v, c in zip(args.videos, out.captions)],
                               **out.info})
        print(f"reelm caption: wrote {args.json}", file=sys.stderr)
    return 0
