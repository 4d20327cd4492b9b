"""Training the video tokenizer: one loop, single process or DDP, resumable exactly.

Each step draws a batch of clips (:class:`reelm.data.clip_stream.ClipStream`: the synthetic
world by default, or a folder / manifest of videos and images), reconstructs it, and takes an
AdamW step on :meth:`TokenizerLoss.generator_loss` (plus a discriminator step once the
adversarial loss is active). The learning rate warms up linearly and decays on a cosine to
``min_lr_ratio``; gradients are clipped; an EMA of the weights is kept and is what the
checkpoint's ``model.safetensors`` holds when enabled. bf16 autocast on GPU.

A checkpoint is a ``step-NNNNNN/`` folder of the reelm format: the loadable tokenizer
(``model.safetensors`` + ``reelm.json``), ``train_config.json``, and the trainer state —
raw weights, optimizer, scheduler, discriminator, data position and RNG — as JSON +
safetensors. ``resume=True`` restores all of it, so N steps straight and N/2 + N/2 with a
resume in between give the same weights.

Follows: MAGVIT-v2's training recipe (Yu et al. 2023) at small scale; nanoGPT's loop.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch.nn.parallel import DistributedDataParallel

from reelm import checkpoint as ckpt
from reelm.config import from_dict, load_json, save_json, to_dict
from reelm.data.clip_stream import ClipStream
from reelm.data.clips import ClipSpec, SkipLog
from reelm.data.sources import open_source
from reelm.errors import ReelmError
from reelm.tokenizer.checkpoint import save_tokenizer
from reelm.tokenizer.losses import TokenizerLoss
from reelm.tokenizer.model import TokenizerConfig, VideoTokenizer

TRAIN_CONFIG_FILE = "train_config.json"
SYNTHETIC_CLIPS = 10**9  # the synthetic world is endless; this only bounds the index


@dataclass(kw_only=True)
class TrainConfig:
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
    seed: int = 0
    data: str = "synthetic"  # "synthetic", a folder, or a manifest
    clip: ClipSpec = field(default_factory=lambda: ClipSpec(num_frames=17, size=64, fps=8.0, temporal_crop="random"))


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to 1, then cosine decay to ``min_lr_ratio`` at ``steps``."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def batch_psnr(video: torch.Tensor, recon: torch.Tensor) -> float:
    """PSNR in dB of [-1, 1] videos, on the [0, 255] scale."""
    mse = ((recon.detach().float().clamp(-1, 1) - video.float()) * 127.5).square().mean()
    return float(10 * torch.log10(255.0**2 / mse.clamp(min=1e-10)))


class Trainer:
    """Everything one training run holds; ``run()`` trains to ``cfg.steps``."""

    def __init__(self, model_cfg: TokenizerConfig, cfg: TrainConfig, out: str | Path, *, progress: bool = True):
        self.cfg, self.out, self.progress = cfg, Path(out), progress
        self.rank, self.world_size = _init_distributed()
        self.device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
        torch.manual_seed(cfg.seed)
        self.model = VideoTokenizer(model_cfg).to(self.device)
        self.loss = TokenizerLoss(model_cfg.loss).to(self.device)
        self.ddp = DistributedDataParallel(self.model) if self.world_size > 1 else self.model
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=cfg.betas,
                                           weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(s, cfg))
        self.disc_optimizer = (torch.optim.AdamW(self.loss.discriminator.parameters(), lr=cfg.disc_lr, betas=(0.5, 0.9))
                               if self.loss.discriminator is not None else None)
        self.ema = (torch.optim.swa_utils.AveragedModel(
            self.model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema_decay),
            use_buffers=True)  # buffers too: the VQ codebook is one
            if cfg.ema_decay > 0 else None)
        world = _world_cfg(cfg.clip, cfg.seed)
        source = open_source(cfg.data, num_clips=SYNTHETIC_CLIPS, world_cfg=world)
        self.out.mkdir(parents=True, exist_ok=True)
        self.skips = SkipLog(self.out / f"errors-rank{self.rank}.jsonl")
        self.stream = ClipStream(source, cfg.clip, cfg.batch_size, seed=cfg.seed,
                                 rank=self.rank, world_size=self.world_size, skip_log=self.skips)
        self.step = 0
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda" else \
            torch.autocast("cpu", enabled=False)

    # --- one step -----------------------------------------------------------------------

    def train_step(self) -> dict[str, float]:
        video = self.stream.next_batch().to(self.device)  # (B, 3, T, H, W)
        self.model.train()
        with self.autocast:
            recon, quant = self.ddp(video)
            terms = self.loss.generator_loss(video, recon.float(), quant, step=self.step,
                                             last_layer=self.model.last_layer)
        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
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
        logs.update(psnr=batch_psnr(video, recon), grad_norm=float(grad_norm), lr=self.scheduler.get_last_lr()[0])
        logs.update({k: float(v) for k, v in quant.metrics.items()})
        self.step += 1
        return logs

    def run(self) -> Path | None:
        from tqdm import tqdm

        bar = tqdm(total=self.cfg.steps, initial=self.step, desc="tokenizer", unit="step",
                   disable=not (self.progress and self.rank == 0))
        log_path = self.out / "metrics.jsonl"
        last = None
        while self.step < self.cfg.steps:
            began = time.perf_counter()
            logs = self.train_step()
            logs["seconds"] = time.perf_counter() - began
            bar.update(1)
            bar.set_postfix(loss=f"{logs['loss']:.4f}", psnr=f"{logs['psnr']:.1f}",
                            usage=f"{logs.get('codebook_usage', float('nan')):.2f}")
            if self.rank == 0 and (self.step % self.cfg.log_every == 0 or self.step == self.cfg.steps):
                with open(log_path, "a") as fh:
                    fh.write(json.dumps({"step": self.step, **logs}) + "\n")
            if self.step % self.cfg.checkpoint_every == 0 or self.step == self.cfg.steps:
                last = self.save()
        bar.close()
        if self.skips.total:
            print(f"reelm tokenizer train: skipped rows: {self.skips.summary(0)} (see {self.skips.path})")
        return last

    # --- checkpoints ----------------------------------------------------------------------

    def save(self) -> Path | None:
        """Write ``step-NNNNNN/`` atomically (rank 0; every rank's data state rides along)."""
        per_rank = {"stream": self.stream.state_dict(), "rng": ckpt.capture_rng()}
        gathered = [per_rank]
        if self.world_size > 1:
            gathered = [None] * self.world_size
            dist.all_gather_object(gathered, per_rank)
        path = None
        if self.rank == 0:
            path = ckpt.save_checkpoint(self.out, self.step, lambda folder: self._write(folder, gathered),
                                        keep_last=self.cfg.keep_last)
        if self.world_size > 1:
            dist.barrier()
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
            "loss": self.loss.training_state(),
            "disc_optimizer": self.disc_optimizer.state_dict() if self.disc_optimizer else None,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "ranks": per_rank,  # data position and RNG of every rank
            "world_size": self.world_size,
        }
        ckpt.save_state(folder, "trainer_state", state)

    def resume(self) -> bool:
        """Restore the latest complete checkpoint in ``out``; False when there is none."""
        if not ckpt.list_checkpoints(self.out):
            return False
        folder = ckpt.resolve_checkpoint(self.out)
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
        return True


