"""``reelm data audit``: score every clip of a source on named quality dimensions, write the cleaned dataset."""

from __future__ import annotations

import argparse

from reelm.commands import (add_config_flags, add_device_flag, add_progress_flag, add_source_flags, add_world_flags,
                            source_options, world_options)


def register(group) -> None:
    p = group.add_parser(
        "audit",
        help="Score every clip on named quality dimensions with evidence; write the cleaned manifest and a report.",
        description="Read every clip of DATA (a folder of videos, a JSONL/CSV/Parquet manifest, or 'synthetic'), "
        "measure decode problems, duration/fps/resolution against the clip spec, frozen segments, still clips, "
        "black/white/faded frames, flicker, blur, scene cuts, letterbox bars, near-duplicates and caption agreement; "
        "write OUT/audit.jsonl (one record a clip: each value, threshold, verdict and evidence), summary.json, "
        "clean.jsonl and split.jsonl (manifests the other commands read) and report.html. Re-running the same "
        "command resumes a killed run; torchrun splits it across processes.")
    p.add_argument("data", metavar="DATA", help="a folder, a manifest, a video file, or 'synthetic'")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--num-frames", type=int, help="frames of the clips the next stage cuts (default: 17)")
    p.add_argument("--fps", type=float, help="their frame rate (default: 8)")
    p.add_argument("--size", type=int, help="their square side (default: 64)")
    p.add_argument("--num-clips", type=int, help="number of synthetic clips (with DATA synthetic)")
    add_world_flags(p, scope=" (with DATA synthetic)")
    p.add_argument("--clip-model", metavar="DIR", help="a local CLIP model folder for caption agreement (default: the "
                   "scene reader, for captions in the synthetic world's vocabulary)")
    p.add_argument("--seed", type=int, help="seed of the synthetic world (default: 0)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="change a threshold (reelm.eval.audit.audit_config.AuditConfig: blur.max_blur=0.5, "
                   "static.drop=true, cut.min_score=0.15, ...); repeatable")
    add_config_flags(p, "the keys of AuditConfig, e.g. blur: {max_blur: 0.5}")
    add_source_flags(p)
    add_device_flag(p)
    add_progress_flag(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from reelm.commands.run_configs import settings_from_flags
    from reelm.core.config import dump_config, to_dict
    from reelm.eval.audit.audit_config import AuditConfig
    from reelm.eval.audit.audit_run import audit_dataset

    cfg = settings_from_flags(AuditConfig(), args, "audit", [
        ("clip.num_frames", args.num_frames), ("clip.fps", args.fps), ("clip.size", args.size), ("seed", args.seed),
        ("num_clips", args.num_clips)])
    cfg = replace(cfg, world=world_options(args, cfg.world), source=source_options(args))
    if args.print_config:
        print(dump_config(to_dict(cfg)), end="")
        return 0
    summary = audit_dataset(args.data, args.out, cfg, clip_model=args.clip_model, device=args.device,
                            progress=args.progress)
    if summary is not None:
        reasons = ", ".join(f"{k}: {v}" for k, v in summary["drop_reasons"].items()) or "none"
        print(f"reelm data audit: {summary['clips']} clips, kept {summary['kept']}, dropped {summary['dropped']} "
              f"({reasons}) in {summary['seconds']:.1f} s -> {summary['clean_manifest']}, {summary['report']}")
    return 0
