"""The HTML report of a reconstruction eval: the scores, then the evidence behind each.

Sections: a summary table; PSNR by frame index and the spread of per-clip PSNR (where the
error is); the worst and best clips, original above reconstruction; codebook use (how many
codes carry the clips); and, for synthetic clips, what the adherence scorer reads back from
the reconstructions, attribute by attribute, with the color confusions.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from reelm.data.contact_sheet import render_sheet
from reelm.eval.reports.report_page import Report, enlarge

SHEET_FRAMES = 9


def write_report(out: Path, summary: dict, records: list[dict], kept: list, frame_psnr: list[list[float]],
                 counts: np.ndarray) -> Path:
    from matplotlib.figure import Figure

    protocol = summary["protocol"]
    report = Report(out, "Reconstruction eval", subtitle=(
        f"tokenizer {protocol['tokenizer']['fingerprint']} ({protocol['tokenizer']['codebook_size']} codes), "
        f"source {protocol['source']}, {summary['clips']} clips of {protocol['clip']['num_frames']} frames at "
        f"{protocol['clip']['fps']:g} fps, {protocol['clip']['size']}x{protocol['clip']['size']}; reelm "
        f"{protocol['reelm_version']}"))
    rows = [("PSNR (dB), mean / median / min", _three(summary["psnr"])),
            ("SSIM, mean / median / min", _three(summary["ssim"])),
            ("LPIPS, mean", f"{summary['lpips']['mean']:.4f}" if "mean" in summary["lpips"]
             else summary["lpips"]["reason"]),
            ("codebook used", _codebook(summary["codebook"])),
            ("rFVD", f"{summary['rfvd']['value']:.2f}" if summary["rfvd"].get("computed") else
             summary["rfvd"]["reason"]),
            ("clips scored / skipped", f"{summary['clips']} / {summary['skipped']}")]
    if "adherence" in summary:
        for name, value in summary["adherence"]["attributes"].items():
            if value["total"]:
                rows.append((f"attribute read back: {name}", f"{value['accuracy']:.1%} ({value['correct']}/"
                                                             f"{value['total']})"))
    report.section("Summary").table(rows, ["measure", "value"])

    where = report.section("Where the error is")
    where.text("PSNR of each frame index, averaged over clips: a causal tokenizer codes frame 0 alone, the "
               "others four at a time. Right: how PSNR spreads over clips.")
    fig = Figure(figsize=(11, 3.6))
    ax_frames, ax_hist = fig.subplots(1, 2)
    ax_frames.plot(range(len(summary.get("psnr_by_frame", []))), summary.get("psnr_by_frame", []), "o-")
    ax_frames.set_xlabel("frame index")
    ax_frames.set_ylabel("PSNR (dB)")
    ax_hist.hist([r["psnr"] for r in records], bins=min(30, max(5, len(records) // 3)))
    ax_hist.set_xlabel("clip PSNR (dB)")
    ax_hist.set_ylabel("clips")
    for ax in (ax_frames, ax_hist):
        ax.grid(alpha=0.3)
    where.figure(fig, "PSNR by frame index and per clip", name="psnr")

    examples = report.section("Worst and best clips")
    examples.text("Each pair: the original clip above, its reconstruction below, frames evenly sampled.")
    by_psnr = sorted(kept, key=lambda c: records[c.index]["psnr"])
    shown = 4
    for label, clips in (("worst", by_psnr[:shown]), ("best", by_psnr[-shown:][::-1])):
        for clip in clips:
            record = records[clip.index]
            sheet = render_sheet([enlarge(clip.original), enlarge(clip.recon)], max_frames=SHEET_FRAMES,
                                 labels=["original", "recon"])
            caption = f"{label}: clip {record['clip']} ({record['source']}), PSNR {record['psnr']:.2f} dB, " \
                      f"SSIM {record['ssim']:.3f}" + (f" — {record['caption']}" if record.get("caption") else "")
            examples.image(sheet, caption, name=f"{label}_{record['clip']}")

    codebook = report.section("Codebook use")
    codebook.text(f"How often each code appears over all clips, most frequent first: {summary['codebook']['used']} "
                  f"of {summary['codebook']['size']} codes are used; a healthy codebook spreads over many.")
    fig = Figure(figsize=(11, 3.2))
    ax = fig.subplots()
    frequencies = np.sort(counts)[::-1]
    ax.semilogy(np.arange(1, len(frequencies) + 1), np.maximum(frequencies, 0.5))
    ax.set_xlabel("code rank")
    ax.set_ylabel("occurrences")
    ax.grid(alpha=0.3)
    codebook.figure(fig, "code frequencies by rank", name="codebook")

    if "adherence" in summary:
        _adherence_section(report, summary, records)
    return report.write()


def _adherence_section(report: Report, summary: dict, records: list[dict]) -> None:
    section = report.section("What the reconstructions still show")
    section.text("The adherence scorer reads each object's attributes from the reconstructed frames alone and "
                 "compares them with the ground truth (on the original clips it reads >= 99 % right).")
    rows = [(name, value["correct"], value["total"], f"{value['accuracy']:.1%}" if value["accuracy"] is not None
             else "-") for name, value in summary["adherence"]["attributes"].items()]
    section.table(rows, ["attribute", "right", "scored", "accuracy"])
    confusion: Counter = Counter()
    for record in records:
        read = record.get("read", [])
        for expected in record.get("expected", []):
            colors = [r["color"] for r in read]
            confusion[(expected["color"], expected["color"] if expected["color"] in colors else
                       (colors[0] if colors else "nothing"))] += 1
    truths = sorted({t for t, _ in confusion})
    reads = sorted({r for _, r in confusion})
    section.html("<h3>Color: true (rows) vs read back (columns)</h3>")
    section.table([[t] + [confusion[(t, r)] for r in reads] for t in truths], ["true \\ read"] + reads)


def _codebook(codebook: dict) -> str:
    if codebook["perplexity"] is None:
        return "no codes (no clips)"
    return (f"{codebook['used']} of {codebook['size']} ({codebook['usage']:.1%}), "
            f"perplexity {codebook['perplexity']:.1f}")


def _three(stats: dict) -> str:
    if stats.get("mean") is None:
        return "-"
    return f"{stats['mean']:.4g} / {stats['median']:.4g} / {stats['min']:.4g}"
