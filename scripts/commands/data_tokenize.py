"""``reelm data tokenize``: a video-text source -> pre-tokenized Arrow shards for the LM."""

from __future__ import annotations

import argparse

from reelm.commands import (add_device_flag, add_progress_flag, add_source_flags, add_world_flags, source_options,
                            world_options)


def register(group) -> None:
    p = group.add_parser(
        "tokenize",
        help="Encode a video-text source into LM-ready Arrow shards (resumable, shardable).",
        description="Read clips from SOURCE (a JSONL/CSV/Parquet manifest, a folder of videos with same-name "
        ".txt captions, or 'synthetic'), encode them with the video tokenizer and write Arrow shards with the "
        "token layout to OUT. Re-running the same command finishes a killed run without duplicates.",
    )
    p.add_argument("--video-tokenizer", required=True, help="tokenizer run folder or checkpoint folder")
    p.add_argument("--data", default="synthetic", help="manifest path, folder, or 'synthetic' (default)")
    p.add_argument("--num-clips", type=int, help="number of synthetic clips (with --data synthetic)")
    add_world_flags(p, scope=" (with --data synthetic)")
    p.add_argument("--story-clips", type=int, default=0,
                   help="with --data synthetic and one object a clip: this many training stories after the clips, "
                        "their motion (or color) changing where a continuation's context ends, captioned by what "
                        "follows (default: 0)")
    p.add_argument("--story-anchor-windows", type=int, default=0,
                   help="with --story-clips: draw each story plain or anchored, its context's first frame the "
                        "story's first frame from 1 to this many windows back, as a story made with "
                        "--story-context anchor sees it (default: 0, plain)")
    p.add_argument("--out", required=True, help="output shard folder")
    p.add_argument("--num-frames", type=int, default=17, help="frames per clip (1 + 4k; default 17)")
    p.add_argument("--fps", type=float, default=8.0, help="clip frame rate (default 8)")
    p.add_argument("--size", type=int, default=64, help="square clip side after resize + center crop (default 64)")
    p.add_argument("--temporal-crop", choices=("center", "random"), default="center",
                   help="where a clip's window sits in a longer video (default: center)")
    p.add_argument("--clips-per-video", type=int, default=1, help="clips cut from each video (default: 1)")
    p.add_argument("--text-tokenizer", help="a tokenizer.json to use (default: fit a BPE on the captions)")
    p.add_argument("--text-vocab-size", type=int, default=4096,
                   help="largest vocabulary of the fitted BPE (default: 4096)")
    p.add_argument("--chunk-rows", type=int, default=256, help="source rows per written chunk")
    p.add_argument("--num-shards", type=int, default=1, help="split the job into this many parts")
    p.add_argument("--shard-index", type=int, default=0, help="the part this process writes")
    p.add_argument("--workers", type=int, default=0, help="processes decoding videos (0: in this process)")
    p.add_argument("--batch-size", type=int, default=8, help="clips per tokenizer forward")
    p.add_argument("--precision", choices=("fp32", "bf16", "auto"), default="fp32",
                   help="the encoder's arithmetic: fp32 (default: the exact codes), bf16 (autocast; faster on CPUs "
                        "with AMX or AVX512-BF16, a stated fraction of codes differ), auto (bf16 where native)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the encoder: for large jobs (the first batch pays tens of seconds of "
                        "compilation; a few codes in 10^5 change in fp32)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic world and the clip windows")
    add_source_flags(p)
    add_device_flag(p)
    add_progress_flag(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from reelm.data.clip_sampling import ClipSpec
    from reelm.tokenizer.pretokenize import TokenizeConfig, tokenize_dataset

    cfg = TokenizeConfig(
        clip=ClipSpec(num_frames=args.num_frames, fps=args.fps, size=args.size,
                      temporal_crop=args.temporal_crop, clips_per_video=args.clips_per_video),
        num_clips=args.num_clips, world=world_options(args), chunk_rows=args.chunk_rows, num_shards=args.num_shards,
        shard_index=args.shard_index, workers=args.workers, batch_size=args.batch_size, precision=args.precision,
        compile=args.compile,
        text_tokenizer=args.text_tokenizer, text_vocab_size=args.text_vocab_size, seed=args.seed,
        story_clips=args.story_clips, story_anchor_windows=args.story_anchor_windows, source=source_options(args),
    )
    summary = tokenize_dataset(args.data, args.video_tokenizer, args.out, cfg, progress=args.progress,
                               device=args.device)
    print(f"reelm data tokenize: {summary['part']}: {summary['line']} -> {args.out} "
          f"(errors: {args.out}/errors.jsonl)")
    return 0
