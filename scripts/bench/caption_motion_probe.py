"""Does the captioner read *whether* an object moves? Teacher-forced, no sampling.

For one-object ``val`` clips of the model's training world, the log-probability the LM gives, after
the video and the true caption's start ("a red square"), to the world's static verbs
(``STATIC_VERBS``: "stays still", ...) and to its moving verbs (``MOVE_VERBS`` and "slowly"), each
summed over its phrases; reported per clip and as means over static and over moving clips. A
captioner that reads motion gives static phrases more mass on static clips than on moving ones.
Prints one JSON object.

Usage::

    python scripts/bench/caption_motion_probe.py --model runs/demo/lm/step-002800 --clips 24
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys


def phrase_logp(model, layout, prefix, phrases) -> float:
    """log of the summed probability of ``phrases`` (each as its full token sequence) after ``prefix``."""
    import numpy as np
    import torch

    values = []
    for phrase in phrases:
        ids = layout.encode_text(" " + phrase)
        full = torch.from_numpy(np.concatenate([prefix, ids]))[None]
        with torch.inference_mode():
            logp = model(input_ids=full).logits.float().log_softmax(-1)[0]
        values.append(float(sum(logp[len(prefix) - 1 + k, int(t)] for k, t in enumerate(ids))))
    return float(np.logaddexp.reduce(values))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="an LM model folder")
    parser.add_argument("--clips", type=int, default=24, help="clips of each kind, static and moving (default: 24)")
    parser.add_argument("--start", type=int, default=30_000, help="first val clip index (default: the eval's captions)")
    args = parser.parse_args(argv)

    from reelm.generation import VideoPipeline

    with contextlib.redirect_stdout(sys.stderr):  # loading may import DeepSpeed, which logs to stdout
        report = probe(args, VideoPipeline.from_pretrained(args.model))
    print(json.dumps(report, indent=2))
    return 0


def probe(args, pipe) -> dict:
    import numpy as np

    from reelm.core.config import from_dict
    from reelm.data.synthetic.captions import MOVE_VERBS, STATIC_VERBS
    from reelm.data.synthetic.world import SyntheticWorld, WorldOptions
    from reelm.data.token_layout import Task

    trained = (pipe.model.meta.get("data") or {}).get("world")
    options = from_dict(WorldOptions, trained) if trained else WorldOptions(max_objects=1, textured_backgrounds=False)
    world = SyntheticWorld(dataclasses.replace(options.world_config(pipe.model.clip, seed=0), split="val",
                                               max_objects=1))
    moving_phrases = ("slowly",) + MOVE_VERBS
    clips, wanted = [], {"static": args.clips, "moving": args.clips}
    index = args.start
    while any(wanted.values()) and index < args.start + 100 * args.clips:
        obj = world.attributes(index)["objects"][0]  # the truth without rendering: only wanted clips are drawn
        index += 1
        kind = "static" if obj["motion"] == "static" else "moving"
        if not wanted[kind]:
            continue
        wanted[kind] -= 1
        clip = world.clip(index - 1)
        grid = pipe.encode(pipe._clip_frames(clip.frames))
        prefix = np.concatenate([pipe.layout.prompt(Task.V2T, video=grid),
                                 pipe.layout.encode_text(f"a {obj['color']} {obj['shape']}")])
        clips.append({"index": index - 1, "motion": obj["motion"], "kind": kind,
                      "logp_static": phrase_logp(pipe.model.lm, pipe.layout, prefix, STATIC_VERBS),
                      "logp_moving": phrase_logp(pipe.model.lm, pipe.layout, prefix, moving_phrases)})
    means = {kind: {key: float(np.mean([c[key] for c in clips if c["kind"] == kind]))
                    for key in ("logp_static", "logp_moving")}
             for kind in ("static", "moving") if any(c["kind"] == kind for c in clips)}
    return {"model": str(args.model), "static_phrases": list(STATIC_VERBS), "moving_phrases": list(moving_phrases),
            "means": means, "clips": clips}


if __name__ == "__main__":
    sys.exit(main())
