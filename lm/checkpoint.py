"""LM checkpoints: a Hugging Face model folder that is also a reelm step folder with trainer state.

Every ``RUN/step-000123/`` is a complete export, loadable on its own::

    config.json              Hugging Face model config; its ``reelm`` entry names the video
                             tokenizer, codebook size, latent grid, LMConfig and token layout
    model.safetensors        weights: AutoModelForCausalLM.from_pretrained(folder)
    generation_config.json
    tokenizer.json           text + special tokens: PreTrainedTokenizerFast.from_pretrained(folder)
    tokenizer_config.json
    token_layout.json        the id plan: TokenLayout.load(folder)
    reelm.json               kind "lm", the LMConfig, training and DeepSpeed configs, world size, data
    trainer_state.*          step and LR schedule (.json + .safetensors, as every state file)
    trainer-rankNNNNN.*      per rank: data position and RNG
    optimizer-rankNNNNN.*    per rank: DeepSpeed's optimizer state (ZeRO partition: fp32 master
                             weights and Adam moments)

Under DeepSpeed every rank writes its own files into the staging folder, rank 0 writes the
model (gathered from the ZeRO-3 partitions with ``deepspeed.zero.GatheredParameters``)
and, after a barrier, ``reelm.json`` and the commit; a killed job leaves only a hidden
staging folder, which resume never reads. The optimizer state is DeepSpeed's own
``state_dict`` minus its two Python objects (the loss scaler, unused without fp16, and
the parameter-name-to-slice map, which only universal checkpoints need), stored as
JSON + safetensors; it loads back through the optimizer's ``load_state_dict`` with the
fp32 master weights, so a resumed run continues bit for bit. Resuming needs the same
world size and ZeRO stage: each rank reads only its own partition.

Follows: nanochat's checkpoint_manager (model / meta / per-rank optimizer files) and the
Hugging Face ``save_pretrained`` folder.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM

from reelm.checkpoint import (
    commit,
    load_state,
    read_meta,
    resolve_checkpoint,
    save_state,
    staging_dir,
    step_dir_name,
    write_meta,
)
from reelm.config import to_dict
from reelm.data.token_layout import TokenLayout
from reelm.errors import ReelmError
from reelm.lm.model import LMConfig, select_attention

KIND = "lm"
TRAINER_STATE = "trainer_state"
UNSTORED_OPTIMIZER_KEYS = ("loss_scaler", "param_slice_mappings")


def rank_file(name: str, rank: int) -> str:
    return f"{name}-rank{rank:05d}"


def reelm_metadata(layout: TokenLayout, lm_cfg: LMConfig) -> dict[str, Any]:
    """What later stages need to use the model without extra flags (kept in config.json as ``reelm``)."""
    return {
        "video_tokenizer": dict(layout.video_tokenizer),
        "codebook_size": layout.codebook_size,
        "latent_hw": list(layout.latent_hw),
        "lm": to_dict(lm_cfg),
        "layout": layout.to_dict(),
    }


def write_model_files(folder: Path, model, layout: TokenLayout, lm_cfg: LMConfig) -> None:
    """The Hugging Face files (safetensors only) and the token layout of ``model``, whole on this process."""
    model.config.reelm = reelm_metadata(layout, lm_cfg)
    model.save_pretrained(folder)
    layout.save(folder)


def export_lm(folder: str | Path, model, layout: TokenLayout, lm_cfg: LMConfig, **metadata: Any) -> Path:
    """A single-process export of a whole (not ZeRO-partitioned) model: HF files + layout + ``reelm.json``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_model_files(folder, model, layout, lm_cfg)
    write_meta(folder, KIND, to_dict(lm_cfg), **metadata)
    return folder


