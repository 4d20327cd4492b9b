"""LM pretraining under DeepSpeed: the training config and the loop, read top to bottom in :class:`LMTrainer`.

One step takes ``grad_accum_steps`` micro-batches of packed blocks per rank from the task
mixture (:mod:`reelm.data.lm_data`), runs forward / backward through the DeepSpeed engine
(ZeRO stage 0-3, gradient clipping, optional activation checkpointing) and steps AdamW and
the warm-up + cosine schedule. Every ``log_every`` steps the loss (overall, per modality,
per task), tokens/s and MFU go to the progress bar and ``RUN/metrics.jsonl``; every
``val_every`` steps the held-out loss too; every ``checkpoint_every`` steps (and at the
end) a step folder that is also the exported model, standing alone with its video
tokenizer and clip spec (:mod:`reelm.lm.lm_checkpoint`). The logged values also go to the
trackers ``report_to`` names (:mod:`reelm.core.trackers`); ``on_checkpoint(step, folder,
trackers)``, called on rank 0 after each checkpoint with the RNG restored afterwards (so it
changes nothing of the run), is where a caller that may touch pixels logs samples.

``resume=True`` continues from the latest complete checkpoint exactly: same weights,
optimizer moments, LR, data position and RNG, so 5 + 5 steps give the weights of 10. It
follows the one resume rule of :mod:`reelm.core.resume`: logging, validation and checkpoint
intervals may change, nothing else; a finished run may be continued to more steps, with
the schedule re-planned (said in one line, recorded in the checkpoint).

A step whose gradients hold NaN/Inf on any rank is skipped (no update, the schedule held,
its losses kept out of the logged means) and logged; ``max_nonfinite_steps`` in a row stop
the run with one line, its checkpoints intact.

Follows: nanoGPT / nanochat's train loop; VideoPoet's multi-task pretraining mixture.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from reelm.core.checkpoint_format import (capture_rng, latest_checkpoint, list_checkpoints, read_meta,
                                          resolve_checkpoint, restore_rng)
from reelm.core.config import ConfigError, from_dict, to_dict
from reelm.core.cpu_allocator import keep_freed_memory
from reelm.data.lm_data import LoaderConfig, MixtureConfig, PackedLoader, split_indices
from reelm.data.packing import split_documents
from reelm.data.shards import ShardSet, load_shards
from reelm.data.token_layout import IGNORE_INDEX, TASKS, Task, TokenLayout
from reelm.core.device import PRECISIONS, cxx_compiler, saved_precision, train_in_bf16
from reelm.core.distributed import DistInfo, init_distributed
from reelm.core.errors import ReelmError
from reelm.lm.lm_checkpoint import KIND, load_training_state, load_weights, remove_stale_staging, save_training_checkpoint
from reelm.lm.lora import LoRAConfig, apply_lora, check_lora, lora_record
from reelm.lm.deepspeed_setup import build_engine, restore_torch_linear
from reelm.lm.ds_config import config_zero_stage, load_deepspeed_config, resolve_deepspeed_config
from reelm.lm.flops import flops_per_token, measure_peak_flops
from reelm.lm.loss_meter import MODALITIES, LossMeter, shift_left, target_modality, token_losses
from reelm.lm.model import (LMConfig, attention_implementations, build_model, compile_layers, layout_grid,
                            training_attention)
from reelm.lm.plots import PLOT_FILE, plot_losses
from reelm.core.metrics_log import MetricsLog
from reelm.core.progress import progress_bar
from reelm.core.resume import ResumePlan, nonfinite_stop, plan_resume
from reelm.core.schedule import replanned_message
from reelm.core.trackers import Trackers, resolve_report_to
from reelm.core.train_result import TrainResult

OnCheckpoint = Callable[[int, Path, Trackers], None]  # (step, checkpoint folder, the run's trackers), on rank 0


@dataclass(kw_only=True)
class LMTrainConfig:
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
    max_nonfinite_steps: int = 5  # a step with a NaN/Inf loss or gradient is skipped; this many in a row stop the run
    seed: int = 0
    zero_stage: int | str = "auto"  # 0-3, or auto: 0 on one process (nothing to shard), 2 on several
    activation_checkpointing: bool = False
    compile: bool | None = None  # torch.compile each decoder layer; None: see use_compile
    split_documents: bool | None = None  # one row per document in each micro-batch; None: see use_split_documents
    attention: str | None = None  # a transformers attention implementation; None: reelm.lm.model.training_attention's
    precision: str = "auto"  # auto: bf16 where the device multiplies bf16 natively (GPUs, AMX CPUs), else fp32; bf16; fp32
    init_from: str | None = None  # fine-tune: start from this LM model folder's weights (a new optimizer and schedule)
    lora: LoRAConfig = field(default_factory=LoRAConfig)  # with init_from: train low-rank adapters only (peft)
    mixture: MixtureConfig = field(default_factory=MixtureConfig)

    def loader(self) -> LoaderConfig:
        return LoaderConfig(block_size=self.block_size, batch_size=self.micro_batch_size, seed=self.seed,
                            val_fraction=self.val_fraction, mixture=self.mixture)


# What a resumed run may change without losing exactness: what is logged, validated and kept, never what is computed.
SAFE_TO_CHANGE = frozenset({"log_every", "val_every", "val_batches", "checkpoint_every", "keep_last",
                            "max_nonfinite_steps"})


def saved_configs(run: str | Path) -> tuple[LMConfig, LMTrainConfig]:
    """The model and training configs of a run's latest checkpoint (or of a checkpoint folder)."""
    folder = resolve_checkpoint(run)
    meta = read_meta(folder, KIND)
    return (from_dict(LMConfig, meta["config"], where=f"{folder}/reelm.json config"),
            from_dict(LMTrainConfig, saved_train_config(meta["train"]), where=f"{folder}/reelm.json train"))


