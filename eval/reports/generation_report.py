"""The HTML report of a generation eval: the scores first, then per dimension the evidence behind them.

Sections: a summary table; prompt adherence per attribute for seen and held-out
combinations, the color confusions and the best and worst samples with their prompts and
what was read from them; image-to-video and continuation samples beside their conditions;
captions against the truth; flicker maps, motion smoothness and how much moves; the
distribution metrics with their protocols (or why they were not computed).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from reelm.data.contact_sheet import render_sheet
from reelm.eval.adherence import ATTRIBUTES
from reelm.eval.reports.report_page import Report, enlarge

SHOWN = 4
SHEET_FRAMES = 9


def write_report(out: Path, summary: dict, samples: list[dict], conditioned: list[dict], captions: list[dict]) -> Path:
    model = summary["protocol"]["model"]
    report = Report(out, "Generation eval", subtitle=(
        f"model {model['model']} (step {model['step']}), video tokenizer {model['video_tokenizer']['fingerprint']}; "
        f"{summary['counts']['samples']} text-to-video samples of {summary['counts']['prompts']} prompts; "
        f"reelm {summary['protocol']['reelm_version']}"))
    _summary(report, summary)
    _adherence(report, summary, samples)
    if conditioned:
        _conditioned(report, summary, conditioned)
    if captions:
        _captions(report, summary, captions)
    _temporal(report, summary, samples)
    _distribution(report, summary)
    return report.write()


def _percent(value) -> str:
    return "-" if value is None else f"{value:.1%}"


def _summary(report: Report, summary: dict) -> None:
    rows = []
    for group, result in summary["adherence"].items():
        parts = ", ".join(f"{name} {_percent(v['accuracy'])}" for name, v in result["attributes"].items() if v["total"])
        rows.append((f"text-to-video, {group} combinations", f"{_percent(result['accuracy'])} of attributes ({parts})"))
    for kind, name in (("i2v", "image-to-video"), ("v2v", "continuation")):
        if kind in summary:
            r = summary[kind]
            rows.append((f"{name}: keeps color and shape, moves consistently",
                         f"{_percent(r['kept'])} of {r['samples']} (color {_percent(r['color_right'])}, shape "
                         f"{_percent(r['shape_right'])}, motion {_percent(r['motion_right'])}; first-frame drift "
                         f"{r['drift_psnr_mean']:.1f} dB PSNR)"))
    if "v2t" in summary:
        rows.append(("video-to-text: attributes named correctly", f"{_percent(summary['v2t']['accuracy'])} of "
                                                                    f"{summary['v2t']['total']}"))
    temporal = summary["temporal"]
    if temporal["flicker_mean"] is not None:
        rows.append(("flicker on static regions (0-255)", f"{temporal['flicker_mean']:.2f} (VBench-style score "
                                                          f"{temporal['temporal_flickering_score']:.4f})"))
        rows.append(("moving samples", _percent(temporal["dynamic_fraction"])))
    for name, result in summary.get("distribution", {}).items():
        rows.append((name.upper(), f"{result['value']:.4g}" if result.get("computed") else result["reason"]))
    report.section("Summary").table(rows, ["measure", "value"])


def _adherence(report: Report, summary: dict, samples: list[dict]) -> None:
    section = report.section("Prompt adherence")
    section.text("The scorer reads each object's attributes from the generated frames alone and compares them with "
                 "what the prompt names; attributes a prompt leaves out are not scored.")
    groups = list(summary["adherence"])
    rows = []
    for name in ATTRIBUTES:
        cells = []
        for group in groups:
            value = summary["adherence"][group]["attributes"][name]
            cells.append(f"{_percent(value['accuracy'])} ({value['correct']}/{value['total']})" if value["total"]
                         else "not named")
        rows.append([name] + cells)
    section.table(rows, ["attribute"] + groups)
    confusion: Counter = Counter()
    for sample in samples:
        for obj in sample.get("score", {}).get("objects", []):
            read = sample["read"][obj["read"]]["color"] if obj["read"] is not None else "nothing"
            confusion[(obj["expected"]["color"], read)] += 1
    if confusion:
        truths = sorted({t for t, _ in confusion if t})
        reads = sorted({r for _, r in confusion})
        section.html("<h3>Color asked for (rows) vs read back (columns)</h3>")
        section.table([[t] + [confusion[(t, r)] for r in reads] for t in truths], ["asked \\ read"] + reads)
    scored = sorted((s for s in samples if "score" in s and s["score"]["accuracy"] is not None),
                    key=lambda s: (s["score"]["accuracy"], s["id"]))
    for label, chosen in (("worst", scored[:SHOWN]), ("best", scored[-SHOWN:][::-1])):
        for sample in chosen:
            read = ", ".join(f"{r['color']} {r['shape']} {r['motion']}" for r in sample["read"]) or "nothing"
            sheet = render_sheet([enlarge(sample["video"])], max_frames=SHEET_FRAMES, labels=[sample["group"]])
            section.image(sheet, f"{label}: \"{sample['prompt']}\" — read: {read} — "
                                 f"{_percent(sample['score']['accuracy'])} right", name=f"t2v_{label}_{sample['file']}")


def _conditioned(report: Report, summary: dict, conditioned: list[dict]) -> None:
    section = report.section("Image-to-video and continuation")
    section.text("Real clips of the world continued from their first frame (image-to-video) or their first latent "
                 "frames (continuation), with a prompt naming the object. Right: the object keeps its color and shape "
                 "and moves over the generated frames the way the real clip does.")
    rows = [(r["kind"], r["prompt"], r["read"] and f"{r['read']['color']} {r['read']['shape']} {r['read']['motion']}",
             r["expected_motion"], "yes" if r["kept"] else "no", f"{min(r['drift_psnr'], 99):.1f}")
            for r in conditioned]
    section.table(rows, ["task", "prompt", "read", "real motion", "kept", "drift PSNR (dB)"],
                  highlight=["good" if r["kept"] else "bad" for r in conditioned])
    for record in [r for r in conditioned if r["kind"] == "i2v"][:SHOWN] + \
            [r for r in conditioned if r["kind"] == "v2v"][:SHOWN]:
        sheet = render_sheet([enlarge(record["condition"]), enlarge(record["video"])], max_frames=SHEET_FRAMES,
                             labels=["condition", "generated"])
        section.image(sheet, f"{record['kind']}: \"{record['prompt']}\" — {'kept' if record['kept'] else 'lost'}",
                      name=f"{record['kind']}_{record['id']}")


def _captions(report: Report, summary: dict, captions: list[dict]) -> None:
    section = report.section("Video-to-text")
    section.text("Clips captioned by the model (greedy): val clips (combinations seen in training) and held-out "
                 "combinations; every true attribute counts, and one the caption leaves out counts as wrong.")
    rows = [(c["group"], c["truth"], c["caption"], _percent(c["score"]["accuracy"])) for c in captions]
    section.table(rows, ["clips", "true caption", "generated caption", "attributes right"],
                  highlight=["good" if (c["score"]["accuracy"] or 0) >= 0.8 else "bad" for c in captions])


def _temporal(report: Report, summary: dict, samples: list[dict]) -> None:
    from matplotlib.figure import Figure

    section = report.section("Temporal quality")
    section.text("Left: mean change between consecutive frames on the static region of each pixel, averaged over "
                 "samples (bright = flicker where nothing should move). Right: motion smoothness, the median "
                 "|second difference| of each sample's object track (0 = constant velocity).")
    fig = Figure(figsize=(11, 3.6))
    ax_map, ax_smooth = fig.subplots(1, 2)
    maps = [s["flicker_map"] for s in samples if s.get("flicker_map") is not None]
    if maps:
        image = ax_map.imshow(np.mean(maps, axis=0), cmap="magma")
        fig.colorbar(image, ax=ax_map, label="mean |change| (0-255)")
    ax_map.set_title("flicker map")
    smooth = [s["smoothness"] for s in samples if s["smoothness"] is not None]
    ax_smooth.hist(smooth, bins=20)
    ax_smooth.set_xlabel("median |acceleration| (pixels / frame²)")
    ax_smooth.set_ylabel("samples")
    section.figure(fig, "flicker map and motion smoothness", name="temporal")


def _distribution(report: Report, summary: dict) -> None:
    section = report.section("Distribution metrics")
    rows = []
    for name, result in summary.get("distribution", {}).items():
        if result.get("computed"):
            protocol = result.get("protocol", {})
            rows.append((name.upper(), f"{result['value']:.4g}", protocol.get("name", ""),
                         protocol.get("detector", {}).get("sha256", "")[:12] if isinstance(protocol.get("detector"), dict)
                         else ""))
        else:
            rows.append((name.upper(), "not computed", result["reason"], ""))
    section.table(rows, ["metric", "value", "protocol / reason", "detector SHA-256"])