def load_lm(path: str | Path, *, device: torch.device | str = "cpu", dtype: torch.dtype | None = None,
            attn_implementation: str | None = None):
    """``(model, layout, meta)`` from a checkpoint folder or a run folder (its latest checkpoint).

    The attention backend is chosen for ``device`` (a checkpoint never forces flash-attention);
    ``dtype`` defaults to the dtype the weights were saved in.
    """
    folder = resolve_checkpoint(path)
    meta = read_meta(folder, KIND)
    layout = TokenLayout.load(folder)
    model = AutoModelForCausalLM.from_pretrained(
        folder, dtype=dtype or "auto", attn_implementation=attn_implementation or select_attention(device)
    ).to(device)
    if model.config.vocab_size < layout.vocab_size:
        raise ReelmError(f"{folder}: the model's vocabulary ({model.config.vocab_size}) is smaller than "
                         f"the token layout's ({layout.vocab_size})")
    return model.eval(), layout, meta


# --- training checkpoints under DeepSpeed -----------------------------------------------------


def _whole_parameters(engine):
    """A context in which every rank holds the whole model (gathers ZeRO-3 partitions)."""
    if engine.zero_optimization_stage() == 3:
        import deepspeed

        return deepspeed.zero.GatheredParameters(list(engine.module.parameters()), modifier_rank=None)
    return contextlib.nullcontext()


def optimizer_state(engine) -> dict:
    """This rank's optimizer state as plain data and tensors."""
    state = engine.optimizer.state_dict()
    if engine.zero_optimization():
        state = {key: value for key, value in state.items() if key not in UNSTORED_OPTIMIZER_KEYS}
    return state


def load_optimizer_state(engine, state: dict) -> None:
    """Restore what :func:`optimizer_state` gave, fp32 master weights included."""
    if not engine.zero_optimization():
        engine.optimizer.load_state_dict(state)
        return
    state["loss_scaler"] = engine.optimizer.loss_scaler
    rank, world_size = torch.distributed.get_rank(), torch.distributed.get_world_size()
    shards: list[dict | None] = [None] * world_size  # DeepSpeed's rigid ZeRO loaders read only their own rank's
    shards[rank] = state
    engine.optimizer.load_state_dict(shards, load_optimizer_states=True, load_from_fp32_weights=True)


def save_training_checkpoint(run_dir: str | Path, step: int, engine, *, layout: TokenLayout, lm_cfg: LMConfig,
                             trainer_state: dict, rank_state: dict, metadata: dict, keep_last: int | None) -> Path:
    """Stage, write (every rank its own files), barrier, commit on rank 0. Collective: call on every rank."""
    dist = torch.distributed
    rank = dist.get_rank()
    staged = staging_dir(run_dir, step)
    if rank == 0:
        shutil.rmtree(staged, ignore_errors=True)
        staged.mkdir(parents=True)
    dist.barrier()
    with _whole_parameters(engine):
        if rank == 0:
            write_model_files(staged, engine.module, layout, lm_cfg)
    save_state(staged, rank_file("optimizer", rank), optimizer_state(engine))
    save_state(staged, rank_file("trainer", rank), rank_state)
    if rank == 0:
        save_state(staged, TRAINER_STATE, trainer_state)
    dist.barrier()
    if rank == 0:
        write_meta(staged, KIND, to_dict(lm_cfg), **metadata)
        commit(run_dir, step, keep_last=keep_last)
    dist.barrier()
    return Path(run_dir) / step_dir_name(step)


def load_training_state(folder: str | Path, engine) -> tuple[dict, dict]:
    """Restore this rank's optimizer state; return ``(trainer_state, rank_state)``."""
    rank = torch.distributed.get_rank()
    load_optimizer_state(engine, load_state(folder, rank_file("optimizer", rank)))
    return load_state(folder, TRAINER_STATE), load_state(folder, rank_file("trainer", rank))


def remove_stale_staging(run_dir: str | Path) -> list[Path]:
    """Delete the hidden folders a killed save left behind (never complete checkpoints)."""
    stale = [p for p in Path(run_dir).glob(".step-*") if p.is_dir()] if Path(run_dir).is_dir() else []
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale
