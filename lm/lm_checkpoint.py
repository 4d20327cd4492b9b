"""LM checkpoints: a model folder that stands alone (Hugging Face files, token layout, video tokenizer,
clip spec) and is also a reelm step folder with the trainer state.

Every ``RUN/step-000123/`` is a complete export, loadable on its own (copied anywhere)::

    reelm.json               kind "lm", the LMConfig, the clip spec (fps, frames, size, crop) of the
                             data, training and DeepSpeed settings, world size, schedule plans
    config.json              Hugging Face model config, written from reelm.json's LMConfig and the
                             layout's vocabulary, and checked against them on load
    model.safetensors        weights: AutoModelForCausalLM.from_pretrained(folder)
                             (a LoRA run writes adapter_config.json + adapter_model.safetensors
                             instead, its base folder named in reelm.json; see reelm.lm.lora)
    generation_config.json
    tokenizer.json           text + special tokens: PreTrainedTokenizerFast.from_pretrained(folder)
    tokenizer_config.json
    token_layout.json        the id plan and the identity of the video tokenizer: TokenLayout.load(folder)
    video_tokenizer/         the video tokenizer the codes came from (its model.safetensors + reelm.json),
                             checked against token_layout.json's identity on load
    trainer_state.*          step and LR schedule (.json + .safetensors, as every state file)
    trainer-rankNNNNN.*      per rank: data position and RNG
    optimizer-rankNNNNN.*    per rank: DeepSpeed's optimizer state (ZeRO partition: fp32 master
                             weights and Adam moments)

Each fact has one home: the model shape in reelm.json (config.json is its Hugging Face copy),
the vocabulary and tokenizer identity in token_layout.json, the clip spec in reelm.json. This
module never imports the video tokenizer (``reelm.lm`` handles token ids only): it copies its
files and compares identities as JSON; the generation pipeline above both loads it.

Under DeepSpeed every rank writes its own files into the staging folder, rank 0 writes the
model (gathered from the ZeRO-3 partitions with ``deepspeed.zero.GatheredParameters``)
and, after a barrier, ``reelm.json`` and the commit; a killed job leaves only a hidden
staging folder, which resume never reads. The optimizer state is DeepSpeed's own
``state_dict`` minus its two Python objects (the loss scaler, unused without fp16, and
the parameter-name-to-slice map, which only universal checkpoints need), stored as
JSON + safetensors; it loads back through the optimizer's ``load_state_dict`` with the
fp32 master weights, so a resumed run continues bit for bit. Resuming needs the same
world size and ZeRO stage: each rank reads only its own partition.

Checkpoints written before reelm 0.2 (a ``reelm`` entry in config.json, no ``video_tokenizer/``)
still load; generation then asks for ``--video-tokenizer`` with a message saying why.

Follows: nanochat's checkpoint_manager (model / meta / per-rank optimizer files) and the
Hugging Face ``save_pretrained`` folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM

from reelm.core.checkpoint_format import (
    META_FILE,
    CheckpointError,
    commit,
    load_state,
    read_meta,
    resolve_checkpoint,
    save_failed,
    save_state,
    staging_dir,
    step_dir_name,
    write_meta,
)
from reelm.core.config import from_dict, to_dict
from reelm.data.token_layout import LayoutError, TokenLayout
from reelm.core.distributed import any_rank
from reelm.core.tokenizer_identity import identity_from_meta
from reelm.lm.lora import attach_adapter, base_folder, is_adapter_folder
from reelm.lm.model import LMConfig, hf_config, layout_grid, select_attention
from reelm.core.weights import local_folder

KIND = "lm"
TRAINER_STATE = "trainer_state"
VIDEO_TOKENIZER_DIR = "video_tokenizer"
UNSTORED_OPTIMIZER_KEYS = ("loss_scaler", "param_slice_mappings")
HF_SHAPE_KEYS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                 "num_key_value_heads", "tie_word_embeddings")
VIDEO_GRID_KEYS = ("code_offset", "codebook_size", "latent_hw", "max_latent_frames")


def rank_file(name: str, rank: int) -> str:
    return f"{name}-rank{rank:05d}"


def write_model_files(folder: Path, model, layout: TokenLayout, *, video_tokenizer: Path | None = None) -> None:
    """The Hugging Face files (safetensors only), the token layout and the video tokenizer, whole on this process."""
    if hasattr(model.config, "reelm"):  # a model loaded from a pre-0.2 checkpoint: that copy is not written again
        del model.config.reelm
    model.save_pretrained(folder)
    layout.save(folder)
    if video_tokenizer is not None:
        copy_video_tokenizer(video_tokenizer, folder / VIDEO_TOKENIZER_DIR)


def copy_video_tokenizer(source: str | Path, target: Path) -> Path:
    """The files of a video tokenizer checkpoint folder into ``target`` (hard links where the disk allows)."""
    source = Path(source)
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.iterdir()):
        if path.is_file():
            try:
                os.link(path, target / path.name)
            except OSError:
                shutil.copy2(path, target / path.name)
    return target


def export_lm(folder: str | Path, model, layout: TokenLayout, lm_cfg: LMConfig, *,
              video_tokenizer: str | Path | None = None, clip: dict | None = None, **metadata: Any) -> Path:
    """A single-process export of a whole (not ZeRO-partitioned) model: the files above, without trainer state."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_model_files(folder, model, layout, video_tokenizer=Path(video_tokenizer) if video_tokenizer else None)
    write_meta(folder, KIND, to_dict(lm_cfg), clip=clip, **metadata)
    return folder


