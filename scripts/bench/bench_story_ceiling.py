"""What the story eval scores on the world's own story clips: the ceiling of its figures. Prints JSON.

``reelm eval generate --stories synthetic`` scores a model's stories against the world's ground
truth. This scores the ground truth itself, the same stories rendered by the world, with the same
rules (:func:`reelm.eval.story_eval.score_story`), twice: the rendered frames as they are, and the
frames through the model's video tokenizer (encoded and decoded whole, as the LM's codes would be).
So a continuity or adherence figure below the target splits into what the reader and the tokenizer
lose (here) and what the model does (the gap between this and the eval).

    python scripts/bench/bench_story_ceiling.py --model runs/demo/lm --num-stories 64
"""

from __future__ import annotations

import argparse
import json


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--num-stories", type=int, default=64)
    p.add_argument("--segment-frames", type=int, default=8)
    p.add_argument("--color-changes", action="store_true")
    args = p.parse_args(argv)

    from reelm.core.device import torch_threads
    from reelm.eval.generation_eval import GenerationEvalConfig, eval_world, varied_attributes
    from reelm.eval.story_eval import (StoryEvalConfig, max_jump_for, score_story, story_summary,
                                       synthetic_stories)
    from reelm.generation import VideoPipeline

    pipe = VideoPipeline.from_pretrained(args.model, device="cpu")
    cfg = StoryEvalConfig(num_stories=args.num_stories, segment_frames=args.segment_frames,
                          color_changes=args.color_changes, baseline=False)
    world = eval_world(pipe, GenerationEvalConfig(seed=cfg.seed))
    keys = varied_attributes(world)
    fps, size = pipe.model.clip.fps, pipe.model.clip.size
    max_jump = max_jump_for(world, size, size)
    clips = synthetic_stories(cfg, world, pipe.model.clip.num_frames)
    results = {}
    with torch_threads(1):
        for name in ("rendered", "through_tokenizer"):
            records = []
            for clip in clips:
                frames = clip.frames if name == "rendered" else pipe.decode([pipe.encode(clip.frames)])[0]
                segments = [{"start": s["start"], "end": s["end"], "expected": s["attributes"], "change": s["change"]}
                            for s in clip.segments]
                scored = score_story(frames[:len(clip.frames)], fps, segments, keys=keys, max_jump=max_jump)
                records.append({"segments": [{"score": s["score"]} for s in scored["segments"]],
                                "boundaries": scored["boundaries"], "inside_psnr": scored["inside_psnr"],
                                "seconds": 0.0})
            summary = story_summary(records, cfg, keys)
            results[name] = {"continuity": summary["continuity"], "broken": summary["broken"],
                             "segments": {k: v["accuracy"] for k, v in summary["adherence"]["attributes"].items()
                                          if k in keys},
                             "boundary_psnr": summary["boundary_psnr"], "inside_psnr": summary["inside_psnr"]}
    print(json.dumps({"model": str(args.model), "stories": len(clips),
                      "boundaries": sum(len(c.segments) - 1 for c in clips), "max_jump": round(max_jump, 3),
                      **results}, indent=1))


if __name__ == "__main__":
    main()
