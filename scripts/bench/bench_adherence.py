"""Measure the prompt-adherence reader on synthetic-world clips with known ground truth; prints JSON lines.

For each setting (frame size x frames, plain or textured backgrounds, 1 or 2 objects) and each
codec, ``--clips`` clips are rendered, passed through the codec, read back with
:func:`reelm.eval.adherence.read_clip` and scored against their ground truth with
:func:`reelm.eval.adherence.score_against`. One JSON line per (setting, codec): accuracy per
attribute and overall, objects found / extra, clips per second of the reader (wall and CPU
time, reading only), and the first ``--failures`` clips with a wrong attribute.

Codecs: ``rendered`` (as drawn), ``h264`` (``write_mp4`` at crf 18, then ``read_video``),
``h264-crfN``, and degradations imitating a tokenizer's reconstruction: ``blur1`` (Gaussian,
sigma 1 px), ``noise10`` (Gaussian, sigma 10), ``dim0.6`` (x 0.6), ``tint`` (per-channel gains
0.85..1.15), ``blur1+noise6+tint``.

Usage: python scripts/bench/bench_adherence.py [--clips 300] [--seed 7] [--settings 64x9-plain-1 ...]
       [--codecs rendered h264 ...] [--failures 5]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from reelm.data.synthetic.world import SyntheticWorld, WorldConfig
from reelm.data.video_read import read_video
from reelm.data.video_write import write_mp4
from reelm.eval.adherence import aggregate, read_clip, score_against

FPS = 8.0
SETTINGS = {  # name: frame side, frames, textured backgrounds, max objects
    "64x9-plain-1": (64, 9, False, 1),
    "64x17-plain-1": (64, 17, False, 1),
    "64x9-textured-1": (64, 9, True, 1),
    "64x17-textured-1": (64, 17, True, 1),
    "32x9-plain-1": (32, 9, False, 1),
    "32x9-textured-1": (32, 9, True, 1),
    "64x9-textured-2": (64, 9, True, 2),
    "64x17-textured-2": (64, 17, True, 2),
    "64x17-plain-2": (64, 17, False, 2),
}
CODECS = ("rendered", "h264", "h264-crf35", "blur1", "noise10", "dim0.6", "tint", "blur1+noise6+tint")


def degrade(frames: np.ndarray, codec: str, rng: np.random.Generator, folder: Path) -> np.ndarray:
    """``frames`` (T, H, W, 3) uint8 after ``codec``."""
    if codec.startswith("h264"):
        crf = int(codec.removeprefix("h264-crf")) if "crf" in codec else 18
        return read_video(write_mp4(folder / "clip.mp4", frames, FPS, crf=crf))
    video = frames.astype(np.float32)
    if codec == "blur1":
        video = ndimage.gaussian_filter(video, (0, 1.0, 1.0, 0))
    elif codec == "noise10":
        video = video + rng.normal(0, 10, video.shape)
    elif codec == "dim0.6":
        video = video * 0.6
    elif codec == "tint":
        video = video * rng.uniform(0.85, 1.15, 3)
    elif codec == "blur1+noise6+tint":
        video = ndimage.gaussian_filter(video, (0, 1.0, 1.0, 0)) * rng.uniform(0.9, 1.1, 3)
        video = video + rng.normal(0, 6, video.shape)
    return np.clip(np.rint(video), 0, 255).astype(np.uint8)


def measure(setting: str, codec: str, clips: int, seed: int, failures: int, folder: Path) -> dict:
    side, num_frames, textured, max_objects = SETTINGS[setting]
    world = SyntheticWorld(WorldConfig(seed=seed, height=side, width=side, num_frames=num_frames, fps=FPS,
                                       max_objects=max_objects, textured_backgrounds=textured))
    rng = np.random.default_rng(seed)
    scores, wall, cpu, wrong = [], 0.0, 0.0, []
    for index in range(clips):
        clip = world.clip(index)
        frames = degrade(clip.frames, codec, rng, folder)
        began_wall, began_cpu = time.perf_counter(), time.process_time()
        readings = read_clip(frames, FPS, max_objects=max_objects)
        wall += time.perf_counter() - began_wall
        cpu += time.process_time() - began_cpu
        score = score_against(readings, clip.attributes)
        scores.append(score)
        if score["accuracy"] < 1 and len(wrong) < failures:
            wrong.append({"index": index, "objects": [
                {"expected": o["expected"], "wrong": [k for k, ok in o["correct"].items() if not ok],
                 "read": None if o["read"] is None else readings[o["read"]].attributes()}
                for o in score["objects"] if not all(o["correct"].values())]})
    summary = aggregate(scores)
    return {
        "setting": setting,
        "codec": codec,
        "seed": seed,
        "clips": clips,
        "accuracy": round(summary["accuracy"], 4),
        "per_attribute": {key: round(value["accuracy"], 4) for key, value in summary["attributes"].items()},
        "objects_found": f'{summary["found"]}/{summary["expected_objects"]}',
        "extra_objects": summary["extra"],
        "clips_per_s_wall": round(clips / wall, 1),
        "clips_per_s_cpu": round(clips / cpu, 1),
        "failures": wrong,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--codecs", nargs="+", default=["rendered", "h264"], choices=CODECS)
    parser.add_argument("--failures", type=int, default=5, help="failing clips to list per line")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for setting in args.settings:
            for codec in args.codecs:
                result = measure(setting, codec, args.clips, args.seed, args.failures, Path(folder))
                print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
