"""The DeepSpeed engine of LM training: reelm's optimizer and schedule, wrapped for ZeRO.

reelm owns the optimizer (AdamW, no decay on norms) and the schedule (linear warm-up,
cosine to ``min_lr_ratio``, from transformers); DeepSpeed wraps the optimizer for ZeRO
stage 0-3 and steps the schedule at each gradient-accumulation boundary. The process group
comes from :mod:`reelm.distributed`, the resolved JSON config from :mod:`reelm.lm.ds_config`.

Follows: ZeRO (Rajbhandari et al., 2020) through DeepSpeed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from reelm.lm.train import TrainConfig


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices (and the embedding), none on norms.

    PyTorch's fused kernel where the parameters allow it (CPU or CUDA floats): on the reference
    CPU it stepped 49M parameters in 30 ms against 90 ms for the default loop.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, fused=fused)


def build_engine(model: torch.nn.Module, cfg: TrainConfig, ds_config: dict):
    """``(engine, scheduler)``: the model wrapped by DeepSpeed with reelm's optimizer and schedule."""
    import deepspeed
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    optimizer = build_optimizer(model, cfg)
    scheduler = get_cosine_with_min_lr_schedule_with_warmup(
        optimizer, num_warmup_steps=cfg.warmup_steps, num_training_steps=cfg.steps, min_lr_rate=cfg.min_lr_ratio
    )
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config)
    return engine, scheduler
