"""Benchmark the data path; prints JSON.

1. decode + resize: clips/s reading fixed-size clips (9 frames at 8 fps, 64x64 center crop by
   default: the shared 1.7 s clips hold no longer one) from a real H.264 video, the way
   ``reelm data tokenize`` reads them;
2. pre-tokenization: clips/s of ``tokenize_dataset`` on synthetic clips with a ``tiny`` video
   tokenizer (random weights: speed does not depend on training) on this machine's CPU.

Usage: python scripts/bench/bench_data.py --video ../shared/media/milk.mkv [--repeats 5] [--clips 64]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path


def bench_decode(video: Path, repeats: int, num_frames: int, fps: float, size: int) -> dict:
    from reelm.data.video_read import probe, read_video

    info = probe(video)
    times = []
    clips = 0
    for _ in range(repeats):
        began = time.perf_counter()
        frames = read_video(video, fps=fps, num_frames=num_frames, size=size, crop=size)
        times.append(time.perf_counter() - began)
        clips = len(frames)
        if clips < num_frames:
            raise SystemExit(f"{video}: only {clips} of {num_frames} frames at {fps} fps; ask for fewer")
    median = statistics.median(times)
    return {
        "video": video.name,
        "source": f"{info.width}x{info.height} {info.codec} {info.container}",
        "clip": f"{num_frames} frames at {fps} fps, {size}x{size}",
        "frames_read": clips,
        "median_seconds_per_clip": round(median, 4),
        "clips_per_s": round(1 / median, 2),
    }


def bench_pretokenize(num_clips: int, batch_size: int, repeats: int) -> dict:
    import torch

    from reelm.data.clip_sampling import ClipSpec
    from reelm.tokenizer.tokenizer_checkpoint import save_tokenizer
    from reelm.tokenizer.model import PRESETS, VideoTokenizer
    from reelm.tokenizer.pretokenize import TokenizeConfig, tokenize_dataset

    rates = []
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        save_tokenizer(VideoTokenizer(PRESETS["tiny"]()).eval(), Path(tmp) / "vtok")
        cfg = TokenizeConfig(clip=ClipSpec(num_frames=17, fps=8.0, size=64), num_clips=num_clips,
                             chunk_rows=num_clips, batch_size=batch_size, text_vocab_size=512)
        for r in range(repeats):
            began = time.perf_counter()
            summary = tokenize_dataset("synthetic", Path(tmp) / "vtok", Path(tmp) / f"out{r}", cfg, progress=False)
            rates.append(summary["clips"] / (time.perf_counter() - began))
    return {
        "clips": num_clips,
        "clip": "17 frames, 64x64, synthetic",
        "tokenizer": "tiny (random weights)",
        "batch_size": batch_size,
        "torch_threads": torch.get_num_threads(),
        "clips_per_s_runs": [round(r, 2) for r in rates],
        "clips_per_s": round(statistics.median(rates), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    media = os.environ.get("REELM_TEST_MEDIA")
    parser.add_argument("--video", type=Path, default=Path(media) / "milk.mkv" if media else None,
                        help="a real H.264 video (default: $REELM_TEST_MEDIA/milk.mkv)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--clips", type=int, default=64, help="synthetic clips to pre-tokenize per repeat")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-frames", type=int, default=9, help="frames per decoded clip")
    parser.add_argument("--fps", type=float, default=8.0)
    args = parser.parse_args()
    result = {"cpu_count": os.cpu_count(), "load_average_before": os.getloadavg()[0]}
    if args.video is not None:
        result["decode_resize"] = bench_decode(args.video, args.repeats, args.num_frames, args.fps, 64)
    else:
        result["decode_resize"] = "skipped: pass --video or set REELM_TEST_MEDIA"
    result["pretokenize"] = bench_pretokenize(args.clips, args.batch_size, max(1, args.repeats // 2))
    result["load_average_after"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
