"""The DeepSpeed engine of LM training: reelm's optimizer and schedule, wrapped for ZeRO.

reelm owns the optimizer (AdamW, no decay on norms) and the schedule (linear warm-up,
cosine to ``min_lr_ratio``, from transformers); DeepSpeed wraps the optimizer for ZeRO
stage 0-3 and steps the schedule at each gradient-accumulation boundary. The process group
comes from :mod:`reelm.core.distributed`, the resolved JSON config from :mod:`reelm.lm.ds_config`.

Follows: ZeRO (Rajbhandari et al., 2020) through DeepSpeed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from reelm.lm.train import LMTrainConfig


class AdamW(torch.optim.AdamW):
    """``torch.optim.AdamW`` that skips a step whose gradients hold NaN/Inf (weights and moments untouched).

    It says so in ``overflow``, the attribute DeepSpeed's engine reads to count a skipped step
    and hold the schedule back, as its ZeRO 1-3 optimizers do on their own; this makes ZeRO 0
    (where the engine steps this optimizer directly) skip the same way. ZeRO 1-3 get the plain
    class: DeepSpeed refuses optimizer types it has not tested there.
    """

    overflow = False

    def step(self, closure=None):
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        self.overflow = bool(grads) and not bool(torch.isfinite(torch.nn.utils.get_total_norm(grads)))
        if self.overflow:
            return None
        return super().step(closure)


def build_optimizer(model: torch.nn.Module, cfg: LMTrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices (and the embedding), none on norms; non-finite steps skipped.

    PyTorch's fused kernel where the parameters allow it (CPU or CUDA floats): on the reference
    CPU it stepped 49M parameters in 30 ms against 90 ms for the default loop.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [group for group in groups if group["params"]]  # LoRA trains matrices only; ZeRO drops empty groups
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    kind = AdamW if cfg.zero_stage == 0 else torch.optim.AdamW
    return kind(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, fused=fused)


def restore_torch_linear() -> None:
    """Undo ZeRO-3's process-wide swap of ``torch.nn.functional.linear`` for its memory-efficient version.

    DeepSpeed makes the swap when a stage-3 engine is built and leaves it in place ("persists unless
    manually reset"): after a ZeRO-3 training, every later ``F.linear`` in the process (a notebook,
    the tests) went through DeepSpeed's autograd function, and ``torch.jit`` could not save a
    module that calls it. The original is where DeepSpeed keeps it, as its own compile path restores it.
    """
    import sys

    patched = sys.modules.get("deepspeed.runtime.zero.partition_parameters")
    original = getattr(getattr(patched, "InsertPostInitMethodToModuleSubClasses", None), "linear_bk", None)
    if original is not None:
        torch.nn.functional.linear = original


def build_engine(model: torch.nn.Module, cfg: LMTrainConfig, ds_config: dict):
    """``(engine, scheduler)``: the model wrapped by DeepSpeed with reelm's optimizer and schedule."""
    import deepspeed
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    optimizer = build_optimizer(model, cfg)
    scheduler = get_cosine_with_min_lr_schedule_with_warmup(
        optimizer, num_warmup_steps=cfg.warmup_steps, num_training_steps=cfg.steps, min_lr_rate=cfg.min_lr_ratio
    )
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config)
    skip_single_rank_allreduce(engine)
    record_grad_norm(engine)
    return engine, scheduler


def record_grad_norm(engine) -> bool:
    """Under ZeRO 0, keep the gradient norm DeepSpeed's clipping computes, so ``get_global_grad_norm()``
    reports it (the norm before clipping) as ZeRO 1-3's optimizers do; DeepSpeed's own ZeRO-0 path
    computes it and drops it, so the training log had no ``grad_norm``. Returns whether it was set up.
    """
    if engine.zero_optimization_stage() != 0 or engine.gradient_clipping() <= 0:
        return False
    from deepspeed.runtime.utils import clip_grad_norm_

    def clip_fp32_gradients():  # DeepSpeed's, keeping the norm where the engine reads it after the step
        engine.optimizer._global_grad_norm = clip_grad_norm_(parameters=engine.module.parameters(),
                                                             max_norm=engine.gradient_clipping(), mpu=engine.mpu)

    engine.clip_fp32_gradients = clip_fp32_gradients
    return True


def skip_single_rank_allreduce(engine) -> bool:
    """Turn off the engine's gradient all-reduce where it has nothing to reduce: one rank, ZeRO 0.

    There DeepSpeed still flattens every gradient into one buffer, all-reduces it over the one
    rank, scales it by 1/1 and copies it back after each backward (``allreduce_gradients``). Without
    it a bf16 ``small`` step on the reference CPU ran 5 % faster, 0.945x -> 0.992x the bare loop
    (BENCHMARKS.md, "DeepSpeed in bf16 against the bare loop"). The gradients are the same
    without it. ZeRO 1 to 3 gather their partitioned gradients through the same call or inside
    their optimizers, and are left as they are.
    Returns whether it was turned off.
    """
    if engine.zero_optimization_stage() != 0 or engine.dp_world_size != 1 or not engine.enable_backward_allreduce:
        return False
    engine.enable_backward_allreduce = False
    return True
