"""``reelm data audit`` against known defects: precision and recall per dimension, and throughput. Prints JSON.

Renders ``--clips`` world clips (64 x 64, ``--frames`` frames at 8 fps) of which ``--share`` carry one
defect each, every kind of :data:`reelm.data.synthetic.defects.DEFECTS` equally often, at strengths
drawn uniformly from 0.2 to 1 (graded: the report splits recall into weak, medium and strong thirds),
audits them with the defaults, and scores the audit against the ground truth
(:func:`reelm.eval.audit.scoring.precision_recall`). With ``--media FILE`` it also audits that video
``--repeats`` times alone and reports seconds per minute of it (the real-video throughput).

    python scripts/bench/bench_audit.py --clips 240 --media ../shared/media/bottle-detection.mp4
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=240)
    p.add_argument("--share", type=float, default=0.6)
    p.add_argument("--frames", type=int, default=17)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--media", help="a real video to time the audit on")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--keep", help="keep the set and the audit in this folder")
    args = p.parse_args(argv)

    from reelm.data.clip_sampling import ClipSpec
    from reelm.data.synthetic.defects import DefectSetConfig, render_defect_set
    from reelm.data.synthetic.world import WorldConfig
    from reelm.eval.audit.audit_config import AuditConfig
    from reelm.eval.audit.audit_run import audit_dataset
    from reelm.eval.audit.scoring import precision_recall, read_jsonl

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_audit_"))
    try:
        world = WorldConfig(num_frames=args.frames, seed=args.seed)
        rendered = render_defect_set(work / "set", DefectSetConfig(num_clips=args.clips, share=args.share,
                                                                   seed=args.seed), world)
        cfg = AuditConfig(clip=ClipSpec(num_frames=min(17, args.frames), fps=8.0, size=64))
        began = time.perf_counter()
        summary = audit_dataset(work / "set" / "manifest.jsonl", work / "audit", cfg, progress=False)
        seconds = time.perf_counter() - began
        scores = precision_recall(read_jsonl(work / "audit" / "audit.jsonl"), read_jsonl(work / "set" / "manifest.jsonl"))
        result = {"clips": args.clips, "share": args.share, "frames": args.frames, "world": "default (2 objects, "
                  "textured backgrounds, every shape, colour and motion)", "counts": rendered["counts"],
                  "scores": scores, "audit_seconds": round(seconds, 2),
                  "clips_per_second": round(args.clips / seconds, 2), "kept": summary["kept"],
                  "drop_reasons": summary["drop_reasons"]}
        if args.media:
            from reelm.data.video_read import probe

            duration = probe(args.media).duration
            times = []
            for r in range(args.repeats):
                began = time.perf_counter()
                audit_dataset(args.media, work / f"media{r}", AuditConfig(), progress=False)
                times.append(time.perf_counter() - began)
            median = statistics.median(times)
            result["media"] = {"file": str(args.media), "seconds_of_video": round(duration, 2),
                               "audit_seconds": [round(t, 2) for t in times], "median": round(median, 2),
                               "seconds_per_minute_of_video": round(60 * median / duration, 2)}
        print(json.dumps(result, indent=1))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
