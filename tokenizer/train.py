"""Training the video tokenizer: one loop, single process or DDP, resumable exactly.

Each step draws a batch of clips (:class:`reelm.data.clip_stream.ClipStream`: the synthetic
world by default, or a folder / manifest of videos and images), reconstructs it, and takes an
AdamW step on :meth:`TokenizerLoss.generator_loss` (plus a discriminator step once the
adversarial loss is active). The training objective (loss weights, LPIPS file,
discriminator) is part of the training config, not of the model. The learning rate warms
up linearly and decays on a cosine to ``min_lr_ratio`` (:mod:`reelm.core.schedule`, shared with
the LM); gradients are clipped; an EMA of the weights is kept and is what the
checkpoint's ``model.safetensors`` holds when enabled. ``precision=auto`` trains in bf16
autocast where the device multiplies bf16 natively (GPUs, CPUs with AMX or AVX512-BF16;
:mod:`reelm.core.device`), in fp32 elsewhere; the weights stay fp32.

A checkpoint is a ``step-NNNNNN/`` folder of the reelm format: the loadable tokenizer
(``model.safetensors`` + ``reelm.json``), ``train_config.json``, and the trainer state —
raw weights, optimizer, scheduler, discriminator, data position and RNG — as JSON +
safetensors. A step whose loss or gradient norm is NaN/Inf is skipped (no update of weights,
optimizer, schedule, EMA or discriminator; the batch is consumed) and logged;
``max_nonfinite_steps`` in a row stop the run with one line, the checkpoints intact. Resuming follows :mod:`reelm.core.resume`'s rule: it restores all of it, so N
steps straight and N/2 + N/2 with a resume in between give the same weights; only the
logging and checkpoint intervals may change, and a finished run may be continued to more
steps with its schedule re-planned.

The loss terms go to ``RUN/metrics.jsonl`` every ``log_every`` steps and to the trackers
``report_to`` names (:mod:`reelm.core.trackers`); with each checkpoint the trackers also get up
to four clips of that step's batch above their reconstructions, as one image and one GIF.

Follows: MAGVIT-v2's training recipe (Yu et al. 2023) at small scale; nanoGPT's loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch.nn.parallel import DistributedDataParallel

from reelm.core import checkpoint_format as ckpt
from reelm.core.config import ConfigError, from_dict, load_json, resolve_preset, save_json, to_dict
from reelm.data.clip_stream import ClipStream
from reelm.data.clip_sampling import ClipSpec, SkipLog, check_clip_spec
from reelm.data.contact_sheet import render_sheet
from reelm.data.sources import SourceOptions, open_source
from reelm.data.synthetic.world import WorldOptions
from reelm.data.video_read import tensor_to_frames
from reelm.core.device import PRECISIONS, autocast, saved_precision, train_in_bf16
from reelm.core.distributed import any_rank, init_distributed
from reelm.core.errors import ReelmError
from reelm.core.metrics_log import MetricsLog
from reelm.core.progress import progress_bar
from reelm.core.resume import ResumePlan, nonfinite_stop, plan_resume
from reelm.core.schedule import replanned_message, warmup_cosine
from reelm.core.trackers import resolve_report_to
from reelm.core.train_result import TrainResult
from reelm.tokenizer.tokenizer_checkpoint import KIND, LEGACY_TRAINING_KEY, load_tokenizer, save_tokenizer
from reelm.tokenizer.losses import LOSS_PRESETS, LossConfig, TokenizerLoss
from reelm.tokenizer.model import TokenizerConfig, VideoTokenizer

TRAIN_CONFIG_FILE = "train_config.json"
LEGACY_ROOT_KEY = "allow_outside_root"  # before 0.3: its opposite, confine_to_root, with the other default
SYNTHETIC_CLIPS = 10**9  # the synthetic world is endless; this only bounds the index
SHOWN_CLIPS = 4  # clips of a checkpoint step's batch shown to the trackers with their reconstructions
# What a resumed run may change without losing exactness: what is logged and kept, never what is computed.
SAFE_TO_CHANGE = frozenset({"log_every", "checkpoint_every", "keep_last", "max_nonfinite_steps",
                            "data_workers"})  # workers read the same clips in the same order


@dataclass(kw_only=True)
class TokenizerTrainConfig:
    steps: int = 1000
    batch_size: int = 4
    lr: float = 1e-3
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0
    ema_decay: float = 0.0  # 0 = no EMA; e.g. 0.999 for long runs
    disc_lr: float = 1e-4
    checkpoint_every: int = 100
    keep_last: int = 3
    log_every: int = 10
    max_nonfinite_steps: int = 5  # a step with a NaN/Inf loss or gradient is skipped; this many in a row stop the run
    seed: int = 0
    precision: str = "auto"  # auto: bf16 autocast where the device multiplies bf16 natively, else fp32; bf16; fp32
    data: str = "synthetic"  # "synthetic", a folder, or a manifest
    data_workers: int = 0  # DataLoader worker processes decoding clips ahead of the step (0: between steps, here)
    init_from: str | None = None  # fine-tune: start from this tokenizer's weights (a new optimizer and schedule)
    source: SourceOptions = field(default_factory=SourceOptions)  # columns, confining paths to the root
    clip: ClipSpec = field(default_factory=lambda: ClipSpec(num_frames=17, size=64, fps=8.0, temporal_crop="random"))
    world: WorldOptions = field(default_factory=WorldOptions)  # what --data synthetic draws
    loss: LossConfig = field(default_factory=LossConfig)  # the training objective


def training_preset(name: str) -> TokenizerTrainConfig:
    """The training config a model preset is trained with: the defaults plus the preset's objective."""
    return TokenizerTrainConfig(loss=resolve_preset(LOSS_PRESETS, name, "tokenizer"))


