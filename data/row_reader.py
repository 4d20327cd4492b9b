"""Reading source rows into clips, in this process or in worker processes, in order.

``RowReader(source, spec, seed)`` is a picklable callable: ``reader(index)`` gives ``(row,
clips)`` or ``(row, SkipRow)``, with the clip sampler's generator seeded by ``(seed,
index)`` so a row gives the same clips in any process. :func:`read_rows` maps it over
indices in order. With ``workers > 0`` it starts that many spawned processes, each handed
the reader once when it starts (no module state), and keeps at most a few rows per worker
in flight, so decoded clips never pile up in memory.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
from typing import Callable, Iterable, Iterator

import numpy as np

from reelm.data.clip_sampling import Clip, ClipSpec, SkipRow, load_clips
from reelm.data.sources import Source, SourceRow
from reelm.core.errors import ReelmError

IN_FLIGHT_PER_WORKER = 4


class RowReader:
    """``reader(index) -> (row, clips | SkipRow)`` for one source and clip spec (``need_caption``: see load_clips)."""

    def __init__(self, source: Source, spec: ClipSpec, seed: int, *, need_caption: bool = True):
        self.source, self.spec, self.seed, self.need_caption = source, spec, seed, need_caption

    def __call__(self, index: int) -> tuple[SourceRow, list[Clip] | SkipRow]:
        row = self.source.row(index)
        try:
            return row, load_clips(self.source, row, self.spec, np.random.default_rng([self.seed, index]),
                                   need_caption=self.need_caption)
        except SkipRow as skip:
            return row, skip


def _work(reader: RowReader, tasks, results) -> None:
    """A worker process: read the rows whose indices arrive on ``tasks`` until ``None``."""
    for position, index in iter(tasks.get, None):
        try:
            results.put((position, reader(index), None))
        except BaseException as exc:  # an unexpected error: hand it to the parent, which raises it
            results.put((position, None, f"{type(exc).__name__}: {exc}"))


def _next_result(results, processes, poll_seconds: float = 5.0):
    """The next result from the workers; an error, not a hang, if one died (killed, out of memory) meanwhile."""
    while True:
        try:
            return results.get(timeout=poll_seconds)
        except queue.Empty:
            dead = [p.exitcode for p in processes if not p.is_alive()]
            if dead:
                raise ReelmError(f"a row reader worker exited (exit code {dead[0]}) with rows unread") from None


@contextlib.contextmanager
def read_rows(reader: RowReader, workers: int) -> Iterator[Callable[[Iterable[int]], Iterator]]:
    """A function mapping row indices to ``reader`` results in order; ``workers`` processes (0: this one)."""
    if workers <= 0:
        yield lambda indices: map(reader, indices)
        return
    ctx = multiprocessing.get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    processes = [ctx.Process(target=_work, args=(reader, tasks, results), daemon=True) for _ in range(workers)]
    for process in processes:
        process.start()

    def ordered(indices: Iterable[int]) -> Iterator:
        pending = iter(enumerate(indices))
        waiting: dict[int, tuple] = {}
        sent = received = 0
        for position, index in pending:
            tasks.put((position, index))
            sent += 1
            if sent - received >= IN_FLIGHT_PER_WORKER * workers:
                break
        while received < sent:
            position, result, error = _next_result(results, processes)
            if error is not None:
                raise ReelmError(f"a row reader worker failed: {error}")
            waiting[position] = result
            while received in waiting:
                yield waiting.pop(received)
                received += 1
                following = next(pending, None)
                if following is not None:
                    tasks.put(following)
                    sent += 1

    try:
        yield ordered
    finally:
        for _ in processes:
            tasks.put(None)
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
