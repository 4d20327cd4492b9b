"""The demo's report card: the figures against their targets, the stages and their times, and samples to look at.

``DIR/report.html`` opens from disk. It leads with one table — every target of the demo with the
measured figure and whether it is met — then each stage's line and seconds, a contact sheet of
generated samples with their prompts, and links to the full reports of the tokenizer eval and
the generation eval, where each score's evidence is.
"""

from __future__ import annotations

import json
from pathlib import Path

from reelm.data.contact_sheet import render_sheet
from reelm.data.video_read import read_video
from reelm.demo.demo_config import DemoConfig
from reelm.eval.intervals import wilson
from reelm.eval.reports.report_page import Report, enlarge

# (label, where in the records, target): the demo's quality bar (README, BENCHMARKS.md)
TARGETS = (
    ("tokenizer: color read back from reconstructions", ("tokenizer", "color"), 0.97),
    ("tokenizer: shape read back", ("tokenizer", "shape"), 0.90),
    ("tokenizer: direction read back", ("tokenizer", "motion"), 0.97),
    ("tokenizer: held-out PSNR (dB)", ("tokenizer", "psnr"), 30.0),
    ("text-to-video, seen combinations: color", ("seen", "color"), 0.95),
    ("text-to-video, seen combinations: shape", ("seen", "shape"), 0.80),
    ("text-to-video, seen combinations: direction", ("seen", "motion"), 0.80),
    ("text-to-video, held-out combinations: all attributes", ("held-out", "all"), 0.60),
    ("image-to-video: keeps color and shape, moves consistently", ("i2v", "kept"), 0.80),
    ("continuation: keeps color and shape, moves consistently", ("v2v", "kept"), 0.80),
    ("video-to-text, seen combinations: attributes named", ("v2t", "all"), 0.80),
    ("video-to-text, seen combinations: direction named", ("v2t", "motion"), 0.80),
    ("video-to-text, held-out combinations: all attributes", ("v2t_held_out", "all"), 0.60),
)
SAMPLE_ROWS = 12


def counts(records: dict, summary: dict) -> dict:
    """``(correct, total)`` behind each figure that is a fraction of samples, for its interval."""
    found = {}
    tokenizer = (records.get("tokenizer", {}).get("adherence") or {}).get("attributes", {})
    for key in ("color", "shape", "motion"):
        found[("tokenizer", key)] = tokenizer.get(key)
    for group in ("seen", "held-out"):
        result = summary["adherence"].get(group, {})
        for key in ("color", "shape", "motion"):
            found[(group, key)] = result.get("attributes", {}).get(key)
        found[(group, "all")] = result if result else None
    for kind in ("i2v", "v2v"):
        if kind in summary:
            found[(kind, "kept")] = {"correct": round(summary[kind]["kept"] * summary[kind]["samples"]),
                                     "total": summary[kind]["samples"]}
    v2t = summary.get("v2t", {})
    found[("v2t", "all")] = v2t or None
    found[("v2t", "motion")] = v2t.get("attributes", {}).get("motion")
    found[("v2t_held_out", "all")] = summary.get("v2t_held_out") or None
    return {key: (int(v["correct"]), int(v["total"])) for key, v in found.items() if v and v.get("total")}


def figures(records: dict, summary: dict) -> dict:
    """The measured value of each target (None where it was not measured)."""
    tokenizer = records.get("tokenizer", {})
    read = (tokenizer.get("adherence") or {}).get("attributes", {})
    values = {("tokenizer", key): (read.get(key) or {}).get("accuracy") for key in ("color", "shape", "motion")}
    values[("tokenizer", "psnr")] = tokenizer.get("psnr")
    for group in ("seen", "held-out"):
        result = summary["adherence"].get(group, {})
        for key in ("color", "shape", "motion"):
            values[(group, key)] = (result.get("attributes", {}).get(key) or {}).get("accuracy")
        values[(group, "all")] = result.get("accuracy")
    for kind in ("i2v", "v2v"):
        values[(kind, "kept")] = summary.get(kind, {}).get("kept")
    values[("v2t", "all")] = summary.get("v2t", {}).get("accuracy")
    values[("v2t", "motion")] = (summary.get("v2t", {}).get("attributes", {}).get("motion") or {}).get("accuracy")
    values[("v2t_held_out", "all")] = summary.get("v2t_held_out", {}).get("accuracy")
    return values


