"""The learning-rate schedule of every trainer: linear warm-up, then a cosine down to ``min_lr_ratio``.

Both trainers (tokenizer and LM) take it from transformers
(``get_cosine_with_min_lr_schedule_with_warmup``), so they share one definition: the factor
is ``step / warmup_steps`` during warm-up, then follows half a cosine from 1 to
``min_lr_ratio`` at ``total_steps``. Continuing a *finished* run to more steps re-plans the
schedule for the new total (:func:`replanned_message` says so in one line); the trainers
record every plan in their checkpoints.

Follows: the warm-up + cosine schedule of GPT-3 / LLaMA training as implemented in transformers.
"""

from __future__ import annotations

import torch


def warmup_cosine(optimizer: torch.optim.Optimizer, *, warmup_steps: int, total_steps: int,
                  min_lr_ratio: float) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` stepping once per optimizer step over ``total_steps`` steps."""
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    return get_cosine_with_min_lr_schedule_with_warmup(
        optimizer, num_warmup_steps=warmup_steps, num_training_steps=total_steps, min_lr_rate=min_lr_ratio
    )


def replanned_message(what: str, step: int, old_total: int, new_total: int, lr: float) -> str:
    """The one line a trainer prints when a finished run is continued to more steps."""
    return (f"{what}: continuing a finished run from step {step} (planned for {old_total}) to {new_total}: "
            f"the learning-rate schedule is re-planned for {new_total} steps (lr now {lr:.3g})")
