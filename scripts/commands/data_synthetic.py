"""``reelm data synthetic``: render synthetic-world clips to MP4 with a manifest and a contact sheet."""

from __future__ import annotations

import argparse

from reelm.data.synthetic_scene import SPLITS


def register(group) -> None:
    parser = group.add_parser(
        "synthetic",
        help="Render captioned synthetic clips (MP4 + manifest.jsonl + contact_sheet.png).",
        description="Render seeded, captioned synthetic clips with their ground truth: "
        "DIR/clips/NNNNNN.mp4, DIR/manifest.jsonl and DIR/contact_sheet.png.",
    )
    parser.add_argument("--num-clips", type=int, required=True, metavar="N", help="how many clips to render")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    parser.add_argument("--split", choices=SPLITS, default="train", help="which split to draw (default: train)")
    parser.add_argument("--seed", type=int, default=0, help="world seed (default: 0)")
    parser.add_argument("--start", type=int, default=0, metavar="I", help="first clip index, for sharding (default: 0)")
    parser.add_argument("--height", type=int, default=64, help="frame height in pixels (default: 64)")
    parser.add_argument("--width", type=int, default=64, help="frame width in pixels (default: 64)")
    parser.add_argument("--num-frames", type=int, default=17, metavar="T", help="frames per clip (default: 17)")
    parser.add_argument("--fps", type=float, default=8.0, help="frames per second (default: 8)")
    parser.add_argument("--max-objects", type=int, default=2, help="at most this many objects per clip (default: 2)")
    parser.add_argument("--plain-backgrounds", action="store_true", help="plain backgrounds only, no textures")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from reelm.data.synthetic import WorldConfig, render_dataset

    cfg = WorldConfig(
        height=args.height,
        width=args.width,
        num_frames=args.num_frames,
        fps=args.fps,
        seed=args.seed,
        max_objects=args.max_objects,
        textured_backgrounds=not args.plain_backgrounds,
        split=args.split,
    )
    summary = render_dataset(args.out, args.num_clips, cfg, start=args.start)
    print(
        f"wrote {summary['num_clips']} {summary['split']} clips ({cfg.width}x{cfg.height}, "
        f"{cfg.num_frames} frames at {cfg.fps:g} fps, {summary['held_out_clips']} with held-out combinations) "
        f"to {summary['out_dir']} in {summary['seconds']:.1f}s: manifest.jsonl, contact_sheet.png"
    )
    return 0
