"""Endless, resumable batches of pixel clips for tokenizer training.

Rows of a source are visited in a per-epoch permutation drawn from ``(seed, epoch)`` (the
synthetic world needs none: every index is a fresh random clip), split across ranks, and
cut into clips by :func:`reelm.data.clip_sampling.load_clips` with a generator seeded by
``(seed, epoch, row)``. Captions are not needed: a folder of raw videos trains a tokenizer as it
is. Clips are batched by frame count, so images (1-frame clips) and videos train jointly in
separate batches. Unusable rows are recorded in a :class:`SkipLog`, once each.

The state is ``(epoch, cursor)`` plus the rows whose clips wait in a partly filled batch;
they are re-read on resume, which gives the same clips, so a resumed run sees exactly the
batches an uninterrupted one would.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from reelm.data.clip_sampling import Clip, ClipSpec, SkipLog, SkipRow, load_clips
from reelm.data.sources import Source, SyntheticSource
from reelm.data.video_read import frames_to_tensor
from reelm.core.errors import ReelmError


class ClipStream:
    def __init__(self, source: Source, spec: ClipSpec, batch_size: int, *, seed: int = 0,
                 rank: int = 0, world_size: int = 1, skip_log: SkipLog | None = None):
        if len(source) < world_size:
            raise ReelmError(f"{source.name}: {len(source)} rows cannot feed {world_size} ranks")
        self.source, self.spec, self.batch_size = source, spec, batch_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.skip_log = skip_log or SkipLog(None)
        self.shuffle = not isinstance(source, SyntheticSource)
        self.epoch, self.cursor = 0, 0
        self._waiting: dict[int, list[tuple[int, int, int, Clip]]] = defaultdict(list)  # T -> (epoch, row, k, clip)
        self._order_epoch: int | None = None
        self._order: np.ndarray | range = range(0)
        self._failures_in_a_row = 0
        self._recorded: set[int] = set()

    def state_dict(self) -> dict:
        pending = [[e, r, k] for items in self._waiting.values() for e, r, k, _ in items]
        return {"epoch": self.epoch, "cursor": self.cursor, "pending": pending,
                "rank": self.rank, "world_size": self.world_size}

    def load_state_dict(self, state: dict) -> None:
        if (state["rank"], state["world_size"]) != (self.rank, self.world_size):
            raise ReelmError(f"clip stream state is for rank {state['rank']} of {state['world_size']}, "
                             f"this is rank {self.rank} of {self.world_size}")
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
        self._waiting.clear()
        for epoch, row, k in state["pending"]:
            clip = self._clips(epoch, row)[k]
            self._waiting[len(clip.frames)].append((epoch, row, k, clip))

    def _rank_order(self) -> np.ndarray | range:
        if self._order_epoch != self.epoch:
            n = len(self.source)
            if self.shuffle:
                self._order = np.random.default_rng([self.seed, self.epoch]).permutation(n)[self.rank :: self.world_size]
            else:  # a lazy range: the synthetic world is effectively endless
                self._order = range(self.rank, n, self.world_size)
            self._order_epoch = self.epoch
        return self._order

    def _clips(self, epoch: int, row_index: int) -> list[Clip]:
        row = self.source.row(int(row_index))
        rng = np.random.default_rng([self.seed, epoch, int(row_index)])
        return load_clips(self.source, row, self.spec, rng, need_caption=False)  # pixels are all a tokenizer needs

    def next_batch(self) -> torch.Tensor:
        """``(B, 3, T, H, W)`` in [-1, 1]."""
        while True:
            for frames, items in self._waiting.items():
                if len(items) >= self.batch_size:
                    batch, self._waiting[frames] = items[: self.batch_size], items[self.batch_size :]
                    return torch.stack([frames_to_tensor(clip.frames) for *_, clip in batch])
            order = self._rank_order()
            if self.cursor >= len(order):
                self.epoch, self.cursor = self.epoch + 1, 0
                continue
            row_index = int(order[self.cursor])
            self.cursor += 1
            try:
                clips = self._clips(self.epoch, row_index)
                self._failures_in_a_row = 0
            except SkipRow as skip:
                if row_index not in self._recorded:  # once per row, not once per epoch
                    self._recorded.add(row_index)
                    self.skip_log.record(self.source.row(row_index), skip)
                self._failures_in_a_row += 1
                if self._failures_in_a_row > max(len(order), 1):
                    raise ReelmError(f"{self.source.name}: no usable clips ({self.skip_log.summary(0)})") from None
                continue
            for k, clip in enumerate(clips):
                self._waiting[len(clip.frames)].append((self.epoch, row_index, k, clip))
