"""The audit's report: why each clip was dropped, shown without opening it.

First the summary (clips kept and dropped, counts per reason, every threshold), then one section
per dimension that failed anywhere: the histogram of its values over the dataset with the
threshold drawn, and its worst clips as strips of frames with the offending frames framed in red
(for bars, the bar edges drawn; for a cut, the frames either side of it; for a duplicate, the clip
above the one it copies). The strips are re-read from the source (at most ``WORST`` clips a
dimension), so the audit itself never holds frames.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reelm.eval.reports.report_page import Report, display_frames, labelled_rows

MARK = np.array([230, 30, 30], np.uint8)
STRIP_FRAMES = 8
DISPLAY_HEIGHT = 72  # pixels a frame is shown at
TITLES = {"frozen": "Frozen segments", "cut": "Scene cuts inside a clip", "flicker": "Flicker",
          "exposure": "Black, white and faded frames", "blur": "Blur", "bars": "Letterbox and pillarbox bars",
          "duplicate": "Near-duplicates", "caption": "Caption-clip agreement",
          "spec": "Duration, frame rate, resolution", "decode": "Decode problems", "static": "Still clips"}


def _frames(source, index: int, cfg) -> np.ndarray | None:
    from reelm.eval.audit.clip_audit import open_clip

    try:
        clip = open_clip(source, source.row(index), cfg)
        return np.stack(list(clip.frames))
    except Exception:  # noqa: BLE001 - a clip that cannot be read again shows no strip, the table still says why
        return None


def _pick(count: int, marked: list[int]) -> list[int]:
    """Up to STRIP_FRAMES frame indices: the marked ones first (spread), the rest spread over the clip."""
    marked = sorted({m for m in marked if 0 <= m < count})
    if len(marked) > STRIP_FRAMES // 2:
        marked = [marked[i] for i in np.linspace(0, len(marked) - 1, STRIP_FRAMES // 2).round().astype(int)]
    rest = [int(i) for i in np.linspace(0, count - 1, min(count, STRIP_FRAMES)).round()]
    chosen = set(marked)
    for i in rest:
        if len(chosen) >= min(count, STRIP_FRAMES):
            break
        chosen.add(i)
    return sorted(chosen)


def _strip(frames: np.ndarray, name: str, result: dict) -> np.ndarray:
    """One row of frames with the evidence marked."""
    evidence = result.get("evidence", {})
    marked = list(evidence.get("frames", []))
    if name == "cut":
        marked = [f for c in evidence.get("cuts", []) for f in (c["frame"] - 1, c["frame"])]
    picks = _pick(len(frames), marked)
    if name == "cut" and marked:  # the frames either side of the first cut, in order
        a = marked[0]
        picks = sorted(set([max(0, a - 2), a, a + 1, min(len(frames) - 1, a + 2)] + picks[:4]))[:STRIP_FRAMES]
    shown = display_frames(frames[picks], DISPLAY_HEIGHT)
    scale = shown.shape[1] / frames.shape[1]
    cells = []
    for i, frame in zip(picks, shown):
        frame = frame.copy()
        if name == "bars":
            for key, axis in (("top", 0), ("bottom", 0), ("left", 1), ("right", 1)):
                n = int(round(evidence.get(key, 0) * scale))
                if n:
                    line = n - 1 if key in ("top", "left") else frame.shape[axis] - n
                    if axis == 0:
                        frame[line] = MARK
                    else:
                        frame[:, line] = MARK
        if i in marked and name != "bars":
            frame[:3], frame[-3:], frame[:, :3], frame[:, -3:] = MARK, MARK, MARK, MARK
        cells.append(np.pad(frame, ((0, 0), (0, 4), (0, 0)), constant_values=255))
    return np.concatenate(cells, axis=1)


def _histogram(values: list[float], threshold, title: str):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2, 2.2))
    ax = fig.subplots()
    ax.hist(values, bins=40, color="#5b7db1")
    for t in ([threshold] if isinstance(threshold, (int, float)) else []):
        ax.axvline(t, color="#d62728", linestyle="--", label=f"threshold {t:g}")
        ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.set_ylabel("clips", fontsize=8)
    ax.tick_params(labelsize=8)
    return fig


def _threshold(cfg, name: str):
    """The number drawn on a dimension's histogram."""
    table = {"frozen": cfg.frozen.max_share, "static": cfg.static.min_motion, "exposure": cfg.exposure.max_share,
             "flicker": cfg.flicker.max_flicker, "blur": cfg.blur.max_blur, "cut": cfg.cut.min_score,
             "bars": cfg.bars.max_share, "duplicate": cfg.duplicate.max_bits,
             "caption": cfg.caption.min_read_accuracy}
    return table.get(name)


def write_audit_report(out: Path, summary: dict, values: dict, worst: dict, source, cfg) -> Path:
    report = Report(out, f"Data audit: {summary['data']}",
                    subtitle=f"{summary['clips']} clips, {summary['kept']} kept, {summary['dropped']} dropped, "
                    f"{summary['duplicates']} near-duplicates; {summary['seconds']:.1f} s")
    head = report.section("Summary")
    rows = [[TITLES[name], summary["drop_reasons"].get(name, 0), summary["flags"].get(name, 0),
             "drops" if name == "decode" or getattr(cfg, name).drop else "flags only"] for name in TITLES]
    head.table(rows, ["dimension", "clips dropped for it", "clips flagged (kept)", "a failure"],
               highlight=["bad" if r[1] else None for r in rows])
    head.text("A clip can fail several dimensions; it is dropped when any dimension that drops fails. The cleaned "
              f"manifest ({Path(summary['clean_manifest']).name}) lists the clips kept; {Path(summary['split_manifest']).name} "
              "also keeps the pieces between cuts of clips dropped only for a cut. Thresholds: audit_config.json.")
    for name in TITLES:
        entries = sorted(worst.get(name, []), reverse=True)
        if not entries:
            continue
        section = report.section(TITLES[name])
        if values.get(name) and _threshold(cfg, name) is not None:
            section.figure(_histogram(values[name], _threshold(cfg, name), f"{name}: value per clip"),
                           f"{name}: distribution over {len(values[name])} clips, threshold dashed",
                           name=f"hist_{name}")
        table = []
        for _, _, entry in entries:
            table.append([entry["index"], Path(entry["video"]).name, entry["result"]["reason"],
                          entry["result"]["value"] if not isinstance(entry["result"]["value"], dict) else "",
                          entry.get("caption") or ""])
        section.table(table, ["clip", "file", "why", "value", "caption"])
        rows = []
        for _, _, entry in entries:
            frames = _frames(source, entry["index"], cfg)
            if frames is None:
                continue
            rows.append((f"clip {entry['index']}", _strip(frames, name, entry["result"])))
            if name == "duplicate":
                of = entry["result"]["evidence"]["of"]
                other = _frames(source, of, cfg)
                if other is not None:
                    rows.append((f"= clip {of}", _strip(other, name, {"evidence": {}})))
        if rows:
            marked = {"bars": "bar edges drawn in red", "duplicate": "each clip above the one it duplicates",
                      "cut": "the frames either side of the cut framed in red"}.get(name, "offending frames framed in red")
            section.image(labelled_rows(rows), f"{TITLES[name]}: the clips above, {marked}", name=f"{name}_clips")
    return report.write("report.html")
