"""Benchmark tokenizer training fed by real video decoding against the same clips pre-decoded in memory.

One run, one process, three sides training the same model (``TokenizerTrainer.train_step``, the step
``reelm tokenizer train`` runs, at its default precision) from a folder of real videos:

- ``decoded``: the batches the clip stream gives, decoded before timing starts and served from memory
  (the ceiling: no decoding cost at all);
- ``workers``: the clip stream with ``--workers`` DataLoader worker processes decoding ahead of the step
  (``reelm tokenizer train --data-workers N``);
- ``in_process``: the clip stream decoding in the training process between steps (``--data-workers 0``).

The sides take turns in blocks of ``--block-steps`` steps (so load from other processes falls on all
alike); the first ``--skip`` steps of each block are left out (a worker side starts a block with its
read-ahead full). Reported: median seconds per step and steps/s of each side, the ratios against
``decoded`` (the target: ``workers`` >= 0.9), the seconds one row takes to decode, and the machine.

Prints one JSON object. Usage::

    python scripts/bench/bench_tokenizer_data.py --data ../shared/media --workers 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


class InMemory:
    """Pre-decoded batches with a clip stream's ``next_batch``, cycling."""

    def __init__(self, batches: list[torch.Tensor]):
        self.batches, self.position = batches, 0

    def next_batch(self) -> torch.Tensor:
        batch = self.batches[self.position % len(self.batches)]
        self.position += 1
        return batch


def trainer(args, folder: Path, workers: int, out: Path):
    from reelm.data.clip_sampling import ClipSpec
    from reelm.tokenizer.model import PRESETS
    from reelm.tokenizer.train import TokenizerTrainer, training_preset
    import dataclasses

    cfg = dataclasses.replace(training_preset(args.preset), data=str(folder), batch_size=args.batch_size,
                              data_workers=workers, seed=args.seed,
                              clip=ClipSpec(num_frames=args.num_frames, size=args.size, fps=args.fps,
                                            temporal_crop="random"))
    return TokenizerTrainer(PRESETS[args.preset](), cfg, out, progress=False, device="cpu")


def time_steps(side, steps: int) -> list[float]:
    times = []
    for _ in range(steps):
        began = time.perf_counter()
        side.train_step()
        times.append(time.perf_counter() - began)
    return times


def decode_seconds(stream, rows: int) -> float:
    """Median seconds to read one row's clips (decode, resample, resize, crop) in this process."""
    times = []
    for index in range(rows):
        began = time.perf_counter()
        stream.rows[(0, index % len(stream.source))]
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.environ.get("REELM_TEST_MEDIA"), help="a folder of real videos "
                        "(default: $REELM_TEST_MEDIA)")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--num-frames", type=int, default=17)
    parser.add_argument("--fps", type=float, default=8.0)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--block-steps", type=int, default=12)
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--skip", type=int, default=2, help="steps left out at the start of each block")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.data or not Path(args.data).is_dir():
        print(f"bench_tokenizer_data: --data {args.data!r}: give a folder of videos (or set REELM_TEST_MEDIA)",
              file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    folder = Path(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sides = {"decoded": trainer(args, folder, 0, tmp / "decoded"),
                 "workers": trainer(args, folder, args.workers, tmp / "workers"),
                 "in_process": trainer(args, folder, 0, tmp / "in_process")}
        steps = args.blocks * args.block_steps
        began = time.perf_counter()
        sides["decoded"].stream = InMemory([sides["decoded"].stream.next_batch() for _ in range(steps)])
        predecode_s = time.perf_counter() - began
        row_s = decode_seconds(sides["in_process"].stream, 8)
        for side in sides.values():  # first steps: allocator and kernel warm-up, left out
            time_steps(side, 2)
        times = {name: [] for name in sides}
        for _ in range(args.blocks):
            for name, side in sides.items():
                times[name] += time_steps(side, args.block_steps)[args.skip:]
        for side in sides.values():
            if getattr(side.stream, "_ahead", None) is not None:
                side.stream._ahead = None  # stop the workers
    median = {name: statistics.median(t) for name, t in times.items()}
    result = {
        "data": str(folder), "videos": len(sides["in_process"].stream.source),
        "preset": args.preset, "clip": {"size": args.size, "num_frames": args.num_frames, "fps": args.fps},
        "batch_size": args.batch_size, "workers": args.workers, "threads": args.threads,
        "steps_timed_per_side": len(times["decoded"]),
        "seconds_per_step": {name: round(value, 4) for name, value in median.items()},
        "steps_per_s": {name: round(1 / value, 3) for name, value in median.items()},
        "ratio_vs_decoded": {name: round(median["decoded"] / value, 3) for name, value in median.items()
                             if name != "decoded"},
        "target_workers_ratio": 0.9,
        "decode_s_per_row": round(row_s, 4), "predecode_s": round(predecode_s, 2),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
