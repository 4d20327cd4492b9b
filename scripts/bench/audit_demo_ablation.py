"""Does the audit matter? The demo's LM trained on a corrupted world set, raw and audited, at the same budget.

Renders ``--clips`` clips of the demo's world (its clip spec) with ``--share`` of them corrupted
(frozen segments, flicker, cuts between scenes, captions swapped with another clip's), audits them
with ``reelm data audit``'s defaults, pre-tokenizes the raw manifest and the audited one with the
same video tokenizer (``--video-tokenizer``, e.g. a demo run's ``tokenizer/``; without it the demo's
tokenizer stage trains one in ``--out``, on the clean world as the demo does), trains the demo's LM on each for the same steps and seed, and scores both with the demo's
eval. Every phase leaves its output in ``--out`` and is skipped when re-run. Prints JSON.

    python scripts/bench/audit_demo_ablation.py --out runs/audit_ablation
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--video-tokenizer", help="a trained video tokenizer (default: train the demo's in OUT/tokenizer)")
    p.add_argument("--out", required=True)
    p.add_argument("--clips", type=int, default=4000)
    p.add_argument("--share", type=float, default=0.3)
    p.add_argument("--steps", type=int, help="LM steps (default: the demo's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--drop-duplicates", action="store_true", help="drop near-duplicates too (the audit's default)")
    args = p.parse_args()

    from reelm.core.checkpoint_format import list_checkpoints
    from reelm.core.distributed import shutdown_distributed
    from reelm.data.synthetic.defects import DefectSetConfig, render_defect_set
    from reelm.demo.demo_config import DemoConfig
    from reelm.demo.stages import train_tokenizer
    from reelm.eval.audit.audit_config import AuditConfig
    from reelm.eval.audit.audit_run import audit_dataset
    from reelm.eval.generation_eval import GenerationEvalConfig, evaluate_generation
    from reelm.generation.pipeline import DEFAULT_GUIDANCE
    from reelm.lm.train import train
    from reelm.tokenizer.pretokenize import TokenizeConfig, tokenize_dataset

    out = Path(args.out)
    demo = DemoConfig()
    seconds: dict[str, float] = {}

    def phase(name, done: Path, run):
        began = time.perf_counter()
        if not done.exists():
            run()
            seconds[name] = round(time.perf_counter() - began, 1)

    video_tokenizer = args.video_tokenizer or str(out / "tokenizer")
    if not args.video_tokenizer:  # the demo's stage: the tokenizer trained on the clean world, its reconstructions scored
        phase("tokenizer", out / "eval" / "tokenizer" / "summary.json",
              lambda: train_tokenizer(dataclasses.replace(demo, seed=args.seed), out, False))
    world = dataclasses.replace(demo.world, split="train").world_config(demo.clip, seed=args.seed)
    defects = ("frozen", "flicker", "cut", "swapped_caption")
    phase("render", out / "raw" / "manifest.jsonl", lambda: render_defect_set(
        out / "raw", DefectSetConfig(num_clips=args.clips, share=args.share, defects=defects, seed=args.seed), world))
    audit_cfg = AuditConfig(clip=demo.clip)
    # The demo's world is 120 attribute combinations of one large object on plain backgrounds, so at the defaults most
    # clips of a combination are near-duplicates of its first (2,591 of 4,000 dropped as such, BENCHMARKS.md "Data
    # audit"): the comparison is of the defects, so duplicates are flagged, not dropped, unless --drop-duplicates.
    audit_cfg.duplicate.drop = args.drop_duplicates
    phase("audit", out / "audit" / "summary.json",
          lambda: audit_dataset(out / "raw" / "manifest.jsonl", out / "audit", audit_cfg, progress=False))
    training = dataclasses.replace(demo.lm_train, seed=args.seed, **({"steps": args.steps} if args.steps else {}))
    results = {}
    for arm, manifest in (("raw", out / "raw" / "manifest.jsonl"), ("audited", out / "audit" / "clean.jsonl")):
        tokenize = TokenizeConfig(clip=demo.clip, chunk_rows=demo.chunk_rows, text_vocab_size=demo.text_vocab_size,
                                  seed=args.seed, batch_size=32)
        phase(f"{arm}_shards", out / arm / "shards" / "shards.json",
              lambda: tokenize_dataset(str(manifest), video_tokenizer, out / arm / "shards", tokenize, progress=False))

        def train_lm():
            resume = bool(list_checkpoints(out / arm / "lm"))  # a killed run continues, a finished one returns
            try:
                train(out / arm / "shards", out / arm / "lm", model=None if resume else demo.lm,
                      config=None if resume else training, resume=resume, progress=False, device="cpu")
            finally:
                shutdown_distributed()
        phase(f"{arm}_lm", out / arm / "lm" / "trained", train_lm)
        (out / arm / "lm" / "trained").touch()
        eval_cfg = GenerationEvalConfig(num_prompts=demo.eval_prompts, num_samples=demo.eval_samples, seed=args.seed,
                                        guidance_scale=DEFAULT_GUIDANCE, image_to_video=demo.image_to_video,
                                        continuation=demo.continuation, captions=demo.captions,
                                        binding_clips=demo.binding_clips, world=demo.world)
        phase(f"{arm}_eval", out / arm / "eval" / "summary.json",
              lambda: evaluate_generation(out / arm / "lm", out / arm / "eval", eval_cfg, device="cpu", progress=False))
        results[arm] = json.loads((out / arm / "eval" / "summary.json").read_text())
    audit = json.loads((out / "audit" / "summary.json").read_text())
    print(json.dumps({"clips": args.clips, "share": args.share, "defects": list(defects), "steps": training.steps,
                      "audit": {k: audit[k] for k in ("kept", "dropped", "drop_reasons", "seconds")},
                      "seconds": seconds, "scores": {arm: _scores(r) for arm, r in results.items()}}, indent=1))


def _scores(summary: dict) -> dict:
    """The demo's target figures (:func:`reelm.demo.report_card.figures`) from an eval summary."""
    from reelm.demo.report_card import figures

    return {"/".join(key): value for key, value in figures({}, summary).items() if key[0] != "tokenizer"}


if __name__ == "__main__":
    main()
