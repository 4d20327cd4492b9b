"""LM data loading: shard examples -> task sequences -> packed blocks, resumable exactly.

Each pre-tokenized example (a code grid and its caption ids, see :mod:`reelm.data.shards`)
becomes one sequence of a task drawn from the mixture — text-to-video, image-to-video,
continuation, video-to-text or unconditional — built by the token layout. Conditional
tasks drop their caption with probability ``text_dropout`` (the unconditional form used by
classifier-free guidance). A training story (a row whose ``attributes`` hold a ``story``, see
:class:`reelm.data.sources.StoryRows`) is always a continuation: its context is the story's first
segment and its text the caption of the second, which the generated frames show (the layout's
"Stories"). Sequences are packed greedily into ``block_size`` blocks
(:mod:`reelm.data.packing`).

Determinism and resume: epoch ``e`` visits the examples in the permutation drawn from
``(seed, e)``; rank ``r`` of ``world_size`` takes every ``world_size``-th of them. The task
and dropout of an example depend only on ``(seed, epoch, example)``, and a block is filled
from a cursor into that order, so the loader's whole state is ``(epoch, cursor)``: saved
with the trainer, it replays exactly the blocks an uninterrupted run would have seen.
A validation split is carved out by example index (``val_fraction``), never shuffled in.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch

from reelm.data.packing import Block, pack
from reelm.data.token_layout import TASKS, Task, TokenLayout, continuation_context
from reelm.core.errors import ReelmError

TASK_INDEX = {task: i for i, task in enumerate(TASKS)}


@dataclass(kw_only=True)
class MixtureConfig:
    """Task weights (renormalised over the tasks an example supports) and CFG text dropout.

    One weight per task of the token layout, named by the task (``t2v`` ... ``uncond``).
    """

    t2v: float = 0.5
    i2v: float = 0.15
    v2v: float = 0.15
    v2t: float = 0.1
    uncond: float = 0.1
    text_dropout: float = 0.1
    loss_on: str = "target"  # "target": loss only on the generated block; "all": every token; "all_but_prompt_text":
    # every token but a text prompt's (captions are learned from video-to-text only; reelm.data.token_layout)
    caption_weight: float = 1.0  # the loss weight of the caption's tokens in video-to-text sequences (1: like any token)
    context_noise: float = 0.0  # the share of a continuation's (and training story's) context codes replaced by
    # random codes, with no loss on them: trains windows to carry on from imperfect, generated contexts

    def weights(self) -> np.ndarray:
        w = np.array([getattr(self, task.value) for task in TASKS], dtype=np.float64)
        if (w < 0).any() or w.sum() <= 0:
            raise ReelmError(f"task mixture weights must be >= 0 and not all 0, got {w.tolist()}")
        if self.caption_weight < 0:
            raise ReelmError(f"mixture.caption_weight must be >= 0, got {self.caption_weight}")
        if not 0 <= self.context_noise < 1:
            raise ReelmError(f"mixture.context_noise must be in [0, 1), got {self.context_noise}")
        return w


@dataclass(kw_only=True)
class LoaderConfig:
    block_size: int = 1024
    batch_size: int = 8  # blocks per micro-batch, per rank
    seed: int = 0
    val_fraction: float = 0.05
    mixture: MixtureConfig = field(default_factory=MixtureConfig)


def split_indices(num_examples: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train, val)`` example indices: a fixed pseudo-random ``val_fraction`` is validation."""
    scores = np.random.default_rng([seed, 0x5EED]).random(num_examples)
    is_val = scores < val_fraction
    if num_examples > 1 and val_fraction > 0 and not is_val.any():
        is_val[int(np.argmin(scores))] = True
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def example_sequence(layout: TokenLayout, example: dict, mixture: MixtureConfig,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
    """``(input_ids, loss_mask, task_index)`` of one shard example under the mixture."""
    t, h, w = example["grid"]
    grid = np.asarray(example["codes"], dtype=np.int64).reshape(t, h, w)
    caption = np.asarray(example["caption_ids"], dtype=np.int64)
    story = story_context(example)
    if story is not None:  # a training story: the context is its first segment, the text the second's caption
        text = None if rng.random() < mixture.text_dropout else caption
        return (*continuation(layout, text, grid, story, mixture, rng), TASK_INDEX[Task.V2V])
    weights = mixture.weights()
    if t < 2:  # an image (or 1-frame clip) has nothing to continue from
        weights[[TASK_INDEX[Task.I2V], TASK_INDEX[Task.V2V]]] = 0
    if weights.sum() == 0:
        weights[TASK_INDEX[Task.T2V]] = 1
    task = TASKS[rng.choice(len(TASKS), p=weights / weights.sum())]
    drop = rng.random() < mixture.text_dropout
    text = None if drop else caption
    if task is Task.T2V:
        seq = layout.sequence(task, text=text, video=grid, loss_on=mixture.loss_on)
    elif task is Task.I2V:
        seq = layout.sequence(task, text=text, image=grid[:1], video=grid[1:], loss_on=mixture.loss_on)
    elif task is Task.V2V:
        return (*continuation(layout, text, grid, continuation_context(t), mixture, rng), TASK_INDEX[task])
    elif task is Task.V2T:
        seq = layout.sequence(task, text=caption, video=grid, loss_on=mixture.loss_on)
    else:
        seq = layout.sequence(task, video=grid, loss_on=mixture.loss_on)
    return seq.input_ids, seq.loss_mask, TASK_INDEX[task]


def continuation(layout: TokenLayout, text, grid: np.ndarray, k: int, mixture: MixtureConfig,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(input_ids, loss_mask)`` of continuing ``grid[k:]`` from its first ``k`` latent frames. With
    ``mixture.context_noise``, that share of the context's codes is replaced by codes drawn uniformly and left out
    of the loss (the model reads them, never learns to write them)."""
    seq = layout.sequence(Task.V2V, text=text, context=grid[:k], video=grid[k:], loss_on=mixture.loss_on)
    if not mixture.context_noise:
        return seq.input_ids, seq.loss_mask
    context = grid[:k].copy()
    hit = rng.random(context.shape) < mixture.context_noise
    context[hit] = rng.integers(0, layout.codebook_size, int(hit.sum()))
    noisy = layout.sequence(Task.V2V, text=text, context=context, video=grid[k:], loss_on=mixture.loss_on)
    return noisy.input_ids, noisy.loss_mask & (noisy.input_ids == seq.input_ids)


def story_context(example: dict) -> int | None:
    """The latent frames of a training story's first segment (its continuation context), or None for any other
    example."""
    attributes = example.get("attributes") or ""
    if '"story"' not in attributes:  # the cheap test first: most examples are not stories
        return None
    story = json.loads(attributes).get("story")
    if not story:
        return None
    k, t = int(story["context_latent_frames"]), int(example["grid"][0])
    if not 1 <= k < t:
        raise ReelmError(f"a story example of {t} latent frames cannot have {k} of context")
    return k


class PackedLoader:
    """Endless micro-batches of packed blocks for one rank, with ``state_dict`` for exact resume."""

    def __init__(self, dataset, layout: TokenLayout, cfg: LoaderConfig, *, indices: np.ndarray | None = None,
                 rank: int = 0, world_size: int = 1, shuffle: bool = True):
        self.dataset = dataset
        self.layout = layout
        self.cfg = cfg
        self.indices = np.arange(len(dataset)) if indices is None else np.asarray(indices)
        self.rank, self.world_size, self.shuffle = rank, world_size, shuffle
        if len(self.indices) < world_size:
            raise ReelmError(f"{len(self.indices)} examples cannot feed {world_size} ranks")
        self.epoch = 0
        self.cursor = 0
        self.skipped: Counter[str] = Counter()
        self._order_epoch: int | None = None
        self._order: np.ndarray = self.indices

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor, "rank": self.rank, "world_size": self.world_size}

    def load_state_dict(self, state: dict) -> None:
        if (state["rank"], state["world_size"]) != (self.rank, self.world_size):
            raise ReelmError(
                f"loader state is for rank {state['rank']} of {state['world_size']}, "
                f"this is rank {self.rank} of {self.world_size}"
            )
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])

    def _rank_order(self) -> np.ndarray:
        if self._order_epoch != self.epoch:
            order = self.indices
            if self.shuffle:
                order = order[np.random.default_rng([self.cfg.seed, self.epoch]).permutation(len(order))]
            self._order = order[self.rank :: self.world_size]
            self._order_epoch = self.epoch
        return self._order

    def _document(self, example_index: int):
        rng = np.random.default_rng([self.cfg.seed, self.epoch, int(example_index), 1])
        return example_sequence(self.layout, self.dataset[int(example_index)], self.cfg.mixture, rng)

    def next_block(self) -> Block:
        documents, used = [], 0
        scanned = 0
        while True:
            order = self._rank_order()
            if self.cursor >= len(order):
                self.epoch, self.cursor = self.epoch + 1, 0
                continue
            doc = self._document(order[self.cursor])
            if len(doc[0]) > self.cfg.block_size:
                self.skipped["longer than block_size"] += 1
                self.cursor += 1
                scanned += 1
                if scanned > len(order) and not documents:
                    raise ReelmError(f"no sequence fits block_size {self.cfg.block_size}; raise it")
                continue
            if used + len(doc[0]) > self.cfg.block_size:
                break  # the cursor stays on this example: it opens the next block
            documents.append(doc)
            used += len(doc[0])
            self.cursor += 1
        return pack(documents, self.cfg.block_size, self.layout.pad_id)

    def next_batch(self) -> dict[str, torch.Tensor]:
        blocks = [self.next_block() for _ in range(self.cfg.batch_size)]
        return collate(blocks)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        while True:
            yield self.next_batch()


def collate(blocks: list[Block]) -> dict[str, torch.Tensor]:
    """Blocks as a batch of ``(B, L)`` tensors."""
    return {
        name: torch.from_numpy(np.stack([getattr(b, name) for b in blocks]))
        for name in ("input_ids", "labels", "position_ids", "task_index")
    }