def saved_train_config(train: dict) -> dict:
    """A saved training config as the run computed it; one saved before a setting existed gets what it ran with.

    Precision: :func:`reelm.core.device.saved_precision`. Runs before 2026-12-04 fed packed blocks
    (``split_documents=false``) and, on CPUs, plain SDPA (``attention=sdpa``; on GPUs the default
    choice is what they had), so a resumed run stays bit-exact.
    """
    train = saved_precision(train)
    if "split_documents" not in train:
        train = {**train, "split_documents": False}
    if "attention" not in train and not torch.cuda.is_available():
        train = {**train, "attention": "sdpa"}
    return train


def init_model_config(init_from: str | Path) -> LMConfig:
    """The model config of an LM model folder (a run's latest checkpoint, a step folder or an export)."""
    start = resolve_checkpoint(init_from)
    return from_dict(LMConfig, read_meta(start, KIND)["config"], where=f"{start}/reelm.json config")


def _init_model(init_from: str, given: LMConfig | None, layout: TokenLayout) -> LMConfig:
    """The model config of the LM a run starts from, checked: ``given`` must be it (a fine-tune keeps the shape)
    and the shards must share its token layout (the same text tokenizer, video tokenizer and grid)."""
    start = resolve_checkpoint(init_from)
    cfg = init_model_config(start)
    if given is not None and given != cfg:
        differ = [k for k, v in to_dict(cfg).items() if to_dict(given).get(k) != v]
        raise ConfigError(f"--init-from {init_from}: its model config differs from the one given "
                          f"({', '.join(differ)}); a fine-tune keeps the model's shape: drop --preset and model.*")
    if TokenLayout.load(start) != layout:
        raise ReelmError(f"--init-from {init_from}: the shards' token layout differs from the model's; make them "
                         f"with its video tokenizer and text tokenizer ('reelm data tokenize --video-tokenizer "
                         f"{start}/video_tokenizer --text-tokenizer {start}/tokenizer.json')")
    return cfg


