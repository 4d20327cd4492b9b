"""The DeepSpeed side of LM training: the process group, the resolved DeepSpeed config, the engine.

One process per device. Launched bare (``reelm lm train``) the process makes a 1-process
group itself; under ``deepspeed``, ``torchrun`` or a hostfile it joins the group the
launcher describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR/PORT``). The
backend is NCCL on GPUs and gloo on CPUs.

The shipped configs (``deepspeed_configs/zero0.json`` .. ``zero3.json``) leave every value
the training config owns as ``"auto"``; :func:`resolve_deepspeed_config` fills them in
(micro batch, gradient accumulation, global batch, clipping, bf16 on GPUs / fp32 on CPUs)
and rejects a user config whose explicit values disagree with the training config, so
the two can never silently differ. reelm owns the optimizer (AdamW, no decay on norms)
and the schedule (linear warm-up, cosine to ``min_lr_ratio``); DeepSpeed wraps the
optimizer for ZeRO and steps the schedule at each gradient-accumulation boundary.

Follows: ZeRO (Rajbhandari et al., 2020) through DeepSpeed; the ``"auto"`` config values
of transformers' DeepSpeed integration.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from reelm.errors import ReelmError

if TYPE_CHECKING:
    from reelm.lm.train import TrainConfig

SHIPPED_CONFIGS = ("zero0", "zero1", "zero2", "zero3")
AUTO = "auto"


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device


def init_distributed() -> DistInfo:
    """Join (or, launched bare, make) the process group and pick this rank's device."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
    os.environ.setdefault("LOCAL_RANK", "0")
    local_rank = int(os.environ["LOCAL_RANK"])
    if torch.cuda.is_available():
        device, backend = torch.device("cuda", local_rank), "nccl"
        torch.cuda.set_device(device)
    else:
        device, backend = torch.device("cpu"), "gloo"
        local_procs = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("LOCAL_SIZE", "1")))
        if "OMP_NUM_THREADS" not in os.environ and local_procs > 1:
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_procs))
    import deepspeed

    deepspeed.init_distributed(dist_backend=backend, verbose=False)
    return DistInfo(torch.distributed.get_rank(), torch.distributed.get_world_size(), local_rank, device)


def shutdown_distributed() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def load_deepspeed_config(name_or_path: str) -> dict:
    """A shipped config by name (``zero0`` .. ``zero3``) or a DeepSpeed JSON file."""
    if name_or_path in SHIPPED_CONFIGS:
        text = resources.files("reelm.lm").joinpath("deepspeed_configs", f"{name_or_path}.json").read_text()
        return json.loads(text)
    path = Path(name_or_path)
    if not path.is_file():
        raise ReelmError(f"--deepspeed-config {name_or_path}: neither one of {list(SHIPPED_CONFIGS)} nor a file")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ReelmError(f"--deepspeed-config {path}: not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise ReelmError(f"--deepspeed-config {path}: expected a JSON object")
    return config


def config_zero_stage(config: dict) -> int | None:
    """The ZeRO stage a DeepSpeed config names, or None when it leaves it ``"auto"``."""
    stage = config.get("zero_optimization", {}).get("stage", 0)
    return None if stage == AUTO else int(stage)


def resolve_deepspeed_config(config: dict, cfg: TrainConfig, *, world_size: int, bf16: bool) -> dict:
    """``config`` with its ``"auto"`` values taken from ``cfg``; explicit values must agree with it."""
    owned = {
        ("train_micro_batch_size_per_gpu",): cfg.micro_batch_size,
        ("gradient_accumulation_steps",): cfg.grad_accum_steps,
        ("train_batch_size",): cfg.micro_batch_size * cfg.grad_accum_steps * world_size,
        ("gradient_clipping",): cfg.grad_clip,
        ("bf16", "enabled"): bf16,
        ("zero_optimization", "stage"): cfg.zero_stage,
    }
    for section in ("optimizer", "scheduler"):
        if section in config:
            raise ReelmError(f"DeepSpeed config: remove its {section!r} section; reelm builds the {section} "
                             "from the training config (lr, warmup_steps, ...)")
    if config.get("fp16", {}).get("enabled") not in (None, False):
        raise ReelmError("DeepSpeed config: fp16 is not supported (bf16 on GPUs, fp32 on CPUs)")
    if config.get("zero_optimization", {}).get("elastic_checkpoint"):
        raise ReelmError("DeepSpeed config: zero_optimization.elastic_checkpoint is not supported")
    resolved = json.loads(json.dumps(config))
    for keys, value in owned.items():
        node = resolved
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        given = node.get(keys[-1], AUTO)
        if given != AUTO and given != value:
            raise ReelmError(f"DeepSpeed config: {'.'.join(keys)} is {given!r} but the training config gives "
                             f"{value!r}; set it to \"auto\" or change the training config with --set")
        node[keys[-1]] = value
    leftover = [key for key, value in _walk(resolved) if value == AUTO]
    if leftover:
        raise ReelmError(f"DeepSpeed config: reelm fills no \"auto\" for {leftover}")
    return resolved


def _walk(node: dict, prefix: str = ""):
    for key, value in node.items():
        if isinstance(value, dict):
            yield from _walk(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


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
