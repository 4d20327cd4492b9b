"""The loss plot of an LM run: ``RUN/loss.png`` from ``RUN/metrics.jsonl``, drawn at the end of training."""

from __future__ import annotations

from pathlib import Path

from reelm.data.token_layout import TASKS
from reelm.lm.loss_meter import MODALITIES
from reelm.core.atomic import atomic_write
from reelm.core.metrics_log import read_metrics

PLOT_FILE = "loss.png"


def plot_losses(metrics_path: str | Path, out_path: str | Path) -> Path | None:
    """Train, validation and per-task train loss against step, as a PNG; None without records."""
    records = read_metrics(metrics_path)
    if not records:
        return None
    from matplotlib.figure import Figure  # no pyplot: draws with Agg, leaves the global backend alone

    fig = Figure(figsize=(12, 4.5))
    ax_all, ax_task = fig.subplots(1, 2)
    for split, style in (("train", "-"), ("val", "o-")):
        rows = [r for r in records if r["split"] == split and "loss" in r]
        if rows:
            ax_all.plot([r["step"] for r in rows], [r["loss"] for r in rows], style, label=f"{split} loss")
    for name in MODALITIES:
        rows = [r for r in records if r["split"] == "train" and f"loss/{name}" in r]
        if rows:
            ax_all.plot([r["step"] for r in rows], [r[f"loss/{name}"] for r in rows], "--", label=f"train {name}")
    for task in TASKS:
        rows = [r for r in records if r["split"] == "train" and f"loss/{task.value}" in r]
        if rows:
            ax_task.plot([r["step"] for r in rows], [r[f"loss/{task.value}"] for r in rows], label=task.value)
    for ax, title in ((ax_all, "loss"), (ax_task, "train loss per task")):
        ax.set_xlabel("step")
        ax.set_ylabel("cross-entropy (nats / target token)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    out_path = Path(out_path)
    atomic_write(out_path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    return out_path
