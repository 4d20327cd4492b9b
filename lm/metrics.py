"""Training metrics: per-task and per-modality losses, throughput and MFU, the metrics log and its plot.

Losses are sums over target tokens, kept on the device and reduced across ranks only when
logged, so the logged loss of a window is the mean over every target token of every rank.
Targets are split by modality (video codes vs text ids; end markers count in the total
only) and by the task of their document. Model FLOPs utilisation is model FLOPs per
second (:func:`reelm.lm.model.flops_per_token` times tokens per second) over the peak,
which :func:`measure_peak_flops` measures as large matmuls on the training device.

The log is ``RUN/metrics.jsonl`` (one JSON record per line, ``split`` "train" or "val"),
mirrored to TensorBoard when asked, and drawn to ``RUN/loss.png`` at the end of a run.

Follows: PaLM appendix B (MFU); nanoGPT's train-loop logging.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from reelm.data.lm_data import TASKS
from reelm.data.packing import IGNORE_INDEX
from reelm.data.token_layout import TokenLayout
from reelm.errors import ReelmError

MODALITIES = ("text", "video")
GROUPS = ("all",) + MODALITIES + tuple(task.value for task in TASKS)
METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "loss.png"


def shift_left(x: torch.Tensor, fill: int) -> torch.Tensor:
    """``x[:, 1:]`` padded with ``fill`` to ``(B, L)``: what each position predicts, aligned with the logits."""
    return torch.nn.functional.pad(x[:, 1:], (0, 1), value=fill)


def target_modality(targets: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    """``(B, L)`` int64: 1 where the target is a video code, 0 a text id, -1 anything else."""
    ids = targets.numpy()
    modality = np.where(layout.is_code(ids), 1, np.where(layout.is_text(ids), 0, -1))
    return torch.from_numpy(modality.astype(np.int64))


def token_losses(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``(B, L)`` cross-entropy of each position's target, 0 where it is ``IGNORE_INDEX``."""
    return torch.nn.functional.cross_entropy(
        logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="none"
    ).view(targets.shape)


class LossMeter:
    """Running loss sums and target counts per group (all, text, video, each task)."""

    def __init__(self, device: torch.device | str):
        self.sums = torch.zeros(len(GROUPS), dtype=torch.float64, device=device)
        self.counts = torch.zeros(len(GROUPS), dtype=torch.float64, device=device)

    def add(self, losses: torch.Tensor, batch: dict[str, torch.Tensor]) -> None:
        """Count the ``(B, L)`` losses of a prepared micro-batch (``targets``, ``target_modality``, ``target_task``)."""
        losses = losses.detach().flatten().double()  # 0 where ignored
        valid = (batch["targets"] != IGNORE_INDEX).flatten()
        self.sums[0] += losses.sum()
        self.counts[0] += valid.sum()
        offset = 1
        for key, width in (("target_modality", len(MODALITIES)), ("target_task", len(TASKS))):
            group = batch[key].flatten()
            group = torch.where(valid & (group >= 0), group, width)  # bin `width` collects the rest
            self.sums[offset:offset + width] += torch.bincount(group, weights=losses, minlength=width + 1)[:width]
            self.counts[offset:offset + width] += torch.bincount(group, minlength=width + 1)[:width]
            offset += width

    def reduce(self) -> dict[str, float]:
        """Mean loss per group over every rank (collective), then reset. Groups without targets are left out."""
        totals = torch.stack([self.sums, self.counts])
        if torch.distributed.is_initialized():
            torch.distributed.all_reduce(totals)
        sums, counts = totals.tolist()
        self.sums.zero_()
        self.counts.zero_()
        return {("loss" if name == "all" else f"loss/{name}"): s / c for name, s, c in zip(GROUPS, sums, counts) if c}


class MetricsLog:
    """``RUN/metrics.jsonl`` (and TensorBoard scalars) on rank 0; a no-op elsewhere."""

    def __init__(self, run_dir: str | Path, *, enabled: bool, tensorboard: bool = False):
        self.path = Path(run_dir) / METRICS_FILE
        self.enabled = enabled
        self.writer = None
        if tensorboard:  # checked on every rank, so all of them stop together
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ReelmError("--tensorboard needs the tensorboard package (pip install tensorboard)") from None
            if enabled:
                self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def truncate_after(self, step: int) -> None:
        """Forget records past ``step`` (a resumed run logs them again)."""
        if self.enabled and self.path.is_file():
            kept = [line for line in self.path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
            self.path.write_text("".join(line + "\n" for line in kept))

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if key not in ("step", "split") and isinstance(value, (int, float)):
                    self.writer.add_scalar(f"{record['split']}/{key}", value, record["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(path: str | Path) -> list[dict]:
    path = Path(path)
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path.is_file() else []


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
    fig.savefig(out_path, dpi=100)
    return out_path


def measure_peak_flops(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, *,
                       size: int | None = None, repeats: int = 5) -> float:
    """FLOP/s of large square matmuls on ``device`` (all its threads), the median of ``repeats`` timings."""
    device = torch.device(device)
    size = size or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    out = torch.empty(size, size, device=device, dtype=dtype)
    timings = []
    for i in range(repeats + 1):
        _synchronize(device)
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        _synchronize(device)
        if i:  # the first one warms up
            timings.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(timings)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
