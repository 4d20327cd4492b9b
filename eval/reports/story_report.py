"""The story eval's report: the scores first, then every story as a strip with its segment boundaries.

Each story is one row of frames (every ``STEP``-th frame, each segment's first frame always shown)
with a red bar where a segment starts; under it, a line a segment: its prompt, what the reader
read in its frames, and at its boundary whether continuity was kept (and why not).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reelm.eval.reports.report_page import Report, display_frames, labelled_rows

MARK = np.array([230, 30, 30], np.uint8)
STEP = 2  # every second frame shown
DISPLAY_HEIGHT = 56
SHOWN_STORIES = 24


def _strip(video: np.ndarray, starts: list[int]) -> np.ndarray:
    picks = sorted(set(range(0, len(video), STEP)) | set(starts))
    shown = display_frames(video[picks], DISPLAY_HEIGHT)
    cells = []
    for i, frame in zip(picks, shown):
        if i in starts and i:
            cells.append(np.broadcast_to(MARK, (frame.shape[0], 4, 3)))  # the boundary, before its first frame
        cells.append(np.pad(frame, ((0, 0), (0, 2), (0, 0)), constant_values=255))
    return np.concatenate(cells, axis=1)


def _read(segment: dict) -> str:
    read = segment.get("read") or []
    if not read:
        return "nothing read"
    r = read[0]
    return " ".join(str(r[k]) for k in ("color", "shape", "motion") if r.get(k))


def write_story_report(out: Path, summary: dict, records: list[dict], fps: float) -> Path:
    adherence = summary.get("adherence") or {}
    continuity = summary["continuity"]
    report = Report(out, "Story eval", subtitle=f"{summary['stories']} stories, {summary['segments']} segments; "
                    f"{summary['timings']['seconds']:.0f} s")
    head = report.section("Summary")
    rows = []
    for key, value in (adherence.get("attributes") or {}).items():
        if value["total"]:
            base = (summary.get("baseline") or {}).get("attributes", {}).get(key, {})
            rows.append([f"segment adherence: {key}", f"{value['accuracy']:.1%} of {value['total']}",
                         f"{base['accuracy']:.1%}" if base.get("total") else "",
                         (summary.get("ratio") or {}).get(key) or ""])
    share = continuity["share"]
    alone = summary.get("continuity_alone") or {}
    rows.append(["continuity kept at boundaries (alone: the rule inside each prompt's clip)",
                 f"{share:.1%} of {continuity['total']}" if share is not None else "-",
                 f"{alone['share']:.1%} of {alone['total']}" if alone.get("share") is not None else "",
                 (summary.get("ratio") or {}).get("continuity") or ""])
    by = summary.get("by_boundary") or {}
    if len(by) > 1:
        rows.append(["continuity at the 1st / 2nd / ... boundary of a story",
                     " / ".join(f"{v['share']:.0%} of {v['total']}" for v in by.values()), "", ""])
    rows.append(["PSNR across a boundary / inside segments (median dB)",
                 f"{summary['boundary_psnr']} / {summary['inside_psnr']}", "", ""])
    head.table(rows, ["measure", "in stories", "each prompt alone (baseline)", "ratio"])
    if summary.get("broken"):
        head.text("Boundaries that broke continuity, by reason: " +
                  ", ".join(f"{k} {v}" for k, v in sorted(summary["broken"].items())))
    section = report.section("Stories")
    section.text("Every second frame; a red bar where a segment starts. Under each story: each segment's prompt, "
                 "what was read from its frames, and whether its boundary kept continuity.")
    for record in records[:SHOWN_STORIES]:
        starts = [s["start"] for s in record["segments"]]
        strip = labelled_rows([(f"story {record['id']}", _strip(record["video"], starts))])
        lines = []
        for n, segment in enumerate(record["segments"]):
            line = f"{segment['start'] / fps:.1f} s: “{segment['prompt']}” → {_read(segment)}"
            if n:
                b = record["boundaries"][n - 1]
                line += " | boundary " + ("kept" if b["kept"] else f"broken ({b.get('reason', '')})")
            lines.append(line)
        section.image(strip, " · ".join(lines), name=f"story_{record['id']:03d}")
    return report.write("report.html")
