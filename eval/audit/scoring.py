"""An audit scored against known defects: precision and recall per dimension.

The ground truth is a manifest from :func:`reelm.data.synthetic.defects.render_defect_set`
(each row's ``defects``); a clip counts as found by a dimension when that dimension failed on it.
Recall is over the clips carrying the defects a dimension is for; precision over the clips the
dimension failed. A clean clip that fails any dimension is a false alarm of that dimension.
"""

from __future__ import annotations

import json
from pathlib import Path

from reelm.eval.intervals import wilson

DEFECT_DIMENSION = {"frozen": "frozen", "black": "exposure", "faded": "exposure", "flicker": "flicker", "blur": "blur",
                    "cut": "cut", "letterbox": "bars", "pillarbox": "bars", "duplicate": "duplicate",
                    "reencoded_duplicate": "duplicate", "low_fps": "spec", "swapped_caption": "caption"}


def read_jsonl(path: str | Path) -> list[dict]:
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def precision_recall(audit: list[dict], truth: list[dict], *, dimensions=None) -> dict:
    """Per dimension: ``tp``, ``fp``, ``fn``, ``precision``, ``recall`` (each with a 95 % Wilson interval), and
    per defect kind the recall at each strength third; ``clean_flagged``: clean clips any dropping dimension failed."""
    by_index = {r["index"]: r for r in audit}
    dims = sorted(set(DEFECT_DIMENSION.values()) if dimensions is None else dimensions)
    table = {d: {"tp": 0, "fp": 0, "fn": 0} for d in dims}
    kinds: dict[str, dict] = {}
    clean, clean_flagged = 0, 0
    for row_index, row in enumerate(truth):
        record = by_index[row.get("index", row_index)]
        failed = {name for name, r in record["dimensions"].items() if r["verdict"] == "fail"}
        wanted = {DEFECT_DIMENSION[d["kind"]] for d in row.get("defects", [])}
        for d in dims:
            if d in wanted and d in failed:
                table[d]["tp"] += 1
            elif d in wanted:
                table[d]["fn"] += 1
            elif d in failed:
                table[d]["fp"] += 1
        for d in row.get("defects", []):
            grade = "weak" if d["strength"] < 0.47 else ("medium" if d["strength"] < 0.73 else "strong")
            entry = kinds.setdefault(d["kind"], {"found": 0, "total": 0, "by_strength": {}})
            hit = DEFECT_DIMENSION[d["kind"]] in failed
            entry["found"] += hit
            entry["total"] += 1
            cell = entry["by_strength"].setdefault(grade, [0, 0])
            cell[0] += hit
            cell[1] += 1
        if not wanted:
            clean += 1
            clean_flagged += bool(record["reasons"])
    for d, t in table.items():
        t["precision"] = _ratio(t["tp"], t["tp"] + t["fp"])
        t["recall"] = _ratio(t["tp"], t["tp"] + t["fn"])
    return {"dimensions": table, "defects": kinds, "clean": clean, "clean_dropped": clean_flagged}


def _ratio(k: int, n: int) -> dict:
    low, high = wilson(k, n) if n else (None, None)
    return {"value": k / n if n else None, "n": n, "interval": [low, high]}
