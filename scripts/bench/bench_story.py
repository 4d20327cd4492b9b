"""Story generation time against the number of segments: is it linear? Prints JSON.

Makes one story of ``N`` segments for each ``N`` of ``--segments`` (the first segment the model's clip
length, each later one ``--segment-frames`` frames, prompts cycling through four motions) with
:meth:`reelm.generation.VideoPipeline.story`, ``--repeats`` times in interleaved order after an
untimed warm-up, and reports the median seconds, seconds per segment after the first, and the fit of
a line through the medians (its slope, intercept and the largest relative residual). Peak memory
is the process's at the end (``ru_maxrss``), which a flat story keeps from growing with ``N``.

    python scripts/bench/bench_story.py --model runs/demo/lm --segments 1,2,4,8
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--segments", default="1,2,4,8")
    p.add_argument("--segment-frames", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import numpy as np

    from reelm.core.device import torch_threads
    from reelm.generation import VideoPipeline
    from reelm.generation.story import StorySegment

    pipe = VideoPipeline.from_pretrained(args.model, device="cpu")
    counts = [int(n) for n in args.segments.split(",")]
    motions = ("to the right", "up", "to the left", "down")

    def story(n: int):
        return [StorySegment(f"a red circle moves {motions[i % 4]}",
                             frames=pipe.model.clip.num_frames if i == 0 else args.segment_frames) for i in range(n)]

    times: dict[int, list[float]] = {n: [] for n in counts}
    frames: dict[int, int] = {}
    with torch_threads(1):
        pipe.story(story(2), seed=args.seed)  # warm-up
        for r in range(args.repeats):
            for n in (counts if r % 2 == 0 else counts[::-1]):
                began = time.perf_counter()
                out = pipe.story(story(n), seed=args.seed + r)
                times[n].append(time.perf_counter() - began)
                frames[n] = len(out.video)
    medians = {n: statistics.median(t) for n, t in times.items()}
    slope, intercept = np.polyfit(counts, [medians[n] for n in counts], 1)
    residual = max(abs(medians[n] - (slope * n + intercept)) / medians[n] for n in counts)
    print(json.dumps({
        "model": str(args.model), "clip_frames": pipe.model.clip.num_frames, "segment_frames": args.segment_frames,
        "trained_latent_frames": pipe.model.latent_frames,
        "runs": {str(n): {"frames": frames[n], "seconds": [round(t, 3) for t in times[n]], "median": round(medians[n], 3)}
                 for n in counts},
        "line": {"seconds_per_segment": round(float(slope), 3), "intercept": round(float(intercept), 3),
                 "largest_relative_residual": round(float(residual), 4)},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}, indent=1))


if __name__ == "__main__":
    main()
