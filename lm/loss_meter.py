"""Per-token training losses and their running means per group: overall, per modality, per task.

Losses are sums over target tokens, kept on the device and reduced across ranks only when
read, so a logged loss is the mean over every target token of every rank. Targets are split
by modality (video codes vs text ids; end markers count in the total only) and by the task
of their document (the token layout's task order).

Follows: nanoGPT's loss estimation; VideoPoet's per-task pretraining losses.
"""

from __future__ import annotations

import numpy as np
import torch

from reelm.data.token_layout import IGNORE_INDEX, TASKS, TokenLayout

MODALITIES = ("text", "video")
GROUPS = ("all",) + MODALITIES + tuple(task.value for task in TASKS)


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

    def merge(self, other: LossMeter) -> None:
        """Add the sums and counts of ``other`` (a step's own meter, kept only if the step was applied)."""
        self.sums += other.sums
        self.counts += other.counts

    def local_mean(self) -> float:
        """This rank's mean loss over all targets so far (no collective; NaN when there are none)."""
        count = float(self.counts[0])
        return float(self.sums[0]) / count if count else float("nan")

    def reduce(self) -> dict[str, float]:
        """Mean loss per group over every rank (collective), then reset. Groups without targets are left out."""
        totals = torch.stack([self.sums, self.counts])
        if torch.distributed.is_initialized():
            torch.distributed.all_reduce(totals)
        sums, counts = totals.tolist()
        self.sums.zero_()
        self.counts.zero_()
        return {("loss" if name == "all" else f"loss/{name}"): s / c for name, s, c in zip(GROUPS, sums, counts) if c}
