"""``reelm eval ...``: score reconstructions and generations, with JSON results and an HTML report."""

from __future__ import annotations

import argparse

from reelm.commands import (
    add_device_flag,
    add_group,
    add_outside_root_flag,
    add_progress_flag,
    add_world_flags,
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
    add_outside_root_flag(p)
    add_device_flag(p)
    add_progress_flag(p)
    p.set_defaults(func=reconstruct_main)


def _clip_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--num-frames", type=int, default=17, help="frames per clip, 1 + 4k (default: 17)")
    p.add_argument("--fps", type=float, default=8.0, help="clip frame rate (default: 8)")
    p.add_argument("--size", type=int, default=64, help="square clip side after resize + center crop (default: 64)")


def reconstruct_main(args: argparse.Namespace) -> int:
    from reelm.data.clips import ClipSpec
    from reelm.eval.reconstruct import ReconstructConfig, evaluate_reconstruction

    cfg = ReconstructConfig(clip=ClipSpec(num_frames=args.num_frames, fps=args.fps, size=args.size),
                            num_clips=args.num_clips, world=world_options(args), seed=args.seed,
                            batch_size=args.batch_size, lpips_path=args.lpips, i3d_path=args.i3d,
                            allow_outside_root=args.allow_outside_root)
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
