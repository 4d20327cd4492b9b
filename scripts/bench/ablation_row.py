"""One row of the prompts-followed ablation from a ``reelm eval generate`` summary; prints JSON.

The prompt-binding diagnostic per attribute (mean nats a clip, fraction of clips higher under the wrong
word), text-to-video accuracy per attribute on seen combinations, all attributes on held-out ones,
image-to-video and continuation kept, captions; each fraction with its count and 95 % Wilson interval.

Usage: python scripts/bench/ablation_row.py SUMMARY_JSON [NAME]
"""

from __future__ import annotations

import json
import sys

from reelm.eval.intervals import wilson


def fraction(correct: int, total: int) -> dict:
    if not total:
        return {}
    return {"value": round(correct / total, 3), "n": total, "interval": [round(x, 3) for x in wilson(correct, total)]}


def row(summary: dict, name: str) -> dict:
    seen, held = summary["adherence"]["seen"], summary["adherence"]["held-out"]
    out = {"name": name,
           "binding": {k: [v["mean"], v["higher_when_wrong"]] for k, v in summary.get("binding", {}).get(
               "attributes", {}).items()},
           "t2v_seen": {k: fraction(seen["attributes"][k]["correct"], seen["attributes"][k]["total"])
                        for k in ("color", "shape", "motion")},
           "t2v_held_out_all": fraction(held["correct"], held["total"])}
    for kind in ("i2v", "v2v"):
        out[kind] = fraction(round(summary[kind]["kept"] * summary[kind]["samples"]), summary[kind]["samples"])
    out["v2t"] = fraction(summary["v2t"]["correct"], summary["v2t"]["total"])
    out["v2t_motion"] = fraction(summary["v2t"]["attributes"]["motion"]["correct"],
                                 summary["v2t"]["attributes"]["motion"]["total"])
    if "v2t_held_out" in summary:  # evals since 2026-12-02 caption both groups; "v2t" was held-out clips before
        out["v2t_held_out"] = fraction(summary["v2t_held_out"]["correct"], summary["v2t_held_out"]["total"])
    return out


if __name__ == "__main__":
    print(json.dumps(row(json.load(open(sys.argv[1])), sys.argv[2] if len(sys.argv) > 2 else sys.argv[1])))
