"""What a training run returns: the one result type of both trainers (tokenizer and LM)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass
class TrainResult:
    """Where a run stopped and what it wrote, on this rank."""

    rank: int
    step: int  # the last step trained
    checkpoint: Path | None  # the last checkpoint folder written (None where this rank wrote none)
    model: torch.nn.Module  # the trained module (the tokenizer: its EMA where kept; the LM under ZeRO-3: partitioned)
    metrics: dict  # the last logged training record ({} when nothing was logged)
