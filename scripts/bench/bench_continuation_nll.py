"""How well the LM knows a clip's last latent frame when the frames before are a context (v2v) or its own (t2v). Prints JSON.

A story's continuation windows are continuations (the ``v2v`` task); inside a single-prompt clip the same
frame follows frames the model wrote itself in a text-to-video sequence. Both ask for the same conditional
(the last latent frame given the caption and the frames before), so a model that had learned both equally
would give the same likelihood. This scores held-out clips of a shard folder (its validation split, the
training stories left out) teacher-forced both ways, with the caption and without, and reports the mean NLL
a code of the last latent frame and the paired difference.

    python scripts/bench/bench_continuation_nll.py --model runs/demo/lm --data runs/demo/shards
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True, help="a shard folder (reelm data tokenize)")
    p.add_argument("--max-clips", type=int, default=400, help="validation examples looked at (default: 400)")
    p.add_argument("--val-fraction", type=float, default=0.05, help="as the LM was trained with (default: 0.05)")
    p.add_argument("--seed", type=int, default=0, help="the LM's training seed, which drew its validation split")
    args = p.parse_args(argv)

    import torch

    from reelm.data.lm_data import split_indices, story_context
    from reelm.data.shards import load_shards
    from reelm.data.token_layout import Task, continuation_context
    from reelm.generation import VideoPipeline

    pipe = VideoPipeline.from_pretrained(args.model, device="cpu")
    layout, per_frame = pipe.layout, pipe.layout.codes_per_frame
    dataset = load_shards(args.data).dataset
    _, val = split_indices(len(dataset), args.val_fraction, args.seed)

    def last_frame_nll(sequence) -> float:
        ids = torch.from_numpy(sequence.input_ids)[None]
        with torch.inference_mode():
            logp = torch.log_softmax(pipe.model.lm(input_ids=ids).logits.float()[0, :-1], -1)
        end = int(np.flatnonzero(sequence.input_ids == layout.special_ids["eov"])[-1])  # the last frame ends here
        span = slice(end - per_frame - 1, end - 1)  # the logits at i predict the id at i + 1
        return float(-logp[span].gather(1, ids[0, 1:][span, None]).sum()) / per_frame

    nll = {"t2v": [], "v2v": [], "t2v_no_text": [], "v2v_no_text": []}
    for index in val[:args.max_clips]:
        example = dataset[int(index)]
        t, h, w = example["grid"]
        if t < 2 or story_context(example) is not None:
            continue
        grid = np.asarray(example["codes"], dtype=np.int64).reshape(t, h, w)
        k = continuation_context(t)
        for suffix, text in (("", np.asarray(example["caption_ids"], dtype=np.int64)), ("_no_text", None)):
            nll["t2v" + suffix].append(last_frame_nll(layout.sequence(Task.T2V, text=text, video=grid)))
            nll["v2v" + suffix].append(last_frame_nll(layout.sequence(Task.V2V, text=text, context=grid[:k],
                                                                      video=grid[k:])))
    if not nll["t2v"]:
        p.error(f"{args.data}: no validation clips of 2 or more latent frames in the first {args.max_clips}")
    gap = np.array(nll["v2v"]) - np.array(nll["t2v"])
    print(json.dumps({
        "model": args.model, "clips": len(gap),
        "nll_per_code": {name: round(float(np.mean(v)), 4) for name, v in nll.items()},
        "v2v_minus_t2v": {"mean": round(float(gap.mean()), 4),
                          "standard_error": round(float(gap.std(ddof=1) / np.sqrt(len(gap))), 4) if len(gap) > 1 else None,
                          "share_of_clips_v2v_worse": round(float((gap > 0).mean()), 3)},
    }, indent=1))


if __name__ == "__main__":
    main()