AUTO_ZERO_STAGE = "auto"


def resolve_zero_stage(cfg: LMTrainConfig, world_size: int, resumed_stage: int | None = None) -> LMTrainConfig:
    """``cfg`` with ``zero_stage="auto"`` made a stage: 0 on one process, where ZeRO has nothing to shard and stage 2's
    bucket copies and fp32-partition round trip cost 4-10 % of a ``small`` step (BENCHMARKS.md), 2 on several.
    On a resume, ``auto`` is the stage the run saved (``resumed_stage``): the resolved stage is what a run saves."""
    if cfg.zero_stage == AUTO_ZERO_STAGE:
        if resumed_stage is not None:
            return dataclasses.replace(cfg, zero_stage=resumed_stage)
        return dataclasses.replace(cfg, zero_stage=0 if world_size == 1 else 2)
    _check_zero_stage(cfg.zero_stage)
    return cfg


def _check_zero_stage(stage) -> None:
    if isinstance(stage, bool) or stage not in range(4):
        raise ConfigError(f"training config: zero_stage {stage!r} is not one of 0, 1, 2, 3 or auto")


def with_deepspeed_stage(cfg: LMTrainConfig, ds_raw: dict) -> LMTrainConfig:
    """``cfg`` with the ZeRO stage a DeepSpeed config sets explicitly (a shipped ``zeroN`` or a file's)."""
    stage = config_zero_stage(ds_raw)
    return cfg if stage is None else dataclasses.replace(cfg, zero_stage=stage)


def check_config(cfg: LMTrainConfig, lm_cfg: LMConfig) -> None:
    positive = ("steps", "micro_batch_size", "grad_accum_steps", "block_size", "log_every", "checkpoint_every",
                "max_nonfinite_steps")
    bad = [f"{name}={getattr(cfg, name)}" for name in positive if getattr(cfg, name) < 1]
    if bad:
        raise ConfigError(f"training config: {', '.join(bad)}: must be at least 1 (e.g. --steps 100)")
    _check_zero_stage(cfg.zero_stage)
    if cfg.precision not in PRECISIONS:
        raise ConfigError(f"training config: precision={cfg.precision!r}: choose from {', '.join(PRECISIONS)}")
    if cfg.compile and cfg.zero_stage == 3:
        raise ConfigError("training config: compile=true is supported with ZeRO stages 0-2; ZeRO-3 gathers each "
                          "layer's parameters in hooks, which needs DeepSpeed's own compile support (not used yet)")
    check_lora(cfg.lora, init_from=cfg.init_from, zero_stage=cfg.zero_stage)
    if cfg.attention is not None and cfg.attention not in attention_implementations():
        raise ConfigError(f"training config: attention={cfg.attention!r}: choose from "
                          f"{', '.join(attention_implementations())} (or leave it unset)")
    if cfg.block_size > lm_cfg.max_position_embeddings:
        raise ConfigError(f"block_size {cfg.block_size} exceeds the model's max_position_embeddings "
                          f"{lm_cfg.max_position_embeddings}")


def use_compile(cfg: LMTrainConfig, device: torch.device) -> bool:
    """Whether to compile the decoder layers (:func:`reelm.lm.model.compile_layers`).

    ``compile`` true or false decides; unset (``None``) it is on for training on CPUs under
    ZeRO 0-2 when inductor finds a C++ compiler (1.05-1.11x the tokens/s at ``small`` on the
    reference CPU, BENCHMARKS.md) and off elsewhere: on GPUs it has not been measured yet.
    """
    if cfg.compile is not None:
        return cfg.compile
    return device.type == "cpu" and cfg.zero_stage != 3 and cxx_compiler() is not None


