#!/usr/bin/env bash
# One LM variant of the prompts-followed ablation (BENCHMARKS.md, "Prompts followed"): train the demo's LM
# settings plus the variant's --set flags on existing shards, run the demo's generation eval, print one JSON row.
#   scripts/bench/prompt_ablation.sh NAME SHARDS [--set KEY=VALUE ...]      (STEPS=1500 OUT=runs/ablation)
set -euo pipefail
name=$1; shards=$2; shift 2
out=${OUT:-runs/ablation}
mkdir -p "$out"
reelm lm train --preset tiny --data "$shards" --steps "${STEPS:-1500}" --out "$out/$name" \
  --set block_size=512 --set micro_batch_size=8 --set lr=2e-3 --set warmup_steps=30 --set checkpoint_every=500 \
  --set val_every=100 --set log_every=10 --set compile=true --set seed=0 "$@" --no-progress > "$out/$name.train.log" 2>&1
reelm eval generate --model "$out/$name" --out "$out/$name-eval" --num-prompts 48 --image-to-video 32 \
  --continuation 32 --captions 32 --no-progress ${EVAL_FLAGS:-} > "$out/$name.eval.log" 2>&1
python "$(dirname "$0")/ablation_row.py" "$out/$name-eval/summary.json" "$name"