def load_lm(path: str | Path, *, device: torch.device | str = "cpu", dtype: torch.dtype | None = None,
            attn_implementation: str | None = None):
    """``(model, layout, meta)`` from a checkpoint folder or a run folder (its latest checkpoint).

    The attention backend is chosen for ``device`` (a checkpoint never forces flash-attention);
    ``dtype`` defaults to the dtype the weights were saved in. config.json is checked against
    reelm.json's LMConfig and the layout's vocabulary.
    """
    folder, meta, layout = read_lm_folder(path)
    model = build_lm(folder, meta, layout, device=device, dtype=dtype, attn_implementation=attn_implementation)
    return model, layout, meta


def read_lm_folder(path: str | Path) -> tuple[Path, dict, TokenLayout]:
    """``(step folder, reelm.json, token layout)`` of a checkpoint folder or a run folder's latest: no weights read."""
    folder = resolve_checkpoint(path)
    return folder, read_meta(folder, KIND), TokenLayout.load(folder)


def build_lm(folder: Path, meta: dict, layout: TokenLayout, *, device: torch.device | str = "cpu",
             dtype: torch.dtype | None = None, attn_implementation: str | None = None):
    """The Hugging Face model of a folder read by :func:`read_lm_folder`, in eval mode, its config.json checked."""
    model = load_weights(folder, meta, dtype=dtype or "auto",
                         attn_implementation=attn_implementation or select_attention(device)).to(device)
    check_hf_config(folder, model.config, from_dict(LMConfig, meta["config"], where=f"{folder}/{META_FILE} config"),
                    layout)
    return model.eval()


def load_weights(folder: Path, meta: dict, *, trainable: bool = False, **kwargs):
    """The model of an LM folder: :func:`load_hf_model` for a full one; for a LoRA adapter folder
    (:mod:`reelm.lm.lora`) its base folder's model (recursively) with the adapter merged in, or, with
    ``trainable`` (resuming a LoRA run), the ``peft`` model whose adapter trains on."""
    if not is_adapter_folder(folder):
        return load_hf_model(folder, **kwargs)
    base = base_folder(folder, meta)
    return attach_adapter(load_weights(base, read_meta(base, KIND), **kwargs), folder, trainable=trainable)


def load_hf_model(folder: str | Path, **kwargs):
    """``AutoModelForCausalLM.from_pretrained(folder, **kwargs)``, a damaged or foreign folder as one
    :class:`CheckpointError` line (safetensors weights only: a pickle in their place is refused, never run).
    Local folders only (:func:`reelm.core.weights.local_folder`): a Hub repo id is refused, never looked up."""
    local_folder(folder, error=CheckpointError)
    try:
        return AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True, local_files_only=True, **kwargs)
    except Exception as exc:  # transformers and safetensors raise many types for a damaged folder
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise CheckpointError(f"{folder}: cannot load the model ({type(exc).__name__}: {reason}); use an intact "
                              "checkpoint folder (an earlier step of the run)") from None