def use_split_documents(cfg: LMTrainConfig, attn_implementation: str) -> bool:
    """Whether micro-batches go to the model one document a row (:func:`reelm.data.packing.split_documents`).

    ``split_documents`` when set; by default on unless the attention is flash-attention, whose
    varlen kernel already attends within documents only. SDPA computes a packed block's whole
    causal triangle however its mask cuts it into documents: at the demo's settings (documents of
    about 210 tokens in blocks of 512) the split rows are 1.30-1.36x the tokens/s on the reference
    CPU for the same loss (BENCHMARKS.md, "Training one document a row").
    """
    if cfg.split_documents is not None:
        return cfg.split_documents
    return attn_implementation != "flash_attention_2"


def prepare_batch(batch: dict[str, torch.Tensor], layout: TokenLayout, device: torch.device,
                  caption_weight: float = 1.0, *, split: bool = False) -> dict[str, torch.Tensor]:
    """A loader batch as the model sees it: ids, positions and what each position predicts, on ``device``.

    With ``caption_weight`` other than 1 it also carries ``loss_weight``: that weight on the text
    targets of video-to-text sequences (the captions), 1 elsewhere. With ``split`` the blocks are
    first split into one row per document (:func:`reelm.data.packing.split_documents`).
    """
    if split:
        batch = split_documents(batch, layout.pad_id)
    targets = shift_left(batch["labels"], IGNORE_INDEX)
    prepared = {
        "input_ids": batch["input_ids"],
        "position_ids": batch["position_ids"],
        "targets": targets,
        "target_modality": target_modality(targets, layout),
        "target_task": shift_left(batch["task_index"], -1),
    }
    if caption_weight != 1.0:
        caption = (prepared["target_modality"] == MODALITIES.index("text")) & (
            prepared["target_task"] == TASKS.index(Task.V2T))
        prepared["loss_weight"] = torch.where(caption, caption_weight, 1.0)
    return {key: value.to(device, non_blocking=True) for key, value in prepared.items()}


