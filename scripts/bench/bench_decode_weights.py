"""Decode-weight formats on a trained model: speed and quality side by side, so a user can choose. Prints JSON.

For each format of ``--formats`` (:mod:`reelm.lm.decode_weights`: ``model``, ``fp16``, ``int8``) the
model folder's pipeline makes the same text-to-video samples under the same seeds (the synthetic
eval's prompts, seen and held-out combinations, ``--num-prompts`` each, guidance and sampling at the
pipeline's defaults, batches of ``--batch-size`` prompts, one thread) and reports:

- ``seconds`` / ``tokens_per_s``: the median over ``--repeats`` interleaved rounds of the engine's time for
  every sample (the pipeline's ``generate_s``: decoding codes to pixels left out), and ``over_model``, the same-round ratio to the ``model`` format;
- ``token_agreement``: the share of generated codes equal to the ``model`` format's, position by
  position (a first difference usually changes what follows, so this falls fast with any change);
- ``adherence``: the scorer's reading of each decoded sample against its prompt (color, shape,
  direction; the share correct with its 95 % Wilson interval), which is what a changed token costs.

    python scripts/bench/bench_decode_weights.py --model runs/demo/lm --num-prompts 48 --repeats 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="LM run folder or step folder")
    p.add_argument("--formats", default="model,fp16,int8", help="comma-separated (default: model,fp16,int8)")
    p.add_argument("--num-prompts", type=int, default=48, help="prompts per group (seen, held-out; default: 48)")
    p.add_argument("--batch-size", type=int, default=8, help="prompts per engine call (default: 8)")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds (default: 3)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    formats = [f for f in args.formats.split(",") if f]
    if "model" not in formats:
        formats.insert(0, "model")
    with contextlib.redirect_stdout(sys.stderr):  # the pipeline's imports may log to stdout; the JSON goes there
        report = measure(args, formats)
    print(json.dumps(report, indent=1))
    return 0


def measure(args: argparse.Namespace, formats: list[str]) -> dict:

    import numpy as np
    import torch

    from reelm.core.device import cpu_name, torch_threads
    from reelm.eval.adherence import aggregate, read_clip, score_against
    from reelm.eval.generation_eval import GenerationEvalConfig, HELD_OUT, _prompts, eval_world
    from reelm.eval.intervals import wilson
    from reelm.generation import VideoPipeline

    pipes = {fmt: VideoPipeline.from_pretrained(args.model, device="cpu", weights=fmt) for fmt in formats}
    first = pipes["model"]
    world = eval_world(first, GenerationEvalConfig(seed=args.seed))
    prompts = _prompts(GenerationEvalConfig(num_prompts=args.num_prompts, seed=args.seed), world)
    batches = [prompts[i:i + args.batch_size] for i in range(0, len(prompts), args.batch_size)]

    def generate(fmt: str):
        """Every batch's code grids and the seconds the engine took (tokenizer decoding left out)."""
        pipe, grids, seconds, tokens = pipes[fmt], [], 0.0, 0
        for index, batch in enumerate(batches):
            out = pipe.text_to_video([item["prompt"] for item in batch], seed=args.seed + index, output_type="np")
            seconds += out.info["timings"]["generate_s"]
            tokens += out.info["tokens"]["generated"]
            grids.append(out)
        return grids, seconds, tokens

    with torch_threads(1):
        outputs = {fmt: generate(fmt) for fmt in formats}  # warm-up, and the samples scored below
        rounds: dict[str, list[float]] = {fmt: [] for fmt in formats}
        for r in range(args.repeats):
            for fmt in (formats if r % 2 == 0 else formats[::-1]):
                rounds[fmt].append(generate(fmt)[1])
    fps = first.model.clip.fps
    report = {"model": str(args.model), "prompts": len(prompts), "batch_size": args.batch_size,
              "repeats": args.repeats, "threads": 1, "cpu": cpu_name(), "cores": os.cpu_count(),
              "torch": torch.__version__, "python": platform.python_version(), "formats": {}}
    reference = outputs["model"][0]
    for fmt in formats:
        batches_out, _, tokens = outputs[fmt]
        same = total = 0
        scores = {"all": [], HELD_OUT: []}
        for out, ref, batch in zip(batches_out, reference, batches):
            for codes, ref_codes in zip(out.codes, ref.codes):
                same += int((codes == ref_codes).sum())
                total += codes.size
            for item, video in zip(batch, out.videos):
                score = score_against(read_clip(video, fps), item["expected"])
                scores["all"].append(score)
                if item["group"] == HELD_OUT:
                    scores[HELD_OUT].append(score)
        median = statistics.median(rounds[fmt])
        entry = {"seconds": round(median, 3), "seconds_all": [round(s, 3) for s in rounds[fmt]],
                 "tokens": tokens, "tokens_per_s": round(tokens / median, 1),
                 "over_model": round(statistics.median(m / s for m, s in zip(rounds["model"], rounds[fmt])), 4),
                 "token_agreement": round(same / total, 4), "adherence": {}}
        for group, group_scores in scores.items():
            summary = aggregate(group_scores)
            entry["adherence"][group] = {
                key: {"correct": value["correct"], "total": value["total"], "accuracy": value["accuracy"],
                      "interval": [round(v, 3) for v in wilson(value["correct"], value["total"])]}
                for key, value in summary["attributes"].items() if value["total"]}
        report["formats"][fmt] = entry
    return report


if __name__ == "__main__":
    sys.exit(main())
