"""LM pretraining under DeepSpeed: the training config and the loop, read top to bottom in :func:`train`.

One step takes ``grad_accum_steps`` micro-batches of packed blocks per rank from the task
mixture (:mod:`reelm.data.lm_data`), runs forward / backward through the DeepSpeed engine
(ZeRO stage 0-3, gradient clipping, optional activation checkpointing) and steps AdamW and
the warm-up + cosine schedule. Every ``log_every`` steps the loss (overall, per modality,
per task), tokens/s and MFU go to the progress bar and ``RUN/metrics.jsonl``; every
``val_every`` steps the held-out loss too; every ``checkpoint_every`` steps (and at the
end) a step folder that is also the exported model (:mod:`reelm.lm.checkpoint`).

``resume=True`` continues from the latest complete checkpoint exactly: same weights,
optimizer moments, LR, data position and RNG, so 5 + 5 steps give the weights of 10. The
run's configs (model, training, world size, data layout) must equal the checkpoint's.

Follows: nanoGPT / nanochat's train loop; VideoPoet's multi-task pretraining mixture.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from reelm.checkpoint import capture_rng, list_checkpoints, read_meta, restore_rng
from reelm.config import apply_overrides, from_dict, to_dict
from reelm.cpu_allocator import keep_freed_memory
from reelm.data.lm_data import LoaderConfig, MixtureConfig, PackedLoader, split_indices
from reelm.data.packing import IGNORE_INDEX
from reelm.data.shards import load_shards
from reelm.data.token_layout import TokenLayout
from reelm.errors import ReelmError
from reelm.lm.checkpoint import KIND, load_training_state, remove_stale_staging, save_training_checkpoint
from reelm.distributed import init_distributed
from reelm.lm.deepspeed_setup import build_engine
from reelm.lm.ds_config import config_zero_stage, load_deepspeed_config, resolve_deepspeed_config
from reelm.lm.metrics import (
    PLOT_FILE,
    LossMeter,
    MetricsLog,
    measure_peak_flops,
    plot_losses,
    shift_left,
    target_modality,
    token_losses,
)
from reelm.lm.model import (
    LMConfig,
    build_model,
    compile_layers,
    cxx_compiler,
    flops_per_token,
    preset as lm_preset,
    select_attention,
)


@dataclass(kw_only=True)
class TrainConfig:
    steps: int = 1000
    lr: float = 3e-4
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1  # the cosine ends at lr * min_lr_ratio
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    micro_batch_size: int = 8  # blocks per micro-batch, per rank
    grad_accum_steps: int = 1
    block_size: int = 1024
    grad_clip: float = 1.0
    log_every: int = 10
    val_every: int = 50  # 0: no validation
    val_batches: int = 4  # micro-batches per rank per validation
    val_fraction: float = 0.05
    checkpoint_every: int = 50
    keep_last: int = 3  # 0: keep every checkpoint
    seed: int = 0
    zero_stage: int = 2
    activation_checkpointing: bool = False
    compile: bool | None = None  # torch.compile each decoder layer; None: see use_compile
    mixture: MixtureConfig = field(default_factory=MixtureConfig)

    def loader(self) -> LoaderConfig:
        return LoaderConfig(block_size=self.block_size, batch_size=self.micro_batch_size, seed=self.seed,
                            val_fraction=self.val_fraction, mixture=self.mixture)


@dataclass
class TrainResult:
    rank: int
    step: int
    checkpoint: Path
    model: torch.nn.Module  # the trained module (ZeRO-3: partitioned)
    metrics: dict


def resolve_configs(preset: str | None, overrides: list[str], deepspeed_config: str | None,
                    saved: dict | None = None) -> tuple[LMConfig, TrainConfig, dict]:
    """``(model config, training config, DeepSpeed config as given)`` from a preset or a checkpoint.

    ``overrides`` are ``key=value`` for the training config and ``model.key=value`` for the
    model; without a preset the checkpoint's configs are the base. A shipped DeepSpeed config
    (``zero0`` .. ``zero3``) or a file's explicit ZeRO stage sets ``zero_stage``.
    """
    if preset is None and saved is None:
        raise ReelmError("--preset is required to start a run (choose tiny, small, base or large)")
    lm_cfg = lm_preset(preset) if preset else from_dict(LMConfig, saved["config"])
    cfg = TrainConfig() if preset else from_dict(TrainConfig, saved["train"])
    lm_cfg = apply_overrides(lm_cfg, [o.removeprefix("model.") for o in overrides if o.startswith("model.")])
    cfg = apply_overrides(cfg, [o for o in overrides if not o.startswith("model.")])
    ds_raw = load_deepspeed_config(deepspeed_config or f"zero{cfg.zero_stage}")
    stage = config_zero_stage(ds_raw)
    if stage is not None:
        cfg = apply_overrides(cfg, [f"zero_stage={stage}"])
    _check(cfg, lm_cfg)
    return lm_cfg, cfg, ds_raw


def _check(cfg: TrainConfig, lm_cfg: LMConfig) -> None:
    positive = ("steps", "micro_batch_size", "grad_accum_steps", "block_size", "log_every", "checkpoint_every")
    bad = [name for name in positive if getattr(cfg, name) < 1]
    if bad:
        raise ReelmError(f"training config: {bad} must be at least 1")
    if cfg.zero_stage not in range(4):
        raise ReelmError(f"training config: zero_stage {cfg.zero_stage} is not one of 0, 1, 2, 3")
    if not isinstance(cfg.activation_checkpointing, bool):
        raise ReelmError("training config: activation_checkpointing must be true or false")
    if cfg.compile is not None and not isinstance(cfg.compile, bool):
        raise ReelmError("training config: compile must be true, false or null (null: on for CPU training)")
    if cfg.compile and cfg.zero_stage == 3:
        raise ReelmError("training config: compile=true is supported with ZeRO stages 0-2; ZeRO-3 gathers each "
                         "layer's parameters in hooks, which needs DeepSpeed's own compile support (not used yet)")
    if cfg.block_size > lm_cfg.max_position_embeddings:
        raise ReelmError(f"block_size {cfg.block_size} exceeds the model's max_position_embeddings "
                         f"{lm_cfg.max_position_embeddings}")


def use_compile(cfg: TrainConfig, device: torch.device) -> bool:
    """Whether to compile the decoder layers (:func:`reelm.lm.model.compile_layers`).

    ``compile`` true or false decides; unset (``None``) it is on for training on CPUs under
    ZeRO 0-2 when inductor finds a C++ compiler (1.05-1.11x the tokens/s at ``small`` on the
    reference CPU, BENCHMARKS.md) and off elsewhere: on GPUs it has not been measured yet.
    """
    if cfg.compile is not None:
        return cfg.compile
    return device.type == "cpu" and cfg.zero_stage != 3 and cxx_compiler() is not None


def _check_resume(saved: dict, folder: Path, lm_cfg: LMConfig, cfg: TrainConfig, world_size: int,
                  layout: TokenLayout) -> None:
    if saved["world_size"] != world_size:
        raise ReelmError(f"{folder} was trained by {saved['world_size']} processes, this run has {world_size}; "
                         "resume with the same number of processes")
    differ = _differences("model.", saved["config"], to_dict(lm_cfg)) + _differences("", saved["train"], to_dict(cfg))
    if differ:
        raise ReelmError(f"{folder} was trained with {', '.join(differ)}; resume with the same settings "
                         "or start a new --out")
    if TokenLayout.load(folder) != layout:
        raise ReelmError(f"{folder}: the data's token layout differs from the checkpoint's; resume on the same shards")


def _differences(prefix: str, saved: dict, now: dict) -> list[str]:
    out = []
    for key in sorted(set(saved) | set(now)):
        if isinstance(saved.get(key), dict) and isinstance(now.get(key), dict):
            out += _differences(f"{prefix}{key}.", saved[key], now[key])
        elif saved.get(key) != now.get(key):
            out.append(f"{prefix}{key}={saved.get(key)!r} (now {now.get(key)!r})")
    return out


def prepare_batch(batch: dict[str, torch.Tensor], layout: TokenLayout, device: torch.device) -> dict[str, torch.Tensor]:
    """A loader batch as the model sees it: ids, positions and what each position predicts, on ``device``."""
    targets = shift_left(batch["labels"], IGNORE_INDEX)
    prepared = {
        "input_ids": batch["input_ids"],
        "position_ids": batch["position_ids"],
        "targets": targets,
        "target_modality": target_modality(targets, layout),
        "target_task": shift_left(batch["task_index"], -1),
    }
    return {key: value.to(device, non_blocking=True) for key, value in prepared.items()}


def train_step(engine, micro_batches: list[dict[str, torch.Tensor]], meter: LossMeter) -> None:
    """One optimizer step over prepared ``micro_batches`` (gradient accumulation); losses go to ``meter``."""
    for batch in micro_batches:
        logits = engine(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        losses = token_losses(logits, batch["targets"])  # (B, L)
        engine.backward(losses.sum() / (batch["targets"] != IGNORE_INDEX).sum().clamp(min=1))
        engine.step()  # steps the optimizer and the schedule at the accumulation boundary
        meter.add(losses, batch)


@torch.no_grad()
def evaluate(engine, loader: PackedLoader, batches: int, layout: TokenLayout, device: torch.device) -> dict:
    """Mean held-out loss (overall, per modality, per task) over ``batches`` micro-batches per rank."""
    engine.eval()
    meter = LossMeter(device)
    for _ in range(batches):
        batch = prepare_batch(loader.next_batch(), layout, device)
        logits = engine(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        meter.add(token_losses(logits, batch["targets"]), batch)
    engine.train()
    return meter.reduce()


def _latest(run_dir: Path, resume: bool) -> Path | None:
    found = list_checkpoints(run_dir)
    if found and not resume:
        raise ReelmError(f"{run_dir} already holds checkpoints (latest {found[-1][1].name}); "
                         "pass --resume to continue it, or choose a new --out")
    return found[-1][1] if found else None


def train(data: str | Path, out: str | Path, *, preset: str | None = None, overrides: Sequence[str] = (),
          deepspeed_config: str | None = None, resume: bool = False, peak_flops: float | None = None,
          tensorboard: bool = False, stop_at: int | None = None, progress: bool = True) -> TrainResult:
    """Pretrain on the shards in ``data`` into the run folder ``out``; call on every rank.

    ``peak_flops`` is one device's peak FLOP/s for MFU (measured when None). ``stop_at``
    ends this invocation after that step, with a checkpoint, as if interrupted.
    """
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    dist = init_distributed(need_group=True)
    if dist.device.type == "cpu":
        keep_freed_memory()  # large activations reuse warm pages instead of page-faulting every step
    is_main = dist.rank == 0
    run_dir = Path(out)
    shards = load_shards(data)
    layout = shards.layout
    latest = _latest(run_dir, resume)
    saved = read_meta(latest, KIND) if latest else None
    lm_cfg, cfg, ds_raw = resolve_configs(preset, list(overrides), deepspeed_config, saved)
    if saved:
        _check_resume(saved, latest, lm_cfg, cfg, dist.world_size, layout)
    bf16 = dist.device.type == "cuda" and torch.cuda.is_bf16_supported()
    ds_config = resolve_deepspeed_config(ds_raw, cfg, world_size=dist.world_size, bf16=bf16)

    train_ids, val_ids = split_indices(len(shards.dataset), cfg.val_fraction, cfg.seed)
    loader = PackedLoader(shards.dataset, layout, cfg.loader(), indices=train_ids, rank=dist.rank,
                          world_size=dist.world_size)

    attn = select_attention(dist.device)
    if latest:
        model = AutoModelForCausalLM.from_pretrained(latest, dtype=torch.float32, attn_implementation=attn)
    else:
        torch.manual_seed(cfg.seed)
        model = build_model(lm_cfg, layout.vocab_size, bos_id=layout.bos_id, eos_id=layout.eos_id,
                            pad_id=layout.pad_id, device=dist.device, attn_implementation=attn)
    if cfg.activation_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    compiled = use_compile(cfg, dist.device)
    if compiled:
        compile_layers(model)
    model_flops = flops_per_token(model, cfg.block_size)
    engine, scheduler = build_engine(model, cfg, ds_config)

    start = 0
    if latest:
        trainer_state, rank_state = load_training_state(latest, engine)
        start = int(trainer_state["step"])
        scheduler.load_state_dict(trainer_state["scheduler"])
        loader.load_state_dict(rank_state["loader"])
        restore_rng(rank_state["rng"])
        engine.global_steps, engine.global_samples = start, start * engine.train_batch_size()
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(run_dir)
    log = MetricsLog(run_dir, enabled=is_main, tensorboard=tensorboard)
    log.truncate_after(start)
    peak = _total_peak_flops(peak_flops, dist.device, torch.bfloat16 if bf16 else torch.float32)

    tokens_per_step = cfg.micro_batch_size * cfg.block_size * cfg.grad_accum_steps * dist.world_size
    end = min(cfg.steps, stop_at or cfg.steps)
    metadata = {
        "train": to_dict(cfg),
        "preset": preset or (saved or {}).get("preset"),
        "world_size": dist.world_size,
        "compiled": compiled,
        "deepspeed": ds_config,
        "data": str(Path(data).resolve()),
    }
    val_rank, val_world = (dist.rank, dist.world_size) if len(val_ids) >= dist.world_size else (0, 1)
    meter = LossMeter(dist.device)
    last: dict = {}
    checkpoint = latest
    bar = tqdm(total=cfg.steps, initial=start, disable=not (progress and is_main), unit="step", dynamic_ncols=True)
    window_start, paused, window_steps = time.perf_counter(), 0.0, 0
    engine.train()
    for step in range(start + 1, end + 1):
        lr = scheduler.get_last_lr()[0]
        micro_batches = [prepare_batch(loader.next_batch(), layout, dist.device) for _ in range(cfg.grad_accum_steps)]
        train_step(engine, micro_batches, meter)
        window_steps += 1
        bar.update()

        if step % cfg.log_every == 0 or step == end:
            losses = meter.reduce()
            seconds = time.perf_counter() - window_start - paused
            tokens_per_s = window_steps * tokens_per_step / seconds
            grad_norm = engine.get_global_grad_norm()
            last = {"step": step, "split": "train", **losses, "lr": lr, "tokens": step * tokens_per_step,
                    "tokens_per_s": tokens_per_s, "mfu": model_flops * tokens_per_s / peak}
            if grad_norm is not None:
                last["grad_norm"] = float(grad_norm)
            log.write(last)
            bar.set_postfix(loss=f"{losses['loss']:.3f}", tok_s=f"{tokens_per_s:,.0f}", mfu=f"{last['mfu']:.1%}")
            window_start, paused, window_steps = time.perf_counter(), 0.0, 0

        pause_start = time.perf_counter()
        if cfg.val_every and len(val_ids) and (step % cfg.val_every == 0 or step == cfg.steps):
            val_loader = PackedLoader(shards.dataset, layout, cfg.loader(), indices=val_ids, rank=val_rank,
                                      world_size=val_world, shuffle=False)  # the same blocks every time
            val = evaluate(engine, val_loader, cfg.val_batches, layout, dist.device)
            log.write({"step": step, "split": "val", **val})
            if is_main:
                bar.write(f"step {step}: val loss {val['loss']:.4f}")
        if step % cfg.checkpoint_every == 0 or step == end:
            checkpoint = save_training_checkpoint(
                run_dir, step, engine, layout=layout, lm_cfg=lm_cfg,
                trainer_state={"step": step, "scheduler": scheduler.state_dict()},
                rank_state={"loader": loader.state_dict(), "rng": capture_rng()},
                metadata={**metadata, "step": step, "tokens_seen": step * tokens_per_step,
                          "skipped": dict(loader.skipped), "metrics": last},
                keep_last=cfg.keep_last or None,
            )
        paused += time.perf_counter() - pause_start
    bar.close()
    log.close()
    if is_main:
        plot_losses(log.path, run_dir / PLOT_FILE)
    return TrainResult(rank=dist.rank, step=max(start, end), checkpoint=checkpoint, model=engine.module, metrics=last)


def _total_peak_flops(per_device: float | None, device: torch.device, dtype: torch.dtype) -> float:
    """The peak FLOP/s of all ranks together: ``per_device`` times the world size, or measured on each rank at once."""
    world_size = torch.distributed.get_world_size()
    if per_device is not None:
        return per_device * world_size
    torch.distributed.barrier()
    peak = torch.tensor([measure_peak_flops(device, dtype)], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(peak)
    return float(peak.item())