def train_step(engine, micro_batches: list[dict[str, torch.Tensor]], meter: LossMeter) -> float | None:
    """One optimizer step over prepared ``micro_batches`` (gradient accumulation); losses go to ``meter``.

    Returns ``None``, or this rank's loss when the step was skipped because a gradient was NaN/Inf
    on some rank (DeepSpeed's overflow check: no update, the schedule held; its losses stay out
    of ``meter``).
    """
    step_meter = LossMeter(meter.sums.device)
    skipped_before = engine.skipped_steps
    for batch in micro_batches:
        logits = engine(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        losses = token_losses(logits, batch["targets"])  # (B, L)
        weighted = losses * batch["loss_weight"] if "loss_weight" in batch else losses
        # over the target count, not the weights' sum: a caption weight adds to the captions' gradient
        # without scaling down every other token's
        engine.backward(weighted.sum() / (batch["targets"] != IGNORE_INDEX).sum().clamp(min=1))
        engine.step()  # steps the optimizer and the schedule at the accumulation boundary
        step_meter.add(losses, batch)
    if engine.skipped_steps != skipped_before:
        return step_meter.local_mean()
    meter.merge(step_meter)
    return None


@torch.no_grad()
def evaluate(engine, loader: PackedLoader, batches: int, layout: TokenLayout, device: torch.device, *,
             split: bool = False) -> dict:
    """Mean held-out loss (overall, per modality, per task) over ``batches`` micro-batches per rank."""
    engine.eval()
    meter = LossMeter(device)
    for _ in range(batches):
        batch = prepare_batch(loader.next_batch(), layout, device, split=split)
        logits = engine(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        meter.add(token_losses(logits, batch["targets"]), batch)
    engine.train()
    return meter.reduce()


class LMTrainer:
    """One run: built from the shards and configs (``__init__``), restored (``restore``), trained (``run``)."""

    def __init__(self, dist: DistInfo, shards: ShardSet, run_dir: Path, lm_cfg: LMConfig, cfg: LMTrainConfig,
                 ds_raw: dict, *, saved: dict | None, peak_flops: float | None,
                 report_to: str | tuple[str, ...] | None, progress: bool, on_checkpoint: OnCheckpoint | None = None):
        self.dist, self.shards, self.layout, self.run_dir = dist, shards, shards.layout, run_dir
        self.lm_cfg, self.cfg, self.saved, self.progress = lm_cfg, cfg, saved, progress
        self.on_checkpoint = on_checkpoint
        bf16 = train_in_bf16(dist.device, cfg.precision)
        ds_config = resolve_deepspeed_config(ds_raw, cfg, world_size=dist.world_size, bf16=bf16,
                                             device_type=dist.device.type)
        self.train_ids, self.val_ids = split_indices(len(shards.dataset), cfg.val_fraction, cfg.seed)
        self.loader = PackedLoader(shards.dataset, self.layout, cfg.loader(), indices=self.train_ids,
                                   rank=dist.rank, world_size=dist.world_size)
        attn = cfg.attention or training_attention(dist.device, bf16=bf16)
        self.split = use_split_documents(cfg, attn)
        lora = None
        if saved:
            model = load_weights(saved["folder"], saved, trainable=True, dtype=torch.float32, attn_implementation=attn)
            lora = saved.get("lora")
        elif cfg.init_from is not None:
            start = resolve_checkpoint(cfg.init_from)
            model = load_weights(start, read_meta(start, KIND), dtype=torch.float32,
                                 attn_implementation=attn).to(dist.device)
            if cfg.lora.enabled:
                torch.manual_seed(cfg.seed)  # the adapters' initialisation
                model, lora = apply_lora(model, cfg.lora), lora_record(start, cfg.lora)
        else:
            torch.manual_seed(cfg.seed)
            model = build_model(lm_cfg, self.layout.vocab_size, bos_id=self.layout.bos_id, eos_id=self.layout.eos_id,
                                pad_id=self.layout.pad_id, device=dist.device, attn_implementation=attn,
                                grid=layout_grid(self.layout))
        plain = model.get_base_model() if lora else model  # under LoRA: the Llama inside peft's wrapper
        if cfg.activation_checkpointing:
            plain.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.compiled = use_compile(cfg, dist.device)
        if self.compiled:
            compile_layers(plain)
        self.flops_at = functools.lru_cache(maxsize=None)(functools.partial(flops_per_token, model))
        self.engine, self.scheduler = build_engine(model, cfg, ds_config)
        self.step = 0
        self.nonfinite_in_a_row = 0
        self.tokens_per_step = cfg.micro_batch_size * cfg.block_size * cfg.grad_accum_steps * dist.world_size
        self.schedule_plans = list((saved or {}).get("schedule_plans") or [{"from_step": 0, "steps": cfg.steps}])
        self.metadata = {
            "train": to_dict(cfg),
            "world_size": dist.world_size,
            "compiled": self.compiled,
            "deepspeed": ds_config,
            "clip": shards.info.get("clip"),
            **({"lora": lora} if lora else {}),
            "data": {"source": shards.info.get("source"), "clips": len(shards.dataset),
                     **({"world": shards.info["world"]} if "world" in shards.info else {})},
        }
        if dist.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_staging(run_dir)
        self.log = MetricsLog(run_dir, enabled=dist.is_main, report_to=report_to,
                              config={"model": to_dict(lm_cfg), "train": to_dict(cfg)})
        self.peak = _total_peak_flops(peak_flops, dist.device, torch.bfloat16 if bf16 else torch.float32)
        self.checkpoint: Path | None = saved["folder"] if saved else None
        self.last: dict = {}

    def restore(self, plan: ResumePlan) -> None:
        """Load the checkpoint's optimizer, schedule, data position and RNG; re-plan a continued finished run."""
        trainer_state, rank_state = load_training_state(self.saved["folder"], self.engine)
        self.step = int(trainer_state["step"])
        self.nonfinite_in_a_row = int(trainer_state.get("nonfinite_in_a_row", 0))
        self.scheduler.load_state_dict(trainer_state["scheduler"])
        self.loader.load_state_dict(rank_state["loader"])
        restore_rng(rank_state["rng"])
        self.engine.global_steps, self.engine.global_samples = self.step, self.step * self.engine.train_batch_size()
        if plan.continues_finished:
            self.scheduler.last_epoch = self.step - 1
            self.scheduler.step()  # the LR of the next step under the new plan
            self.schedule_plans.append({"from_step": self.step, "steps": self.cfg.steps})
            if self.dist.is_main:
                print(replanned_message("reelm lm train", self.step, self.saved["train"]["steps"], self.cfg.steps,
                                        self.scheduler.get_last_lr()[0]))
        self.log.truncate_after(self.step)

    def run(self, stop_at: int | None = None) -> TrainResult:
        cfg, end = self.cfg, min(self.cfg.steps, stop_at or self.cfg.steps)
        bar = progress_bar(cfg.steps, initial=self.step, desc="lm train", unit="step",
                           enabled=self.progress and self.dist.is_main)
        meter = LossMeter(self.dist.device)
        window = _Window()
        self.engine.train()
        for step in range(self.step + 1, end + 1):
            lr = self.scheduler.get_last_lr()[0]
            micro_batches = [prepare_batch(self.loader.next_batch(), self.layout, self.dist.device,
                                           self.cfg.mixture.caption_weight, split=self.split)
                             for _ in range(cfg.grad_accum_steps)]
            skipped_loss = train_step(self.engine, micro_batches, meter)
            self.step = step
            window.steps += 1
            window.flops += self.dist.world_size * sum(self._model_flops(batch) for batch in micro_batches)
            bar.update()
            if skipped_loss is not None:
                self._skipped(skipped_loss, bar)
            else:
                self.nonfinite_in_a_row = 0
            if step % cfg.log_every == 0 or step == end:
                self._log(meter, window, lr, bar)
            with window.paused():
                if cfg.val_every and len(self.val_ids) and (step % cfg.val_every == 0 or step == cfg.steps):
                    self._validate(bar)
                if step % cfg.checkpoint_every == 0 or step == end:
                    self._save()
                    if self.on_checkpoint is not None and self.dist.is_main:
                        rng = capture_rng()
                        self.on_checkpoint(self.step, self.checkpoint, self.log.trackers)
                        restore_rng(rng)
        bar.close()
        self.log.close()
        if self.dist.is_main:
            plot_losses(self.log.path, self.run_dir / PLOT_FILE)
        return TrainResult(rank=self.dist.rank, step=self.step, checkpoint=self.checkpoint, model=self.engine.module,
                           metrics=self.last)

    def _log(self, meter: LossMeter, window: _Window, lr: float, bar) -> None:
        losses = meter.reduce()
        if "loss" not in losses:  # every step since the last line was skipped: nothing to average
            window.restart()
            return
        tokens_per_s = window.steps * self.tokens_per_step / window.seconds()
        self.last = {"step": self.step, "split": "train", **losses, "lr": lr, "tokens": self.step * self.tokens_per_step,
                     "tokens_per_s": tokens_per_s, "mfu": window.flops / window.seconds() / self.peak}
        grad_norm = self.engine.get_global_grad_norm()
        if grad_norm is not None:
            self.last["grad_norm"] = float(grad_norm)
        self.log.write(self.last)
        bar.set_postfix(loss=f"{losses['loss']:.3f}", tok_s=f"{tokens_per_s:,.0f}", mfu=f"{self.last['mfu']:.1%}")
        window.restart()

    def _model_flops(self, batch: dict[str, torch.Tensor]) -> float:
        """The model FLOPs of a micro-batch as the model saw it: rows x length tokens at that length's attention.

        Tokens/s counts the blocks' tokens (padding included) split or not; MFU counts what was computed."""
        rows, length = batch["input_ids"].shape
        return rows * length * self.flops_at(length)

    def _skipped(self, loss: float, bar) -> None:
        """Log a skipped (NaN/Inf) step; stop the run after ``max_nonfinite_steps`` of them in a row."""
        self.nonfinite_in_a_row += 1
        self.log.write({"step": self.step, "split": "train", "skipped": 1, "loss": loss})
        if self.dist.is_main:
            bar.write(f"reelm lm train: step {self.step}: a gradient (loss {loss:.4g}) is not finite; step skipped "
                      f"({self.nonfinite_in_a_row} in a row)")
        if self.nonfinite_in_a_row >= self.cfg.max_nonfinite_steps:
            bar.close()
            self.log.close()
            raise ReelmError(nonfinite_stop("reelm lm train", self.run_dir, self.step, self.nonfinite_in_a_row))

    def _validate(self, bar) -> None:
        rank, world = (self.dist.rank, self.dist.world_size) if len(self.val_ids) >= self.dist.world_size else (0, 1)
        loader = PackedLoader(self.shards.dataset, self.layout, self.cfg.loader(), indices=self.val_ids, rank=rank,
                              world_size=world, shuffle=False)  # the same blocks every time
        val = evaluate(self.engine, loader, self.cfg.val_batches, self.layout, self.dist.device,
                       split=self.split)
        self.log.write({"step": self.step, "split": "val", **val})
        if self.dist.is_main:
            bar.write(f"step {self.step}: val loss {val['loss']:.4f}")

    def _save(self) -> None:
        self.checkpoint = save_training_checkpoint(
            self.run_dir, self.step, self.engine, layout=self.layout, lm_cfg=self.lm_cfg,
            video_tokenizer=self.shards.video_tokenizer,
            trainer_state={"step": self.step, "scheduler": self.scheduler.state_dict(),
                           "nonfinite_in_a_row": self.nonfinite_in_a_row},
            rank_state={"loader": self.loader.state_dict(), "rng": capture_rng()},
            metadata={**self.metadata, "step": self.step, "tokens_seen": self.step * self.tokens_per_step,
                      "skipped": dict(self.loader.skipped), "metrics": self.last,
                      "schedule_plans": self.schedule_plans},
            keep_last=self.cfg.keep_last or None,
        )


class _Window:
    """Wall time of the steps since the last log line, less the time spent validating and saving."""

    def __init__(self):
        self.restart()

    def restart(self) -> None:
        self.start, self.paused_seconds, self.steps, self.flops = time.perf_counter(), 0.0, 0, 0.0

    def seconds(self) -> float:
        return time.perf_counter() - self.start - self.paused_seconds

    @contextlib.contextmanager
    def paused(self):
        began = time.perf_counter()
        try:
            yield
        finally:
            self.paused_seconds += time.perf_counter() - began


def train(data: str | Path, out: str | Path, *, model: LMConfig | None = None, config: LMTrainConfig | None = None,
          deepspeed_config: str | None = None, resume: bool = False, peak_flops: float | None = None,
          report_to: str | tuple[str, ...] | None = None, stop_at: int | None = None, progress: bool = True,
          device: str = "auto", on_checkpoint: OnCheckpoint | None = None) -> TrainResult:
    """Pretrain on the shards in ``data`` into the run folder ``out``; call on every rank.

    ``model`` and ``config`` are typed configs, e.g. ``train(shards, out, model=preset("tiny"),
    config=LMTrainConfig(steps=1500, lr=2e-3))``; on resume, ``None`` means the checkpoint's, and
    given ones must agree with it (:func:`reelm.core.resume.plan_resume`). A shipped DeepSpeed
    config (``zero0`` .. ``zero3``) or a file's explicit ZeRO stage sets ``zero_stage``; ``"auto"`` (the
    default) is 0 on one process and 2 on several, or on resume the run's own (:func:`resolve_zero_stage`).
    ``peak_flops`` is one device's peak FLOP/s for MFU (measured when None). ``stop_at``
    ends this invocation after that step, with a checkpoint, as if interrupted. ``report_to``:
    the trackers (:func:`reelm.core.trackers.resolve_report_to`); ``on_checkpoint``: see the
    module docstring.
    """
    from transformers.utils import logging as hf_logging

    resolve_report_to(report_to)  # a tracker not installed stops the run before anything is built

    hf_logging.disable_progress_bar()
    dist = init_distributed(device, need_group=True)
    if dist.device.type == "cpu":
        keep_freed_memory()  # large activations reuse warm pages instead of page-faulting every step
    run_dir = Path(out)
    shards = load_shards(data)
    if shards.video_tokenizer is None and dist.is_main:
        print(f"reelm lm train: {data} carries no video tokenizer (shards made before reelm 0.2): checkpoints will "
              "need --video-tokenizer for generation; re-run 'reelm data tokenize' to embed it")
    saved = _saved(run_dir, resume)
    if saved:
        saved_model, saved_train = saved_configs(saved["folder"])
        model, config = model or saved_model, config or saved_train
    if not saved and config is not None and config.init_from is not None:
        model = _init_model(config.init_from, model, shards.layout)
    if model is None or config is None:
        raise ConfigError("no LM config: pass --preset (tiny, small, base or large) to start a run")
    config = resolve_zero_stage(config, dist.world_size, saved["train"].get("zero_stage") if saved else None)
    ds_raw = load_deepspeed_config(deepspeed_config or f"zero{config.zero_stage}")
    config = with_deepspeed_stage(config, ds_raw)
    check_config(config, model)
    plan = _check_resume(saved, model, config, dist.world_size, shards.layout) if saved else None
    try:
        trainer = LMTrainer(dist, shards, run_dir, model, config, ds_raw, saved=saved, peak_flops=peak_flops,
                            report_to=report_to, progress=progress, on_checkpoint=on_checkpoint)
        if plan is not None:
            trainer.restore(plan)
        return trainer.run(stop_at)
    finally:
        restore_torch_linear()  # a ZeRO-3 engine swaps F.linear for the whole process


def _saved(run_dir: Path, resume: bool) -> dict | None:
    """The latest checkpoint's ``reelm.json`` (with its ``folder``), or None for a new run."""
    found = list_checkpoints(run_dir)
    if found and not resume:
        raise ReelmError(f"{run_dir} already holds checkpoints (latest {found[-1][1].name}); "
                         "pass --resume to continue it, or choose a new --out")
    if not found:
        return None
    folder = latest_checkpoint(run_dir)
    meta = read_meta(folder, KIND)
    return {**meta, **({"train": saved_train_config(meta["train"])} if "train" in meta else {}), "folder": folder}


def _check_resume(saved: dict, lm_cfg: LMConfig, cfg: LMTrainConfig, world_size: int, layout: TokenLayout) -> ResumePlan:
    folder = saved["folder"]
    if saved["world_size"] != world_size:
        raise ReelmError(f"{folder} was trained by {saved['world_size']} processes, this run has {world_size}; "
                         "resume with the same number of processes")
    if TokenLayout.load(folder) != layout:
        raise ReelmError(f"{folder}: the data's token layout differs from the checkpoint's; resume on the same shards")
    return plan_resume(str(folder), step=int(saved["step"]), safe=SAFE_TO_CHANGE,
                       saved={"": saved["train"], "model.": saved["config"]},
                       now={"": to_dict(cfg), "model.": to_dict(lm_cfg)})


def _total_peak_flops(per_device: float | None, device: torch.device, dtype: torch.dtype) -> float:
    """The peak FLOP/s of all ranks together: ``per_device`` times the world size, or measured on each rank at once."""
    world_size = torch.distributed.get_world_size()
    if per_device is not None:
        return per_device * world_size
    torch.distributed.barrier()
    peak = torch.tensor([measure_peak_flops(device, dtype)], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(peak)
    return float(peak.item())