def check_config(cfg: TokenizerTrainConfig) -> None:
    bad = [f"{name}={getattr(cfg, name)}" for name in ("steps", "batch_size", "checkpoint_every", "log_every",
                                                       "max_nonfinite_steps") if getattr(cfg, name) < 1]
    if bad:
        raise ConfigError(f"tokenizer training config: {', '.join(bad)}: must be at least 1 (e.g. --steps 100)")
    if cfg.clip.num_frames < 1 or cfg.clip.size < 1:
        raise ConfigError(f"tokenizer training config: clip.num_frames and clip.size must be at least 1, got "
                          f"{cfg.clip.num_frames} and {cfg.clip.size}")
    if cfg.precision not in PRECISIONS:
        raise ConfigError(f"tokenizer training config: precision={cfg.precision!r}: choose from {', '.join(PRECISIONS)}")
    if cfg.data_workers < 0:
        raise ConfigError(f"tokenizer training config: data_workers={cfg.data_workers}: must be 0 (decode in the "
                          "training process) or more")


def batch_psnr(video: torch.Tensor, recon: torch.Tensor) -> float:
    """PSNR in dB of [-1, 1] videos, on the [0, 255] scale."""
    mse = ((recon.detach().float().clamp(-1, 1) - video.float()) * 127.5).square().mean()
    return float(10 * torch.log10(255.0**2 / mse.clamp(min=1e-10)))