def write_demo_report(out: Path, cfg: DemoConfig, records: dict, summary: dict) -> tuple[Path, list[str]]:
    values, numbers = figures(records, summary), counts(records, summary)
    total = sum(r.get("seconds", 0) for r in records.values())
    rows, marks, lines = [], [], ["", "reelm demo — results (held-out prompts and clips), with 95 % intervals:"]
    for label, key, target in TARGETS:
        value = values.get(key)
        shown = "-" if value is None else (f"{value:.2f}" if key[1] == "psnr" else f"{value:.1%}")
        if value is not None and key in numbers:
            lo, hi = wilson(*numbers[key])
            shown += f" [{lo:.0%}-{hi:.0%}] of {numbers[key][1]}"
        goal = f">= {target:g}" if key[1] == "psnr" else f">= {target:.0%}"
        met = value is not None and value >= target
        rows.append((label, shown, goal, "met" if met else "not met"))
        marks.append("good" if met else "bad")
    width = max(len(r[0]) for r in rows)
    lines += [f"  {label:<{width}}  {value:>24}  (target {goal}, {state})" for label, value, goal, state in rows]
    lines.append(f"  {'minutes, all stages (this machine)':<{width}}  {total / 60:>24.1f}  (target <= 15)")
    binding = summary.get("binding")
    if binding:
        lines.append("  prompt binding (reelm.eval.prompt_binding; NLL of latent frames 1+, swapped minus true prompt, "
                     f"{binding['clips']} val clips):")
        lines += [f"    {name:<7} {v['mean']:+.2f} nats a clip [{v['interval'][0]:+.2f}, {v['interval'][1]:+.2f}], "
                  f"higher under the wrong word in {v['higher_when_wrong']:.0%}" for name, v in binding["attributes"].items()]
    report = Report(out, "reelm demo", subtitle=(
        f"{cfg.clip.size}x{cfg.clip.size} clips of {cfg.clip.num_frames} frames at {cfg.clip.fps:g} fps, "
        f"{cfg.world.max_objects} object(s), {'textured' if cfg.world.textured_backgrounds else 'plain'} "
        f"backgrounds; tokenizer {cfg.tokenizer_train.steps} steps, LM "
        f"{cfg.lm.num_layers} x {cfg.lm.hidden_size} {cfg.lm_train.steps} steps; budget {cfg.budget_minutes:g} minutes"))
    report.section("Results against the targets").table(rows + [("minutes, all stages", f"{total / 60:.1f}",
                                                                  "<= 15", "met" if total <= 900 else "not met")],
                                                         ["measure", "value", "target", ""],
                                                         highlight=marks + ["good" if total <= 900 else "bad"])
    stages = report.section("Stages")
    stages.table([(name, f"{r.get('seconds', 0):.0f}", r["line"]) for name, r in records.items()],
                 ["stage", "seconds", "what it did"])
    _samples(report, out)
    links = report.section("The full reports")
    links.html(f'<p><a href="eval/tokenizer/report.html">tokenizer: reconstruction eval</a> — '
               f'<a href="eval/generate/report.html">generation eval</a> — '
               f'<a href="lm/loss.png">LM losses</a> — <a href="data/seen/contact_sheet.png">held-out clips</a></p>')
    return report.write(), lines


def _samples(report: Report, out: Path) -> None:
    """A contact sheet of text-to-video samples, first sample of each prompt, seen then held-out."""
    samples_file = out / "eval" / "generate" / "samples.jsonl"
    if not samples_file.is_file():
        return
    records = [json.loads(line) for line in samples_file.read_text().splitlines()]
    chosen = [r for r in records if r["kind"] == "t2v" and r["sample"] == 0]
    chosen = [r for r in chosen if r["group"] == "seen"][: SAMPLE_ROWS // 2] + \
        [r for r in chosen if r["group"] == "held-out"][: SAMPLE_ROWS // 2]
    if not chosen:
        return
    clips = [enlarge(read_video(out / "eval" / "generate" / "samples" / r["file"])) for r in chosen]
    labels = [f"{r['group']}: {r['prompt']}" for r in chosen]
    section = report.section("Samples")
    section.text("Text-to-video samples for prompts as a person types them (first sample of each prompt); the "
                 "generation eval report shows every sample with what the scorer read from it.")
    section.image(render_sheet(clips, max_frames=9, labels=labels), "text-to-video samples", name="samples")


def contact_sheet_for_docs(out: Path, target: Path, *, max_bytes: int = 300_000) -> Path:
    """The demo's sample sheet as a PNG small enough to commit (e.g. docs/demo.png): scaled down by
    steps of 3/4 until it is under ``max_bytes`` (colours kept exact: a palette loses the rare object hues)."""
    import io

    from PIL import Image

    from reelm.core.atomic import atomic_write

    image = Image.open(out / "report_files" / "samples.png").convert("RGB")
    while True:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
        if buffer.tell() <= max_bytes or min(image.size) < 64:
            break
        image = image.resize((image.width * 3 // 4, image.height * 3 // 4), Image.Resampling.LANCZOS)
    data = buffer.getvalue()
    return atomic_write(target, lambda tmp: tmp.write_bytes(data))
