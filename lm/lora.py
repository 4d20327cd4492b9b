"""LoRA fine-tuning of the LM through ``peft``: the config, wrapping a model, and loading a folder that holds an adapter.

The LM is a plain Hugging Face causal LM, so ``peft`` adapts it as it adapts any Llama: low-rank
matrices beside the attention (and, if asked, MLP) projections, the base weights frozen. A LoRA run
starts from a model folder (``init_from``, which a LoRA run needs) and its step folders hold the
adapter as ``peft`` saves it (``adapter_config.json`` + ``adapter_model.safetensors``, megabytes
instead of the model) beside the token layout, the video tokenizer and ``reelm.json``, whose
``lora`` entry names the base folder. :func:`reelm.lm.lm_checkpoint.load_weights` opens any LM folder: a full model
directly, an adapter folder as its base (itself possibly an adapter folder) with the adapter
merged in (:func:`attach_adapter`), so generation, evaluation and export see a plain model,
whatever was trained.

Follows: ``peft``'s ``LoraConfig`` / ``get_peft_model`` / ``PeftModel.from_pretrained``; LoRA (Hu et al., 2021).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from reelm.core.checkpoint_format import CheckpointError, META_FILE
from reelm.core.config import ConfigError

ADAPTER_CONFIG = "adapter_config.json"
META_KEY = "lora"  # reelm.json's record of an adapter folder: its base folder and the LoRA settings


@dataclass(kw_only=True)
class LoRAConfig:
    rank: int = 0  # 0: no LoRA (the whole model trains); e.g. 8 or 16
    alpha: float = 16.0  # the adapter's output is scaled by alpha / rank
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")  # add gate_proj, up_proj, down_proj for the MLP

    @property
    def enabled(self) -> bool:
        return self.rank > 0


def check_lora(cfg: LoRAConfig, *, init_from: str | None, zero_stage: int) -> None:
    """One line for a LoRA setting that cannot train."""
    if not cfg.enabled:
        if cfg.rank < 0:
            raise ConfigError(f"lora.rank={cfg.rank}: must be 0 (no LoRA) or positive")
        return
    if init_from is None:
        raise ConfigError("lora.rank > 0 adapts an existing model: give --init-from MODEL (a LoRA on random weights "
                          "learns nothing a full run would not)")
    if zero_stage == 3:
        raise ConfigError("LoRA with ZeRO-3 is not supported: its adapter is saved whole on rank 0; use ZeRO 0-2 "
                          "(the frozen base weights are small next to their optimizer state, which LoRA drops)")
    if not cfg.target_modules:
        raise ConfigError("lora.target_modules is empty: name the projections to adapt (e.g. [\"q_proj\", \"v_proj\"])")


def apply_lora(model: torch.nn.Module, cfg: LoRAConfig) -> torch.nn.Module:
    """``model`` wrapped by ``peft`` with fresh adapters (only they train); its base weights frozen."""
    from peft import LoraConfig, get_peft_model

    peft_cfg = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                          target_modules=list(cfg.target_modules), bias="none", task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, peft_cfg)
    except ValueError as exc:  # peft: a target module that is not in the model
        raise ConfigError(f"lora.target_modules {list(cfg.target_modules)}: {exc}") from None


def is_adapter_folder(folder: str | Path) -> bool:
    return (Path(folder) / ADAPTER_CONFIG).is_file()


def lora_record(base_folder: Path, cfg: LoRAConfig) -> dict:
    """What ``reelm.json`` says of an adapter folder: the (absolute) base folder and the settings."""
    return {"base": str(Path(base_folder).resolve()), "rank": cfg.rank, "alpha": cfg.alpha, "dropout": cfg.dropout,
            "target_modules": list(cfg.target_modules)}


def base_folder(folder: Path, meta: dict) -> Path:
    """The base model folder an adapter folder was trained on; a clear line if it has moved."""
    record = meta.get(META_KEY) or {}
    base = Path(record.get("base", ""))
    if not record.get("base") or not (base / META_FILE).is_file():
        raise CheckpointError(f"{folder}: holds a LoRA adapter whose base model {record.get('base', '(not recorded)')} "
                              "is not there; put the base folder back, or export a merged model ('reelm lm export') "
                              "while it is")
    return base


def attach_adapter(base: torch.nn.Module, folder: Path, *, trainable: bool = False) -> torch.nn.Module:
    """``base`` with the adapter of ``folder`` on top: merged into a plain model, or (``trainable``, to resume a
    LoRA run) left as the ``peft`` model whose adapter trains on."""
    from peft import PeftModel

    try:
        model = PeftModel.from_pretrained(base, folder, is_trainable=trainable, local_files_only=True)
    except Exception as exc:  # peft and safetensors raise many types for a damaged adapter
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise CheckpointError(f"{folder}: cannot load the LoRA adapter ({type(exc).__name__}: {reason})") from None
    return model if trainable else model.merge_and_unload()
