"""Packing variable-length sequences into fixed-length blocks without cross-document attention.

Documents are laid end to end in a block of ``block_size`` tokens; ``position_ids``
restart at 0 for every document, which is all a Hugging Face causal LM needs to keep them
apart (a block-diagonal causal mask under SDPA/eager, the varlen kernel under
flash-attention). ``labels`` hold the target ids (``-100`` elsewhere): ``<bos>`` and the
padding are never targets, so no token is trained to follow another document. The tail of
a block is padding, itself a separate "document" that nothing attends to.

Follows: the packed-sequence format of transformers' ``DataCollatorWithFlattening``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reelm.data.token_layout import IGNORE_INDEX, labels_of
from reelm.core.errors import ReelmError


class PackingError(ReelmError):
    """Documents that do not fit the block they are packed into."""


@dataclass(frozen=True, eq=False)
class Block:
    input_ids: np.ndarray  # (L,) int64
    labels: np.ndarray  # (L,) int64, IGNORE_INDEX where no loss applies
    position_ids: np.ndarray  # (L,) int64, restarting at 0 per document
    task_index: np.ndarray  # (L,) int64, the task of each token's document; -1 on padding


def pack(documents: list[tuple[np.ndarray, np.ndarray, int]], block_size: int, pad_id: int) -> Block:
    """One block from ``(input_ids, loss_mask, task_index)`` documents that fit together."""
    total = sum(len(ids) for ids, _, _ in documents)
    if total > block_size:
        raise PackingError(f"{len(documents)} documents of {total} tokens do not fit a block of {block_size}")
    input_ids = np.full(block_size, pad_id, dtype=np.int64)
    labels = np.full(block_size, IGNORE_INDEX, dtype=np.int64)
    position_ids = np.zeros(block_size, dtype=np.int64)
    task_index = np.full(block_size, -1, dtype=np.int64)
    start = 0
    for ids, loss_mask, task in documents:
        stop = start + len(ids)
        input_ids[start:stop] = ids
        labels[start:stop] = labels_of(ids, loss_mask)
        labels[start] = IGNORE_INDEX  # a document's first token is never predicted from the previous one
        position_ids[start:stop] = np.arange(len(ids))
        task_index[start:stop] = task
        start = stop
    position_ids[start:] = np.arange(block_size - start)
    return Block(input_ids, labels, position_ids, task_index)
