"""The text tokenizer: a byte-level BPE fitted on captions, or any local ``tokenizer.json``.

Byte-level BPE has no normalizer and no unknown token, so every string (any unicode)
encodes and decodes back exactly. Training is deterministic for the same captions and
settings. Nothing here downloads: a tokenizer is either trained here or read from a
local file. The token layout (:mod:`reelm.data.token_layout`) places these ids first in
the LM vocabulary, unchanged.

Follows: GPT-2's byte-level BPE, fitted with the Hugging Face ``tokenizers`` library.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from reelm.core.atomic import atomic_write
from reelm.core.errors import ReelmError, one_line_reason

TOKENIZER_FILE = "tokenizer.json"
MIN_VOCAB_SIZE = 256 + 1  # the byte alphabet plus at least one merge


class TextTokenizerError(ReelmError):
    """A caption source or tokenizer file that cannot be read or used."""


def train_text_tokenizer(captions: Iterable[str], vocab_size: int, min_frequency: int = 2) -> Tokenizer:
    """Fit a byte-level BPE of at most ``vocab_size`` tokens on ``captions``.

    The vocabulary is smaller when the captions hold fewer merges of ``min_frequency``.
    """
    if vocab_size < MIN_VOCAB_SIZE:
        raise TextTokenizerError(f"--vocab-size {vocab_size}: must be at least {MIN_VOCAB_SIZE} (256 bytes + merges)")
    if min_frequency < 1:
        raise TextTokenizerError(f"--min-frequency {min_frequency}: must be at least 1")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    tokenizer.train_from_iterator(captions, trainer=trainer)
    return tokenizer


def load_text_tokenizer(path: str | Path) -> Tokenizer:
    """Read a ``tokenizers`` serialization: a ``tokenizer.json`` file, or a folder holding one."""
    path = Path(path)
    file = path / TOKENIZER_FILE if path.is_dir() else path
    if not file.is_file():
        raise TextTokenizerError(f"{file}: tokenizer file not found")
    try:
        return Tokenizer.from_file(str(file))
    except Exception as exc:  # the Rust backend raises a bare Exception on any parse error
        raise TextTokenizerError(f"{file}: not a valid tokenizers file ({one_line_reason(exc)})") from None


def save_text_tokenizer(tokenizer: Tokenizer, folder: str | Path) -> Path:
    """Write ``folder/tokenizer.json`` and return its path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return atomic_write(folder / TOKENIZER_FILE, lambda tmp: tokenizer.save(str(tmp)), error=TextTokenizerError)


def read_captions(source: str | Path) -> Iterator[str]:
    """Captions from a text file (one per line) or a ``.jsonl`` manifest (a ``"caption"`` per record).

    Blank lines are skipped; line endings are removed, nothing else.
    """
    path = Path(source)
    if not path.is_file():
        raise TextTokenizerError(f"{path}: caption source not found")
    is_jsonl = path.suffix == ".jsonl"
    with path.open(encoding="utf-8") as lines:
        try:
            for number, line in enumerate(lines, start=1):
                line = line.rstrip("\r\n")
                if line.strip():
                    yield _caption_of_record(line, path, number) if is_jsonl else line
        except UnicodeDecodeError as exc:
            raise TextTokenizerError(f"{path}: not UTF-8 text ({exc.reason})") from None


def _caption_of_record(line: str, path: Path, number: int) -> str:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise TextTokenizerError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
    caption = record.get("caption") if isinstance(record, dict) else None
    if not isinstance(caption, str):
        raise TextTokenizerError(f"{path}:{number}: record has no string \"caption\" field")
    return caption
