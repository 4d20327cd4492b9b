"""The ``reelm`` command line: one command, subcommand groups, thin mains.

Each group lives in ``reelm.commands.<group>`` and exposes ``register(subparsers)``;
every subcommand parses its flags and calls the library. Heavy imports (torch, av)
happen inside the subcommand, so ``reelm --help`` stays instant. A :class:`ReelmError` is
printed as one ``reelm: error: ...`` line; so is running out of memory, with what to try for
that command (:data:`OOM_HINTS`).

Exit codes: ``0`` done; ``2`` a usage error (the command line does not parse: argparse's own
code); ``1`` a run that failed on its input or its environment (a :class:`ReelmError`, out of
memory); ``130`` interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from reelm import __version__
from reelm.core.errors import ReelmError

EXIT_FAILED = 1  # a run that failed on its input or environment (argparse exits 2 for usage errors)
GROUPS = ("data", "tokenizer", "text_tokenizer", "lm", "generate", "eval", "demo", "app", "env")  # modules of reelm.commands


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


# What to try when a command runs out of memory, by command ("group subcommand").
OOM_HINTS = {
    "tokenizer train": "use a smaller --batch-size, --size or --num-frames, or a smaller --preset",
    "tokenizer encode": "use a smaller --size (the shorter side in pixels), or --device cpu",
    "tokenizer decode": "decode on --device cpu, or encode the video at a smaller --size",
    "tokenizer reconstruct": "use a smaller --size (the shorter side in pixels), or --device cpu",
    "data tokenize": "use a smaller --batch-size or --size, or fewer --workers",
    "lm train": "use a smaller micro batch (--set micro_batch_size=N, with --set grad_accum_steps=M to keep the "
                "global batch), --set activation_checkpointing=true, a higher ZeRO stage, or a smaller --preset",
    "generate": "use a smaller --batch-size or --num-samples, fewer --frames, or --device cpu",
    "caption": "use a smaller --batch-size, or --device cpu",
    "eval reconstruct": "use a smaller --batch-size or --size",
}
DEFAULT_OOM_HINT = "use a smaller batch size, size or preset, or --device cpu"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ReelmError as exc:
        print(f"reelm: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("reelm: interrupted", file=sys.stderr)
        return 130
    except (MemoryError, RuntimeError) as exc:
        where = _out_of_memory(exc)
        if where is None:
            raise
        command = f"{args.group} {getattr(args, 'command', '') or ''}".strip()
        hint = OOM_HINTS.get(command, DEFAULT_OOM_HINT)
        detail = " ".join(str(exc).split())[:160]
        print(f"reelm: error: out of {where} memory in 'reelm {command}'" + (f" ({detail})" if detail else "")
              + f"; {hint}", file=sys.stderr)
        return EXIT_FAILED


def _out_of_memory(exc: BaseException) -> str | None:
    """``"GPU"`` / ``"CPU"`` when ``exc`` is an allocation failure, else None."""
    if type(exc).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError (CUDA, MPS, XPU), torch not imported here
        return "GPU"
    if isinstance(exc, MemoryError) or "can't allocate memory" in str(exc) or "out of memory" in str(exc).lower():
        return "CPU" if "cpu" in str(exc).lower() or isinstance(exc, MemoryError) else "GPU"
    return None


if __name__ == "__main__":
    sys.exit(main())
