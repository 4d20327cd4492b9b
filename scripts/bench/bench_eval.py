"""Benchmark reelm's evaluation code; prints one JSON object with a key per section.

Sections (``--sections``, default all):

- ``i3d``: clips/s of I3D feature extraction (``reelm.eval.distribution.i3d``) with random weights on this
  machine's CPU, for both weight formats — a pytorch-i3d state dict (our ``InceptionI3d``) and
  a TorchScript detector with i3d_torchscript.pt's call signature (our network scripted by
  ``export_torchscript_detector``) — on uint8 clips of ``--frames`` x ``--size`` x ``--size``
  (default 16 x 224 x 224, the FVD protocol's input), in batches of ``--batch``. After
  ``--warmup`` batches each, the formats take turns batch by batch (so load from other
  processes falls on both alike); reported: median seconds per batch and clips/s.

- ``adherence``: clips/s of the adherence scorer (``reelm.eval.adherence.read_clip``) on rendered
  synthetic clips (``--adherence-clips`` one-object 64 x 64 x 17-frame clips at 8 fps).
- ``reconstruct``: clips/s of ``reelm eval reconstruct`` (``reelm.eval.reconstruct``) with a random
  ``tiny`` tokenizer on the real clip ``--video`` (17-frame 64 x 64 clips at 8 fps, ``--clips-per-video``
  windows), end to end: reading, encoding and decoding, scoring, writing the JSON and report.

A new section is a function ``(args) -> dict`` added to ``SECTIONS`` (and its flags to
``parser()``).

Usage::

    python scripts/bench/bench_eval.py [--sections i3d] [--size 224] [--batch 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path


def bench_i3d(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    from reelm.eval.distribution.i3d import InceptionI3d, export_torchscript_detector, load_i3d

    torch.manual_seed(0)
    model = InceptionI3d().eval()
    clips = torch.from_numpy(np.random.default_rng(0).integers(
        0, 256, (args.batch, args.frames, args.size, args.size, 3), dtype=np.uint8))
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(model.state_dict(), Path(tmp) / "rgb_imagenet.pt")
        export_torchscript_detector(model, Path(tmp) / "i3d_torchscript.pt", size=args.size)
        detectors = {"state_dict": load_i3d(Path(tmp) / "rgb_imagenet.pt", size=args.size),
                     "torchscript": load_i3d(Path(tmp) / "i3d_torchscript.pt")}
        for detector in detectors.values():
            for _ in range(args.warmup):
                detector.features(clips)
        times: dict[str, list[float]] = {name: [] for name in detectors}
        for _ in range(args.repeats):
            for name, detector in detectors.items():
                began = time.perf_counter()
                detector.features(clips)
                times[name].append(time.perf_counter() - began)
    out = {"input": f"{args.batch} clips x {args.frames} x {args.size} x {args.size} uint8 per batch",
           "weights": "random (speed does not depend on them)", "repeats": args.repeats}
    for name, values in times.items():
        median = statistics.median(values)
        out[name] = {"median_seconds_per_batch": round(median, 4), "clips_per_s": round(args.batch / median, 3)}
    return out


def bench_adherence(args: argparse.Namespace) -> dict:
    from reelm.data.synthetic.world import SyntheticWorld, WorldConfig
    from reelm.eval.adherence import read_clip

    world = SyntheticWorld(WorldConfig(height=64, width=64, num_frames=17, max_objects=1,
                                       textured_backgrounds=False, split="val"))
    clips = [world.clip(i).frames for i in range(args.adherence_clips)]
    read_clip(clips[0], 8.0)
    times = []
    for _ in range(args.repeats):
        began = time.perf_counter()
        for frames in clips:
            read_clip(frames, 8.0)
        times.append(time.perf_counter() - began)
    median = statistics.median(times)
    return {"input": f"{len(clips)} one-object clips of 17 x 64 x 64 at 8 fps", "repeats": args.repeats,
            "median_seconds": round(median, 4), "clips_per_s": round(len(clips) / median, 2)}


def bench_reconstruct(args: argparse.Namespace) -> dict:
    import torch

    from reelm.data.clip_sampling import ClipSpec
    from reelm.eval.reconstruct import ReconstructConfig, evaluate_reconstruction
    from reelm.tokenizer.tokenizer_checkpoint import save_tokenizer
    from reelm.tokenizer.model import PRESETS, VideoTokenizer

    if not args.video or not Path(args.video).is_file():
        return {"skipped": f"no real clip (--video {args.video})"}
    times, summary = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        save_tokenizer(VideoTokenizer(PRESETS["tiny"]()).eval(), Path(tmp) / "tok")
        cfg = ReconstructConfig(clip=ClipSpec(num_frames=17, fps=8.0, size=64, clips_per_video=args.clips_per_video))
        for repeat in range(args.repeats):
            began = time.perf_counter()
            summary = evaluate_reconstruction(Path(tmp) / "tok", args.video, Path(tmp) / f"eval{repeat}", cfg,
                                              device="cpu", progress=False)
            times.append(time.perf_counter() - began)
    median = statistics.median(times)
    return {"video": str(args.video), "clips": summary["clips"], "repeats": args.repeats,
            "median_seconds": round(median, 3), "clips_per_s": round(summary["clips"] / median, 2),
            "tokenizer": "random tiny (speed does not depend on the weights)"}


SECTIONS = {"i3d": bench_i3d, "adherence": bench_adherence, "reconstruct": bench_reconstruct}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sections", nargs="+", choices=sorted(SECTIONS), default=sorted(SECTIONS))
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--size", type=int, default=224, help="I3D input height and width")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--batch", type=int, default=2, help="clips per batch")
    p.add_argument("--warmup", type=int, default=2, help="untimed batches per format")
    p.add_argument("--repeats", type=int, default=5, help="timed batches per format (runs, for other sections)")
    p.add_argument("--adherence-clips", type=int, default=32, help="clips the adherence section scores")
    p.add_argument("--video", default=os.environ.get("REELM_TEST_MEDIA", "") and
                   str(Path(os.environ["REELM_TEST_MEDIA"]) / "bottle-detection.mp4"),
                   help="real clip for the reconstruct section (default: $REELM_TEST_MEDIA/bottle-detection.mp4)")
    p.add_argument("--clips-per-video", type=int, default=4, help="windows cut from --video (default: 4)")
    return p


def main(argv: list[str] | None = None) -> dict:
    import torch

    args = parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    report = {"machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                          "platform": platform.platform(), "torch": torch.__version__,
                          "load_average_at_start": os.getloadavg()}}
    for name in args.sections:
        report[name] = SECTIONS[name](args)
    report["machine"]["load_average_at_end"] = os.getloadavg()
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
