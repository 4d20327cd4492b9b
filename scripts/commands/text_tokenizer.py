"""``reelm text-tokenizer ...``: fit the byte-level BPE text tokenizer on captions."""

from __future__ import annotations

import argparse

from reelm.commands import add_group


def register(subparsers) -> None:
    group = add_group(subparsers, "text-tokenizer", "Text tokenizer: a byte-level BPE fitted on captions.")
    train = group.add_parser(
        "train",
        help="Fit a byte-level BPE on captions and write DIR/tokenizer.json.",
        description="Fit a byte-level BPE on captions (deterministic) and write DIR/tokenizer.json.",
    )
    train.add_argument("--captions", required=True, metavar="SOURCE",
                       help="text file with one caption per line, or a .jsonl manifest with a \"caption\" field")
    train.add_argument("--vocab-size", required=True, type=int, metavar="N", help="largest vocabulary (>= 257)")
    train.add_argument("--min-frequency", type=int, default=2, metavar="N",
                       help="merge only pairs seen at least N times (default: 2)")
    train.add_argument("--out", required=True, metavar="DIR", help="folder to write tokenizer.json into")
    train.set_defaults(func=train_main)


def train_main(args: argparse.Namespace) -> int:
    from reelm.data.text_tokenizer import TextTokenizerError, read_captions, save_text_tokenizer, train_text_tokenizer

    captions = list(read_captions(args.captions))
    if not captions:
        raise TextTokenizerError(f"--captions {args.captions}: holds no captions")
    tokenizer = train_text_tokenizer(captions, args.vocab_size, min_frequency=args.min_frequency)
    path = save_text_tokenizer(tokenizer, args.out)
    print(f"wrote {path}: {tokenizer.get_vocab_size()} tokens from {len(captions)} captions")
    return 0
