"""The ``reelm`` command line: one command, subcommand groups, thin mains.

Each group lives in ``reelm.commands.<group>`` and exposes ``register(subparsers)``;
every subcommand parses its flags and calls the library. Heavy imports (torch, av)
happen inside the subcommand, so ``reelm --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from reelm import __version__
from reelm.errors import ReelmError

GROUPS = ("data", "tokenizer", "text_tokenizer", "lm", "generate", "eval", "demo")  # modules of reelm.commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reelm",
        description="Autoregressive, token-based video generation: tokenize video, train a multimodal LM, generate.",
    )
    parser.add_argument("--version", action="version", version=f"reelm {__version__}")
    # The deepspeed launcher puts --local_rank=N before the subcommand; LOCAL_RANK in the environment says the same.
    parser.add_argument("--local_rank", type=int, help=argparse.SUPPRESS)
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)
    for name in GROUPS:
        importlib.import_module(f"reelm.commands.{name}").register(groups)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ReelmError as exc:
        print(f"reelm: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("reelm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