def check_hf_config(folder: Path, config, lm_cfg: LMConfig, layout: TokenLayout) -> None:
    """Raise unless config.json is the Hugging Face copy of ``lm_cfg`` over ``layout``'s vocabulary."""
    want = hf_config(lm_cfg, layout.vocab_size, bos_id=layout.bos_id, eos_id=layout.eos_id, pad_id=layout.pad_id,
                     grid=layout_grid(layout))
    keys = HF_SHAPE_KEYS + (VIDEO_GRID_KEYS if lm_cfg.video_positions else ())
    differ = [f"{key} {getattr(config, key, None)!r} (reelm.json and the layout give {getattr(want, key)!r})"
              for key in ("model_type",) + keys if getattr(config, key, None) != getattr(want, key)]
    if differ:
        raise CheckpointError(f"{folder}/config.json disagrees with {META_FILE}: {', '.join(differ)}")


def video_tokenizer_dir(folder: str | Path, layout: TokenLayout) -> Path:
    """The model folder's ``video_tokenizer/``, its identity checked against the layout's; a clear error otherwise."""
    folder = Path(folder)
    found = folder / VIDEO_TOKENIZER_DIR
    if not (found / META_FILE).is_file():
        raise CheckpointError(f"{folder}: holds no video tokenizer (models trained before reelm 0.2 do not); "
                              "pass --video-tokenizer DIR with the tokenizer its shards were made with")
    check_video_tokenizer_identity(found, layout, source=str(found))
    return found


def check_video_tokenizer_identity(tokenizer_dir: str | Path, layout: TokenLayout, *, source: str) -> None:
    """Raise unless the video tokenizer checkpoint in ``tokenizer_dir`` is the one ``layout`` was built for."""
    meta = read_meta(resolve_checkpoint(tokenizer_dir), "video_tokenizer")
    try:
        layout.check_video_tokenizer(identity_from_meta(meta))
    except LayoutError as exc:
        raise CheckpointError(f"{source}: not the video tokenizer this model was trained on ({exc}); leave "
                              "--video-tokenizer out to use the model folder's own") from None


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
                             video_tokenizer: Path | None, trainer_state: dict, rank_state: dict, metadata: dict,
                             keep_last: int | None) -> Path:
    """Stage, write (every rank its own files), agree, commit on rank 0. Collective: call on every rank.

    A write that fails on any rank (a full disk) fails on every rank with one :class:`CheckpointError`
    line, the staging folder removed and the previous checkpoints untouched.
    """
    dist = torch.distributed
    rank = dist.get_rank()
    staged = staging_dir(run_dir, step)
    if rank == 0:
        shutil.rmtree(staged, ignore_errors=True)
        staged.mkdir(parents=True)
    dist.barrier()
    failure = None
    try:
        with _whole_parameters(engine):
            if rank == 0:
                write_model_files(staged, engine.module, layout, video_tokenizer=video_tokenizer)
        save_state(staged, rank_file("optimizer", rank), optimizer_state(engine))
        save_state(staged, rank_file("trainer", rank), rank_state)
        if rank == 0:
            save_state(staged, TRAINER_STATE, trainer_state)
    except Exception as exc:
        failure = exc
    _raise_if_failed(failure, run_dir, step, engine.device)
    if rank == 0:
        try:
            write_meta(staged, KIND, to_dict(lm_cfg), **metadata)
            commit(run_dir, step, keep_last=keep_last)
        except Exception as exc:
            failure = exc
    _raise_if_failed(failure, run_dir, step, engine.device)
    return Path(run_dir) / step_dir_name(step)


def _raise_if_failed(failure: Exception | None, run_dir: str | Path, step: int, device) -> None:
    """On every rank, once every rank is here: the save's error if any rank failed (staging removed)."""
    if not any_rank(failure is not None, device):
        return
    if torch.distributed.get_rank() == 0:
        shutil.rmtree(staging_dir(run_dir, step), ignore_errors=True)
    raise save_failed(run_dir, step, failure or CheckpointError("another rank could not write its files"))


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
