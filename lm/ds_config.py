"""DeepSpeed's JSON config: the shipped ones, and filling their ``"auto"`` values from the training config.

The shipped configs (``deepspeed_configs/zero0.json`` .. ``zero3.json``) leave every value
the training config owns as ``"auto"``; :func:`resolve_deepspeed_config` fills them in
(micro batch, gradient accumulation, global batch, clipping, ZeRO stage, precision) and
rejects a user config whose explicit values disagree with the training config, so the two can
never silently differ. This module imports no torch, so the command line can
list the shipped names in ``--help`` instantly.

Follows: the ``"auto"`` config values of transformers' DeepSpeed integration.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from reelm.core.errors import ReelmError

if TYPE_CHECKING:
    from reelm.lm.train import LMTrainConfig

SHIPPED_CONFIGS = ("zero0", "zero1", "zero2", "zero3")
AUTO = "auto"


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


def resolve_deepspeed_config(config: dict, cfg: LMTrainConfig, *, world_size: int, bf16: bool,
                             device_type: str = "cuda") -> dict:
    """``config`` with its ``"auto"`` values taken from ``cfg``; explicit values must agree with it.

    bf16 training is DeepSpeed's ``bf16`` mode on GPUs (bf16 weights, fp32 master copy in the
    optimizer) and its ``torch_autocast`` section on CPUs (fp32 weights, matmuls in bf16: the
    CPU optimizer step stays in fp32, and the saved weights are what trained).
    """
    on_gpu = device_type != "cpu"
    owned = {
        ("train_micro_batch_size_per_gpu",): cfg.micro_batch_size,
        ("gradient_accumulation_steps",): cfg.grad_accum_steps,
        ("train_batch_size",): cfg.micro_batch_size * cfg.grad_accum_steps * world_size,
        ("gradient_clipping",): cfg.grad_clip,
        ("bf16", "enabled"): bf16 and on_gpu,
        ("zero_optimization", "stage"): cfg.zero_stage,
    }
    if bf16 and not on_gpu:
        owned[("torch_autocast", "enabled")] = True
        owned[("torch_autocast", "dtype")] = "bfloat16"
    elif config.get("torch_autocast", {}).get("enabled") not in (None, False, AUTO):
        raise ReelmError("DeepSpeed config: torch_autocast.enabled is true but the training config trains in "
                         f"{'DeepSpeed bf16' if bf16 else 'fp32'} here; remove the section and set precision "
                         "with --set precision=auto|bf16|fp32")
    for section in ("optimizer", "scheduler"):
        if section in config:
            raise ReelmError(f"DeepSpeed config: remove its {section!r} section; reelm builds the {section} "
                             "from the training config (lr, warmup_steps, ...)")
    if config.get("fp16", {}).get("enabled") not in (None, False):
        raise ReelmError("DeepSpeed config: fp16 is not supported (bf16 or fp32: --set precision=auto|bf16|fp32)")
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
