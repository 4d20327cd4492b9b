"""``reelm demo``: the whole pipeline on the synthetic world, on a laptop CPU, with a report at the end."""

from __future__ import annotations

import argparse

from reelm.commands import add_progress_flag


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="Run the whole pipeline on the synthetic world (about 15 minutes on 2 CPU cores).",
        description="Render the synthetic world's held-out sets, train the video tokenizer, fit the text tokenizer "
        "and pre-tokenize, pretrain the LM with DeepSpeed, generate and score samples, and write DIR/report.html. "
        "Re-running the same command reuses finished stages and resumes an interrupted one.")
    p.add_argument("--out", default="runs/demo", metavar="DIR", help="run folder (default: runs/demo)")
    p.add_argument("--budget-minutes", type=float, default=15.0, metavar="M",
                   help="scale the training steps to this many minutes (default: 15, measured on 2 CPU cores)")
    p.add_argument("--seed", type=int, default=0, help="seed of the world, the models and the samples (default: 0)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="change a demo setting (reelm.demo.demo_config.DemoConfig: clip.size=32, lm_train.steps=400, eval_prompts=8, "
                   "world.max_objects=2, ...); applied before the budget scaling; repeatable")
    add_progress_flag(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from reelm.core.config import apply_overrides
    from reelm.demo import DemoConfig, run_demo
    from reelm.core.errors import ReelmError

    if not args.budget_minutes > 0:
        raise ReelmError(f"--budget-minutes {args.budget_minutes}: must be positive")
    cfg = apply_overrides(DemoConfig(), [f"seed={args.seed}", *args.overrides]).scaled(args.budget_minutes)
    run_demo(args.out, cfg, progress=args.progress)
    return 0