def train(model_cfg: TokenizerConfig | None, cfg: TrainConfig, out: str | Path, *, resume: bool = False,
          progress: bool = True) -> Path | None:
    """Train (or resume) a tokenizer run in ``out``; returns the last checkpoint folder."""
    out = Path(out)
    if resume and ckpt.list_checkpoints(out):
        saved_model, saved_train = saved_configs(out)
        if model_cfg is not None and to_dict(model_cfg) != to_dict(saved_model):
            raise ReelmError(f"{out}: was trained with another tokenizer config; drop --preset/--set to resume it")
        model_cfg = saved_model
        cfg = from_dict(TrainConfig, {**to_dict(saved_train), "steps": cfg.steps})
    elif not resume and ckpt.list_checkpoints(out):
        raise ReelmError(f"{out}: already holds checkpoints; pass --resume to continue, or use a new --out")
    if model_cfg is None:
        raise ReelmError("no tokenizer config: pass --preset")
    trainer = Trainer(model_cfg, cfg, out, progress=progress)
    if resume:
        trainer.resume()
    return trainer.run()


def saved_configs(run: str | Path) -> tuple[TokenizerConfig, TrainConfig]:
    folder = ckpt.resolve_checkpoint(run)
    meta = ckpt.read_meta(folder, "video_tokenizer")
    return from_dict(TokenizerConfig, meta["config"]), from_dict(TrainConfig, load_json(folder / TRAIN_CONFIG_FILE))


def _world_cfg(spec: ClipSpec, seed: int):
    from reelm.data.synthetic import WorldConfig

    return WorldConfig(height=spec.size, width=spec.size, num_frames=spec.num_frames, fps=spec.fps, seed=seed)


def _init_distributed() -> tuple[int, int]:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)