class TokenizerTrainer:
    """Everything one training run holds; ``run()`` trains to ``cfg.steps``."""

    def __init__(self, model_cfg: TokenizerConfig, cfg: TokenizerTrainConfig, out: str | Path, *, progress: bool = True,
                 device: str = "auto", report_to: str | tuple[str, ...] | None = None):
        self.cfg, self.out, self.progress = cfg, Path(out), progress
        self.dist = init_distributed(device)
        self.rank, self.world_size, self.device = self.dist.rank, self.dist.world_size, self.dist.device
        self.bf16 = train_in_bf16(self.device, cfg.precision)
        torch.manual_seed(cfg.seed)
        self.model = VideoTokenizer(model_cfg).to(self.device)
        if cfg.init_from is not None:
            self.model.load_state_dict(load_tokenizer(cfg.init_from).state_dict())
        self.loss = TokenizerLoss(cfg.loss).to(self.device)
        self.ddp = DistributedDataParallel(self.model) if self.world_size > 1 else self.model
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=cfg.betas,
                                           weight_decay=cfg.weight_decay)
        self.scheduler = warmup_cosine(self.optimizer, warmup_steps=cfg.warmup_steps, total_steps=cfg.steps,
                                       min_lr_ratio=cfg.min_lr_ratio)
        self.disc_optimizer = (torch.optim.AdamW(self.loss.discriminator.parameters(), lr=cfg.disc_lr, betas=(0.5, 0.9))
                               if self.loss.discriminator is not None else None)
        self.ema = (torch.optim.swa_utils.AveragedModel(
            self.model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema_decay),
            use_buffers=True)  # buffers too: the VQ codebook is one
            if cfg.ema_decay > 0 else None)
        world = cfg.world.world_config(cfg.clip, seed=cfg.seed)
        source = open_source(cfg.data, num_clips=SYNTHETIC_CLIPS, world_cfg=world, start=cfg.world.start,
                             **cfg.source.kwargs())
        self.out.mkdir(parents=True, exist_ok=True)
        self.skips = SkipLog(self.out / f"errors-rank{self.rank}.jsonl")
        self.stream = ClipStream(source, cfg.clip, cfg.batch_size, seed=cfg.seed,
                                 rank=self.rank, world_size=self.world_size, skip_log=self.skips,
                                 workers=cfg.data_workers)
        self.log = MetricsLog(self.out, enabled=self.rank == 0, report_to=report_to,
                              config={"model": to_dict(model_cfg), "train": to_dict(cfg)})
        self.shown: tuple[torch.Tensor, torch.Tensor] | None = None  # (video, recon) kept for the trackers
        self.schedule_plans = [{"from_step": 0, "steps": cfg.steps}]
        self.step = 0
        self.nonfinite_in_a_row = 0

    # --- one step -----------------------------------------------------------------------

    def train_step(self, keep: bool = False) -> dict[str, float]:
        """One step; ``keep``: hold a few clips of the batch and their reconstructions in ``self.shown``."""
        video = self.stream.next_batch().to(self.device)  # (B, 3, T, H, W)
        self.model.train()
        with autocast(self.device, self.bf16):
            recon, quant = self.ddp(video)
            terms = self.loss.generator_loss(video, recon.float(), quant, step=self.step,
                                             last_layer=self.model.last_layer)
        if keep:
            self.shown = (video[:SHOWN_CLIPS].detach(), recon[:SHOWN_CLIPS].detach())
        self.optimizer.zero_grad(set_to_none=True)
        lr = self.scheduler.get_last_lr()[0]
        nonfinite = any_rank(not bool(torch.isfinite(terms["loss"])), self.device)  # every rank skips, or none
        if not nonfinite:
            terms["loss"].backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            nonfinite = not bool(torch.isfinite(grad_norm))  # the same on every rank: DDP reduced the gradients
        if nonfinite:  # skipped: no update of the weights, optimizer, schedule, EMA or discriminator
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            self.nonfinite_in_a_row += 1
            return {"loss": float(terms["loss"].detach()), "skipped": 1, "lr": lr}
        self.nonfinite_in_a_row = 0
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        logs = {k: float(v.detach()) for k, v in terms.items()}
        if self.loss.adversarial_active(self.step):
            d_terms = self.loss.discriminator_loss(video, recon.float())
            self.disc_optimizer.zero_grad(set_to_none=True)
            d_terms["loss"].backward()
            self.disc_optimizer.step()
            logs.update({f"d_{k}": float(v) for k, v in d_terms.items()})
        logs.update(psnr=batch_psnr(video, recon), grad_norm=float(grad_norm), lr=lr)
        logs.update({k: float(v) for k, v in quant.metrics.items()})
        self.step += 1
        return logs

    def run(self, stop_at: int | None = None) -> TrainResult:
        """Train to ``cfg.steps`` (or to ``stop_at``, with a checkpoint there)."""
        end = min(self.cfg.steps, stop_at or self.cfg.steps)
        bar = progress_bar(self.cfg.steps, initial=self.step, desc="tokenizer", unit="step",
                           enabled=self.progress and self.rank == 0)
        last, metrics = None, {}
        while self.step < end:
            began = time.perf_counter()
            saves = (self.step + 1) % self.cfg.checkpoint_every == 0 or self.step + 1 == end
            logs = self.train_step(keep=saves and bool(self.log.trackers))
            logs["seconds"] = time.perf_counter() - began
            bar.update(1)
            if logs.get("skipped"):
                self.log.write({"step": self.step, "split": "train", **logs})
                if self.rank == 0:
                    bar.write(f"reelm tokenizer train: step {self.step}: the loss ({logs['loss']}) or its gradient is "
                              f"not finite; step skipped ({self.nonfinite_in_a_row} in a row)")
                if self.nonfinite_in_a_row >= self.cfg.max_nonfinite_steps:
                    bar.close()
                    self.log.close()
                    raise ReelmError(nonfinite_stop("reelm tokenizer train", self.out, self.step,
                                                    self.nonfinite_in_a_row))
            else:
                bar.set_postfix(loss=f"{logs['loss']:.4f}", psnr=f"{logs['psnr']:.1f}",
                                usage=f"{logs.get('codebook_usage', float('nan')):.2f}")
                if self.step % self.cfg.log_every == 0 or self.step == end:
                    metrics = {"step": self.step, "split": "train", **logs}
                    self.log.write(metrics)
            if saves:
                last = self.save()
                if self.shown is not None and not logs.get("skipped"):
                    self.show_reconstructions()
        bar.close()
        self.log.close()
        if self.skips.total and self.rank == 0:
            reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(self.skips.counts.items()))
            print(f"reelm tokenizer train: skipped {self.skips.total} unusable rows ({reasons}); each is listed with "
                  f"its reason in {self.skips.path}")
        model = self.ema.module if self.ema is not None else self.model
        return TrainResult(rank=self.rank, step=self.step, checkpoint=last, model=model, metrics=metrics)

    def show_reconstructions(self) -> None:
        """The kept clips above their reconstructions (the raw model's, in training mode) to the trackers."""
        video, recon = self.shown
        self.shown = None
        originals, recons = tensor_to_frames(video), tensor_to_frames(recon)  # (N, T, H, W, 3) each
        rows = [clip for pair in zip(originals, recons) for clip in pair]
        sheet = render_sheet(rows, labels=["input", "recon"] * len(originals))
        self.log.trackers.image("reconstructions/sheet", np.asarray(sheet), self.step,
                                caption="input above reconstruction")
        side_by_side = np.concatenate(np.concatenate([originals, recons], axis=3), axis=1)  # (T, N*H, 2*W, 3)
        self.log.trackers.video("reconstructions/video", side_by_side, self.step, fps=self.cfg.clip.fps,
                                caption="input | reconstruction")

    # --- checkpoints ----------------------------------------------------------------------

    def save(self) -> Path | None:
        """Write ``step-NNNNNN/`` atomically (rank 0; every rank's data state rides along)."""
        per_rank = {"stream": self.stream.state_dict(), "rng": ckpt.capture_rng()}
        gathered = [per_rank]
        if self.world_size > 1:
            gathered = [None] * self.world_size
            dist.all_gather_object(gathered, per_rank)
        path, failure = None, None
        if self.rank == 0:
            try:
                path = ckpt.save_checkpoint(self.out, self.step, lambda folder: self._write(folder, gathered),
                                            keep_last=self.cfg.keep_last)
            except ckpt.CheckpointError as exc:
                failure = exc
        if any_rank(failure is not None, self.device):  # every rank stops, none waits for the others
            raise failure or ckpt.CheckpointError(f"{self.out}: rank 0 could not save step {self.step}; see its error")
        return path

    def _write(self, folder: Path, per_rank: list[dict]) -> None:
        weights = self.ema.module if self.ema is not None else self.model
        save_tokenizer(weights, folder)
        save_json(folder / TRAIN_CONFIG_FILE, self.cfg)
        save_file({k: v.contiguous() for k, v in self.model.state_dict().items()}, str(folder / "raw_model.safetensors"))
        state = {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "schedule_plans": self.schedule_plans,
            "loss": self.loss.training_state(),
            "disc_optimizer": self.disc_optimizer.state_dict() if self.disc_optimizer else None,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "ranks": per_rank,  # data position and RNG of every rank
            "world_size": self.world_size,
            "nonfinite_in_a_row": self.nonfinite_in_a_row,
        }
        ckpt.save_state(folder, "trainer_state", state)

    def resume(self, folder: Path, plan: ResumePlan, saved_steps: int) -> None:
        """Restore the checkpoint in ``folder``; re-plan the schedule of a continued finished run."""
        state = ckpt.load_state(folder, "trainer_state")
        if state["world_size"] != self.world_size:
            raise ReelmError(f"{folder}: saved by {state['world_size']} processes, resuming with {self.world_size}")
        self.model.load_state_dict(load_file(str(folder / "raw_model.safetensors")))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.loss.load_training_state(state["loss"])
        if self.disc_optimizer is not None:
            self.disc_optimizer.load_state_dict(state["disc_optimizer"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.stream.load_state_dict(state["ranks"][self.rank]["stream"])
        ckpt.restore_rng(state["ranks"][self.rank]["rng"])
        self.step = int(state["step"])
        self.nonfinite_in_a_row = int(state.get("nonfinite_in_a_row", 0))
        self.schedule_plans = list(state.get("schedule_plans") or [{"from_step": 0, "steps": saved_steps}])
        if plan.continues_finished:
            self.scheduler.last_epoch = self.step - 1
            self.scheduler.step()  # the LR of the next step under the new plan
            self.schedule_plans.append({"from_step": self.step, "steps": self.cfg.steps})
            if self.rank == 0:
                print(replanned_message("reelm tokenizer train", self.step, saved_steps, self.cfg.steps,
                                        self.scheduler.get_last_lr()[0]))
        self.log.truncate_after(self.step)


def train(out: str | Path, *, model: TokenizerConfig | None = None, config: TokenizerTrainConfig | None = None,
          resume: bool = False, progress: bool = True, device: str = "auto", stop_at: int | None = None,
          report_to: str | tuple[str, ...] | None = None) -> TrainResult:
    """Train (or resume) a tokenizer run in ``out``: ``model`` and ``config`` are typed configs, e.g.
    ``train(out, model=PRESETS["tiny"](), config=dataclasses.replace(training_preset("tiny"), steps=900))``.

    On resume, ``None`` configs mean the checkpoint's; given ones must agree with it
    (:func:`reelm.core.resume.plan_resume`). ``stop_at`` ends this invocation after that step, with
    a checkpoint, as if interrupted. ``report_to``: the trackers (:func:`reelm.core.trackers.resolve_report_to`).
    """
    resolve_report_to(report_to)  # a tracker not installed stops the run before anything is built
    out = Path(out)
    found = ckpt.list_checkpoints(out)
    if found and not resume:
        raise ReelmError(f"{out}: already holds checkpoints; pass --resume to continue, or use a new --out")
    plan, saved_steps = None, 0
    folder = ckpt.latest_checkpoint(out) if resume and found else None
    if folder is not None:
        saved_model, saved_train = saved_configs(folder)
        model, config = model or saved_model, config or saved_train
        saved_steps = saved_train.steps
        step = int(ckpt.load_state(folder, "trainer_state")["step"])
        plan = plan_resume(str(folder), step=step, safe=SAFE_TO_CHANGE,
                           saved={"": to_dict(saved_train), "model.": to_dict(saved_model)},
                           now={"": to_dict(config), "model.": to_dict(model)})
    if config is not None and config.init_from is not None and folder is None:
        model = _init_model(config.init_from, model)
    if model is None or config is None:
        raise ConfigError("no tokenizer config: pass --preset (or --init-from TOKENIZER)")
    check_config(config)
    check_clip_spec(config.clip, spatial=model.spatial_downsample, temporal=model.temporal_downsample)
    trainer = TokenizerTrainer(model, config, out, progress=progress, device=device, report_to=report_to)
    if plan is not None:
        trainer.resume(folder, plan, saved_steps)
    return trainer.run(stop_at)


def _init_model(init_from: str, given: TokenizerConfig | None) -> TokenizerConfig:
    """The model config of the tokenizer a run starts from; ``given`` must be it (a fine-tune keeps the shape)."""
    start = ckpt.resolve_checkpoint(init_from)
    cfg = from_dict(TokenizerConfig, {k: v for k, v in ckpt.read_meta(start, KIND)["config"].items()
                                      if k != LEGACY_TRAINING_KEY}, where=f"{start}/reelm.json config")
    if given is not None and given != cfg:
        differ = [k for k, v in to_dict(cfg).items() if to_dict(given).get(k) != v]
        raise ConfigError(f"--init-from {init_from}: its model config differs from the one given "
                          f"({', '.join(differ)}); a fine-tune keeps the tokenizer's shape: drop --preset and model.*")
    return cfg


def init_configs(init_from: str | Path) -> tuple[TokenizerConfig, TokenizerTrainConfig]:
    """What a fine-tune from ``init_from`` starts with: its model config, and its training config where the
    folder records one (a training checkpoint), else the defaults."""
    start = ckpt.resolve_checkpoint(init_from)
    if (start / TRAIN_CONFIG_FILE).is_file():
        return saved_configs(start)
    return _init_model(str(init_from), None), TokenizerTrainConfig()


def saved_configs(run: str | Path) -> tuple[TokenizerConfig, TokenizerTrainConfig]:
    """The model and training configs of a run's latest checkpoint (or of a checkpoint folder)."""
    folder = ckpt.resolve_checkpoint(run)
    model = dict(ckpt.read_meta(folder, KIND)["config"])
    legacy_loss = model.pop(LEGACY_TRAINING_KEY, None)  # pre-0.2: the objective lived in the model config
    train = saved_precision(load_json(folder / TRAIN_CONFIG_FILE))
    if LEGACY_ROOT_KEY in train:  # before 0.3 manifests were confined unless allowed out
        train = {key: value for key, value in train.items() if key != LEGACY_ROOT_KEY} | \
            {"source": {"confine_to_root": not train[LEGACY_ROOT_KEY]}}
    if legacy_loss is not None and "loss" not in train:
        train = {**train, "loss": legacy_loss}
    return (from_dict(TokenizerConfig, model, where=f"{folder}/reelm.json config"),
            from_dict(TokenizerTrainConfig, train, where=f"{folder}/{TRAIN_CONFIG_FILE}"))
