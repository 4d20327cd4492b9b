"""The token layout of a shard folder: built once from a text tokenizer and the video tokenizer's code grid.

The text side is a given ``tokenizer.json`` or a byte-level BPE fitted here on the source's
captions; the video side is the codebook size, latent grid and identity of the video
tokenizer that made the codes. The layout is saved to ``OUT/layout/`` atomically; several
processes writing parts of one job race to create it, the first one wins and every process
then loads and checks the saved one.
"""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

from reelm.core.atomic import publish_dir, staging_path
from reelm.data.shards import LAYOUT_DIR
from reelm.data.sources import Source
from reelm.data.text_tokenizer import TextTokenizerError, load_text_tokenizer, train_text_tokenizer
from reelm.data.token_layout import LayoutError, TokenLayout


def shard_layout(out: Path, source: Source, *, text_tokenizer: str | None, text_vocab_size: int, codebook_size: int,
                 latent_hw: Sequence[int], identity: Mapping[str, Any]) -> TokenLayout:
    """The folder's token layout: loaded and checked if present, else built and saved atomically."""
    folder = out / LAYOUT_DIR
    if not folder.is_dir():
        text = load_text_tokenizer(text_tokenizer) if text_tokenizer else _fit_on_captions(source, text_vocab_size)
        layout = TokenLayout.build(text, codebook_size=codebook_size, latent_hw=latent_hw, video_tokenizer=identity)
        staged = staging_path(folder).with_name(f"{staging_path(folder).name}-{os.getpid()}")
        shutil.rmtree(staged, ignore_errors=True)
        layout.save(staged)
        publish_dir(staged, folder, replace=False)
    layout = TokenLayout.load(folder)
    try:
        layout.check_video_tokenizer(identity)
    except LayoutError as exc:
        raise LayoutError(f"{out}: holds shards of another video tokenizer ({exc}); use a new --out, or the "
                          "tokenizer they were made with") from None
    return layout


def _fit_on_captions(source: Source, vocab_size: int):
    captions = source.captions()
    first = next(captions, None)
    if first is None:
        raise TextTokenizerError(f"{source.name}: no captions to fit a text tokenizer on (pass --text-tokenizer)")
    return train_text_tokenizer(itertools.chain([first], captions), vocab_size=vocab_size)
