"""``reelm demo``: the whole pipeline on the synthetic world, on a laptop CPU, with a report at the end."""

from __future__ import annotations

import argparse

from reelm.commands import add_config_flags, add_progress_flag


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="Run the whole pipeline on the synthetic world (about 15 minutes on 2 CPU cores).",
        description="Render the synthetic world's held-out sets, train the video tokenizer, fit the text tokenizer "
        "and pre-tokenize, pretrain the LM with DeepSpeed, generate and score samples, and write DIR/report.html. "
        "Re-running the same command reuses finished stages and resumes an interrupted one.")
    p.add_argument("--out", default="runs/demo", metavar="DIR", help="run folder (default: runs/demo)")
    p.add_argument("--budget-minutes", type=float, metavar="M",
                   help="scale the training steps to this many minutes (default: 15, measured on 2 CPU cores; "
                   "same as --set budget_minutes=M)")
    p.add_argument("--seed", type=int, help="seed of the world, the models and the samples (default: 0)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="change a demo setting (reelm.demo.demo_config.DemoConfig: clip.size=32, lm_train.steps=400, eval_prompts=8, "
                   "world.max_objects=2, ...); applied before the budget scaling; repeatable")
    add_config_flags(p, "the keys of DemoConfig, e.g. lm_train: {steps: 400}")
    add_progress_flag(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from reelm.commands.run_configs import settings_from_flags
    from reelm.core.config import dump_config, to_dict
    from reelm.demo import DemoConfig, run_demo
    from reelm.core.errors import ReelmError

    cfg = settings_from_flags(DemoConfig(), args, "demo", [("seed", args.seed), ("budget_minutes", args.budget_minutes)])
    if not cfg.budget_minutes > 0:
        raise ReelmError(f"budget_minutes {cfg.budget_minutes:g}: must be positive")
    if args.print_config:
        scaled = cfg.scaled(cfg.budget_minutes)
        print(f"# budget_minutes={cfg.budget_minutes:g} trains tokenizer_train.steps={scaled.tokenizer_train.steps}, "
              f"lm_train.steps={scaled.lm_train.steps} on train_clips={scaled.train_clips}")
        print(dump_config(to_dict(cfg)), end="")
        return 0
    run_demo(args.out, cfg.scaled(cfg.budget_minutes), progress=args.progress)
    return 0
