"""``reelm data synthetic``: render synthetic-world clips to MP4 with a manifest and a contact sheet."""

from __future__ import annotations

import argparse

from reelm.commands import add_world_flags, world_options


def register(group) -> None:
    parser = group.add_parser(
        "synthetic",
        help="Render captioned synthetic clips (MP4 + manifest.jsonl + contact_sheet.png).",
        description="Render seeded, captioned synthetic clips with their ground truth: "
        "DIR/clips/NNNNNN.mp4, DIR/manifest.jsonl and DIR/contact_sheet.png.",
    )
    parser.add_argument("--num-clips", type=int, required=True, metavar="N", help="how many clips to render")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="world seed (default: 0)")
    parser.add_argument("--height", type=int, default=64, help="frame height in pixels (default: 64)")
    parser.add_argument("--width", type=int, default=64, help="frame width in pixels (default: 64)")
    parser.add_argument("--num-frames", type=int, default=17, metavar="T", help="frames per clip (default: 17)")
    parser.add_argument("--fps", type=float, default=8.0, help="frames per second (default: 8)")
    add_world_flags(parser)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from reelm.data.clip_sampling import ClipSpec
    from reelm.data.synthetic.world import render_dataset

    world = world_options(args)
    cfg = replace(world.world_config(ClipSpec(num_frames=args.num_frames, fps=args.fps, size=args.height), seed=args.seed),
                  width=args.width)
    summary = render_dataset(args.out, args.num_clips, cfg, start=world.start)
    print(
        f"wrote {summary['num_clips']} {summary['split']} clips ({cfg.width}x{cfg.height}, "
        f"{cfg.num_frames} frames at {cfg.fps:g} fps, {summary['held_out_clips']} with held-out combinations) "
        f"to {summary['out_dir']} in {summary['seconds']:.1f}s: manifest.jsonl, contact_sheet.png"
    )
    return 0
