"""The token layout of a shard folder: built once from a text tokenizer and the video tokenizer's code grid.

The text side is a given ``tokenizer.json`` or a byte-level BPE fitted here on the source's
captions; the video side is the codebook size, latent grid and identity of the video
tokenizer that made the codes. A ``tokenizer.json`` that sits beside a ``token_layout.json``
(a model folder's, or another shard folder's ``layout/``) is that layout's: the layout is reused
whole, so shards made for fine-tuning share the model's layout exactly. The layout is saved to ``OUT/layout/`` atomically; several
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
from reelm.data.text_tokenizer import TOKENIZER_FILE, TextTokenizerError, load_text_tokenizer, train_text_tokenizer
from reelm.data.token_layout import LAYOUT_FILE, LayoutError, TokenLayout


def shard_layout(out: Path, source: Source, *, text_tokenizer: str | None, text_vocab_size: int, codebook_size: int,
                 latent_hw: Sequence[int], identity: Mapping[str, Any]) -> TokenLayout:
    """The folder's token layout: loaded and checked if present, else built and saved atomically."""
    folder = out / LAYOUT_DIR
    if not folder.is_dir():
        layout = _given_layout(text_tokenizer, codebook_size, latent_hw, identity) if text_tokenizer else None
        if layout is None:
            text = load_text_tokenizer(text_tokenizer) if text_tokenizer else _fit_on_captions(source, text_vocab_size)
            layout = TokenLayout.build(text, codebook_size=codebook_size, latent_hw=latent_hw,
                                       video_tokenizer=identity)
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


def _given_layout(text_tokenizer: str, codebook_size: int, latent_hw: Sequence[int],
                  identity: Mapping[str, Any]) -> TokenLayout | None:
    """The layout whose ``tokenizer.json`` (or folder) ``text_tokenizer`` names, checked against the video tokenizer;
    None for a plain text tokenizer."""
    path = Path(text_tokenizer)
    folder = path if path.is_dir() else path.parent
    if not (folder / LAYOUT_FILE).is_file():
        return None
    layout = TokenLayout.load(folder)
    if layout.codebook_size != codebook_size or tuple(layout.latent_hw) != tuple(latent_hw):
        raise LayoutError(f"--text-tokenizer {text_tokenizer}: its layout ({folder / LAYOUT_FILE}) is for "
                          f"{layout.codebook_size} codes on a {layout.latent_hw[0]}x{layout.latent_hw[1]} grid, the "
                          f"video tokenizer makes {codebook_size} on {latent_hw[0]}x{latent_hw[1]}")
    if layout.video_tokenizer:
        try:
            layout.check_video_tokenizer(identity)
        except LayoutError as exc:
            raise LayoutError(f"--text-tokenizer {text_tokenizer}: its layout belongs to another video tokenizer "
                              f"({exc}); pass that folder's video_tokenizer as --video-tokenizer") from None
        return layout
    # a layout saved before layouts recorded their video tokenizer: the same ids, with this one's identity
    return TokenLayout(load_text_tokenizer(folder / TOKENIZER_FILE), text_vocab_size=layout.text_vocab_size,
                       codebook_size=codebook_size, latent_hw=latent_hw, video_tokenizer=identity)


def _fit_on_captions(source: Source, vocab_size: int):
    captions = source.captions()
    first = next(captions, None)
    if first is None:
        raise TextTokenizerError(f"{source.name}: no captions to fit a text tokenizer on (pass --text-tokenizer)")
    return train_text_tokenizer(itertools.chain([first], captions), vocab_size=vocab_size)
