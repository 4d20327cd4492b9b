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

With ``workers > 0``, rows are decoded (and cut, resized, cropped) ahead of the training step by
that many ``torch.utils.data.DataLoader`` worker processes, in the stream's own order, a few rows
each ahead: the same clips in the same batches as ``workers=0``, which decodes in the training
process between steps. The state is unchanged (the position of the rows consumed, not of the
rows read ahead), so a run may resume with another worker count.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable, Iterator

import numpy as np
import torch

from reelm.data.clip_sampling import Clip, ClipSpec, SkipLog, SkipRow, load_clips
from reelm.data.sources import Source, SyntheticSource
from reelm.data.video_read import frames_to_tensor
from reelm.core.errors import ReelmError


PREFETCH_ROWS = 4  # rows each DataLoader worker keeps read ahead


class _Keys(torch.utils.data.Sampler):
    """The DataLoader's sampler: the stream's row keys from its position on (endless)."""

    def __init__(self, keys: Callable[[], Iterator[tuple[int, int]]]):
        self.keys = keys

    def __iter__(self):
        return self.keys()


class RowClips(torch.utils.data.Dataset):
    """``dataset[(epoch, row)] -> ((epoch, row), clips | SkipRow)``: one row's clips, decoded and cut with the
    generator of ``(seed, epoch, row)``, in whichever process asks (a DataLoader worker or this one)."""

    def __init__(self, source: Source, spec: ClipSpec, seed: int):
        self.source, self.spec, self.seed = source, spec, seed

    def __getitem__(self, key: tuple[int, int]) -> tuple[tuple[int, int], list[Clip] | SkipRow]:
        epoch, row_index = key
        row = self.source.row(int(row_index))
        rng = np.random.default_rng([self.seed, epoch, int(row_index)])
        try:
            return key, load_clips(self.source, row, self.spec, rng, need_caption=False)  # pixels are all it needs
        except SkipRow as skip:
            return key, skip


def _as_is(item):
    return item


class ClipStream:
    def __init__(self, source: Source, spec: ClipSpec, batch_size: int, *, seed: int = 0,
                 rank: int = 0, world_size: int = 1, skip_log: SkipLog | None = None, workers: int = 0):
        if len(source) < world_size:
            raise ReelmError(f"{source.name}: {len(source)} rows cannot feed {world_size} ranks")
        if workers < 0:
            raise ReelmError(f"data workers {workers}: must be 0 (decode in the training process) or more")
        self.source, self.spec, self.batch_size = source, spec, batch_size
        self.seed, self.rank, self.world_size, self.workers = seed, rank, world_size, workers
        self.rows = RowClips(source, spec, seed)
        self._ahead = None  # rows read ahead, in order, by DataLoader workers (workers > 0)
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
        self._ahead = None  # what was read ahead is for another position: start again from this one
        self._waiting.clear()
        for epoch, row, k in state["pending"]:
            clip = self._clips(epoch, row)[k]
            self._waiting[len(clip.frames)].append((epoch, row, k, clip))

    def _rank_order(self) -> np.ndarray | range:
        if self._order_epoch != self.epoch:
            self._order, self._order_epoch = self._order_for(self.epoch), self.epoch
        return self._order

    def _order_for(self, epoch: int) -> np.ndarray | range:
        n = len(self.source)
        if self.shuffle:
            return np.random.default_rng([self.seed, epoch]).permutation(n)[self.rank :: self.world_size]
        return range(self.rank, n, self.world_size)  # a lazy range: the synthetic world is effectively endless

    def _clips(self, epoch: int, row_index: int) -> list[Clip]:
        _, clips = self.rows[(epoch, row_index)]
        if isinstance(clips, SkipRow):
            raise clips
        return clips

    def _keys(self, epoch: int, cursor: int) -> Iterator[tuple[int, int]]:
        """``(epoch, row)`` of every row this rank reads from position ``cursor`` of ``epoch`` on, epoch after epoch."""
        while True:
            order = self._order_for(epoch)
            for position in range(cursor, len(order)):
                yield epoch, int(order[position])
            epoch, cursor = epoch + 1, 0

    def _read(self, epoch: int, position: int, row_index: int) -> list[Clip]:
        """The clips of the row at ``position`` of ``epoch``: read here, or taken from the workers' read-ahead."""
        if self.workers == 0:
            return self._clips(epoch, row_index)
        if self._ahead is None:
            keys = _Keys(lambda: self._keys(epoch, position))
            # Workers start from a fresh process (forkserver), not a fork of this one: a fork copies whatever
            # lock a thread here held at that moment (PyAV's, FFmpeg's), and a worker converting a frame
            # then waits on it forever (seen: tests hung in VideoFrame.to_ndarray in forked workers).
            loader = torch.utils.data.DataLoader(self.rows, sampler=keys, batch_size=None,
                                                 num_workers=self.workers, collate_fn=_as_is,
                                                 prefetch_factor=PREFETCH_ROWS, multiprocessing_context="forkserver")
            self._ahead = iter(loader)
        key, clips = next(self._ahead)
        if tuple(key) != (epoch, row_index):  # the read-ahead follows the same order: a mismatch is a bug
            raise ReelmError(f"clip stream: read ahead row {key}, expected {(epoch, row_index)}")
        if isinstance(clips, SkipRow):
            raise clips
        return clips

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
                clips = self._read(self.epoch, self.cursor - 1, row_index)
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
