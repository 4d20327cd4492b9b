"""Packing variable-length sequences into fixed-length blocks without cross-document attention.

Documents are laid end to end in a block of ``block_size`` tokens; ``position_ids``
restart at 0 for every document, which is all a Hugging Face causal LM needs to keep them
apart (a block-diagonal causal mask under SDPA/eager, the varlen kernel under
flash-attention). ``labels`` hold the target ids (``-100`` elsewhere): ``<bos>`` and the
padding are never targets, so no token is trained to follow another document. The tail of
a block is padding, itself a separate "document" that nothing attends to.

:func:`split_documents` undoes it for a batch: one row per document, right-padded, for attention
kernels that cannot skip the block-diagonal mask's empty tiles (SDPA on CPUs computes all of a
block's causal triangle whatever the mask; flash-attention's varlen kernel needs no split).

Follows: the packed-sequence format of transformers' ``DataCollatorWithFlattening``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

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


def split_documents(batch: dict[str, torch.Tensor], pad_id: int, *, multiple_of: int = 8) -> dict[str, torch.Tensor]:
    """A batch of packed blocks as one row per document that has a target, right-padded to a common length.

    ``batch`` holds ``(B, L)`` ``input_ids``, ``labels``, ``position_ids`` (restarting at 0 per
    document, as :func:`pack` writes them) and ``task_index``. Each document keeps its tokens,
    labels and positions, so a causal LM computes the same loss on it: padding comes after the
    document (a causal mask keeps it out of every real token's attention) and is no target; a
    document's last token predicts nothing, packed or not. Documents without a target (a block's
    padding tail) are dropped. The rows are padded to their longest document rounded up to
    ``multiple_of`` (fewer shapes for a compiled model to specialise on), at most the block's
    length; where that would hold more tokens than the blocks do, ``batch`` is returned as it is.
    """
    position_ids, labels = batch["position_ids"], batch["labels"]
    rows, block = position_ids.shape
    if not bool((position_ids[:, 0] == 0).all()):  # not blocks as pack() writes them: leave them be
        return batch
    segment = (position_ids.flatten() == 0).long().cumsum(0) - 1  # every block starts a document at position 0
    count = int(segment[-1]) + 1
    lengths = torch.bincount(segment, minlength=count)
    targets = torch.bincount(segment, weights=(labels.flatten() != IGNORE_INDEX).double(), minlength=count)
    starts = torch.cumsum(lengths, 0) - lengths
    keep = targets > 0
    starts, lengths = starts[keep], lengths[keep]
    if not len(lengths):
        return batch
    width = min(block, -(-int(lengths.max()) // multiple_of) * multiple_of)
    if len(lengths) * width > rows * block:
        return batch
    offsets = torch.arange(width)
    valid = offsets < lengths[:, None]
    index = torch.where(valid, starts[:, None] + offsets, 0)
    fill = {"input_ids": pad_id, "labels": IGNORE_INDEX, "task_index": -1}
    out = {name: torch.where(valid, batch[name].flatten()[index], value) for name, value in fill.items()}
    out["position_ids"] = offsets.expand(len(lengths), -1).contiguous()
    return out
