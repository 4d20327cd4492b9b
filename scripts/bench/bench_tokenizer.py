"""Benchmark reelm's video tokenizer against magvit2-pytorch's, and its streaming encode memory.

In one run, on the same 2 x 17 x 64 x 64 batches and the same number of torch threads:

- ``reelm``: ``VideoTokenizer(PRESETS[--preset]())`` trained by ``TokenizerTrainer.train_step`` (the
  step ``reelm tokenizer train`` runs) on a fixed pool of pre-rendered synthetic train clips,
  in fp32 like the peer by default (``--precision auto`` measures it as ``reelm tokenizer
  train`` runs by default: bf16 autocast on CPUs with native bf16);
- ``peer``: lucidrains' magvit2-pytorch ``VideoTokenizer`` in its own virtualenv (created
  under ``--peer-venv`` on first use, then reused), served by this same file in a subprocess
  (``--peer-worker``) that speaks JSON lines. Its layer stack is the one in magvit2-pytorch's
  README (8x space, 4x causal time, with its attention layers), its LFQ has reelm's
  codebook size, and its widths (``init_dim``, ``max_dim``) are the cheapest ones whose
  parameter count is within 10% of reelm's.

Both sides train for the same wall-clock budget, taking turns in short slices (so load from
other processes falls on both alike), with AdamW at reelm's default LR, betas and
gradient clipping (no LR warm-up by default: a warm-up counted in steps would keep the slower
side at a lower LR for more of its budget), on MSE plus their own quantizer losses (no
perceptual or GAN terms), from the same clips in the same order. Reported: training steps/s
(median over the steps after warm-up), encode clips/s (median of no-grad ``encode`` calls on a
2-clip batch, the sides again taking turns), PSNR / SSIM (``reelm.eval.reconstruction_metrics``) of
reconstructions of held-out synthetic val clips, and the CPU seconds other processes used
meanwhile (absolute timings are only trustworthy when that is near 0).

Memory: two 128 x 128 MP4s (10 s and 5 min of synthetic clips) are each encoded by
``reelm.tokenizer.video_codec.encode_video`` in a fresh subprocess (``--encode-child``),
which reports its peak RSS (``VmHWM``: unlike ``getrusage``'s ``ru_maxrss``, it does not inherit
the parent's RSS at fork); the target is long / short <= 1.2.

Prints one JSON object. Usage::

    python scripts/bench/bench_tokenizer.py --preset tiny --budget-seconds 150
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

PEER_REQUIREMENTS = ("torch==2.13.0", "torchvision==0.28.0", "magvit2-pytorch==0.5.1")
PEER_VENV = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "reelm-bench" / "peer-venv"
PEER_READY = "reelm-bench-ready.json"
PEER_LAYERS = (  # magvit2-pytorch README: 3 x compress_space (8x), 2 x compress_time (4x)
    "residual",
    "compress_space", ("consecutive_residual", 2),
    "compress_space", ("consecutive_residual", 2),
    "linear_attend_space",
    "compress_space", ("consecutive_residual", 2),
    "attend_space",
    "compress_time", ("consecutive_residual", 2),
    "compress_time", ("consecutive_residual", 2),
    "attend_time",
)
PARAM_TOLERANCE = 0.10


@dataclass(kw_only=True)
class Schedule:
    """What both sides share: input, data, optimizer and timing settings."""

    batch: int = 2
    frames: int = 17
    size: int = 64
    budget_seconds: float = 150.0  # training time per side, taken in turns of slice_seconds
    slice_seconds: float = 10.0
    warmup_steps: int = 3  # excluded from steps/s
    encode_warmup: int = 2
    encode_repeats: int = 10  # timed calls per turn
    encode_rounds: int = 3
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    lr_warmup_steps: int = 0
    grad_clip: float = 1.0
    threads: int = 2
    seed: int = 0


# --- shared by both sides (this part imports neither reelm nor magvit2-pytorch) ------------------


class ClipPool:
    """Batches (B, 3, T, H, W) in [-1, 1] from uint8 clips (N, T, H, W, 3), in order, cycling.

    Has the ``next_batch`` of :class:`reelm.data.clip_stream.ClipStream`, so it can stand in for
    a trainer's stream; the conversion is :func:`reelm.data.video_read.frames_to_tensor`'s.
    """

    def __init__(self, clips: np.ndarray, batch: int):
        self.clips, self.batch, self.position = clips, batch, 0

    def next_batch(self) -> torch.Tensor:
        rows = [(self.position + i) % len(self.clips) for i in range(self.batch)]
        self.position = (self.position + self.batch) % len(self.clips)
        return to_video(self.clips[rows])


def to_video(frames: np.ndarray) -> torch.Tensor:  # (..., T, H, W, 3) uint8 -> (..., 3, T, H, W) in [-1, 1]
    return torch.from_numpy(np.ascontiguousarray(frames)).movedim(-1, -4).float() / 127.5 - 1.0


class Side:
    """One tokenizer under test: ``train(seconds)`` runs training steps for a slice of wall clock,
    ``encode_times(val, calls)`` times no-grad ``encode`` of a batch of ``val``, and
    ``reconstruct(val)`` decodes all of ``val``; each returns what it measured."""

    def __init__(self, model, step, encode, forward, sched: Schedule):
        self.model, self.step, self.encode, self.forward, self.sched = model, step, encode, forward, sched

    def train(self, seconds: float) -> list[float]:
        times, began = [], time.perf_counter()
        while time.perf_counter() - began < seconds:
            start = time.perf_counter()
            self.step()
            times.append(time.perf_counter() - start)
        return times

    @torch.no_grad()
    def encode_times(self, val: np.ndarray, calls: int) -> list[float]:
        self.model.eval()
        video, times = to_video(val[:self.sched.batch]), []
        for _ in range(calls):
            start = time.perf_counter()
            self.encode(video)
            times.append(time.perf_counter() - start)
        return times

    @torch.no_grad()
    def reconstruct(self, val: np.ndarray) -> np.ndarray:  # (N, T, H, W, 3) uint8 -> (N, 3, T, H, W) float32
        self.model.eval()
        batch = self.sched.batch
        return np.concatenate([self.forward(to_video(val[i:i + batch])).float().numpy()
                               for i in range(0, len(val), batch)])


def throughput(train_times: list[float], encode_times: list[float], sched: Schedule) -> dict:
    timed = train_times[sched.warmup_steps:]
    if not timed:
        raise SystemExit(f"bench_tokenizer: {len(train_times)} steps in {sched.budget_seconds} s leave none after "
                         f"{sched.warmup_steps} warm-up steps; raise --budget-seconds")
    step_s, encode_s = statistics.median(timed), statistics.median(encode_times)
    return {
        "train_steps_per_s": round(1 / step_s, 4),
        "train_step_s": {"median": round(step_s, 4), "min": round(min(timed), 4), "max": round(max(timed), 4),
                         "timed_steps": len(timed), "all_steps": len(train_times),
                         "training_seconds": round(sum(train_times), 1)},
        "encode_clips_per_s": round(sched.batch / encode_s, 3),
        "encode_s": {"median": round(encode_s, 4), "all": [round(t, 4) for t in encode_times]},
    }


def make_optimizer(params, sched: Schedule):
    """AdamW with linear LR warm-up, then constant (reelm's schedule with ``min_lr_ratio=1``)."""
    optimizer = torch.optim.AdamW(list(params), lr=sched.lr, betas=sched.betas, weight_decay=sched.weight_decay)
    warmup = max(1, sched.lr_warmup_steps)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))


# --- peer side: runs in the peer virtualenv ------------------------------------------------------


def import_peer():
    """magvit2-pytorch's ``VideoTokenizer``, with torchvision importable on a CPU-only torch.

    PyPI's torchvision 0.28.0 (the release for torch 2.13) is built against CUDA torch: with the
    CPU torch wheel its C++ ops fail to load and its import then dies registering fake kernels
    for ``nms`` / ``qnms``. Declaring those two schemas lets it import; magvit2-pytorch only uses
    torchvision for its VGG perceptual loss, which is off here.
    """
    try:
        import torchvision  # noqa: F401
    except RuntimeError:
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        for op in ("nms", "qnms"):
            torch.library.define(f"torchvision::{op}", "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        import torchvision  # noqa: F401
    from magvit2_pytorch import VideoTokenizer

    return VideoTokenizer


def peer_kwargs(init_dim: int, max_dim: int, codebook_size: int, image_size: int) -> dict:
    return dict(image_size=image_size, init_dim=init_dim, max_dim=max_dim, codebook_size=codebook_size,
                layers=PEER_LAYERS, use_gan=False, perceptual_loss_weight=0.0)


def pick_peer_widths(model_cls, target: int, codebook_size: int, image_size: int) -> tuple[int, int, int]:
    """``(init_dim, max_dim, parameters)``: the smallest ``init_dim`` (cheapest full-resolution
    layers) for which some ``max_dim`` (a multiple of 8) lands within 10% of ``target`` parameters."""

    def count(init_dim: int, max_dim: int) -> int:
        with torch.device("meta"):
            model = model_cls(**peer_kwargs(init_dim, max_dim, codebook_size, image_size))
        return sum(p.numel() for p in model.parameters())

    for init_dim in range(8, 513, 8):
        lo, hi = init_dim, 4096
        while hi - lo > 8:  # parameters grow with max_dim: bisect on multiples of 8
            mid = (lo + hi) // 16 * 8
            lo, hi = (mid, hi) if count(init_dim, mid) < target else (lo, mid)
        best = min(((count(init_dim, m), m) for m in (lo, hi)), key=lambda c: abs(c[0] - target))
        if abs(best[0] / target - 1) <= PARAM_TOLERANCE:
            return init_dim, best[1], best[0]
        if count(init_dim, init_dim) > target * (1 + PARAM_TOLERANCE):
            break
    raise SystemExit(f"bench_tokenizer: no magvit2-pytorch widths within {PARAM_TOLERANCE:.0%} of {target} parameters")


def peer_worker(spec_path: str) -> int:
    """Serve magvit2-pytorch as a :class:`Side` over stdin / stdout, one JSON object a line.

    Prints its setup, then answers ``{"train": seconds}`` and ``{"encode": calls}`` with
    ``{"times": [...]}``, and ``{"reconstruct": true}`` by saving the reconstructions of the
    val clips to ``spec["recon"]`` (``{"saved": path}``), which ends it.
    """
    import importlib.metadata
    import warnings

    warnings.filterwarnings("ignore")
    spec = json.loads(Path(spec_path).read_text())
    sched = Schedule(**{**spec["schedule"], "betas": tuple(spec["schedule"]["betas"])})
    torch.set_num_threads(sched.threads)
    model_cls = import_peer()
    init_dim, max_dim, params = pick_peer_widths(model_cls, spec["target_parameters"], spec["codebook_size"],
                                                 sched.size)
    torch.manual_seed(sched.seed)
    model = model_cls(**peer_kwargs(init_dim, max_dim, spec["codebook_size"], sched.size))
    optimizer, scheduler = make_optimizer(model.parameters(), sched)
    pool = ClipPool(np.load(spec["train"]), sched.batch)

    def step():
        model.train()
        loss, _ = model(pool.next_batch(), return_loss=True)  # MSE + LFQ aux (no VGG, no GAN)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), sched.grad_clip)
        optimizer.step()
        scheduler.step()

    side = Side(model, step, lambda v: model.encode(v, quantize=True), model, sched)
    versions = {name: importlib.metadata.version(name) for name in ("magvit2-pytorch", "torch", "torchvision",
                                                                    "vector-quantize-pytorch")}
    reply({"versions": versions, "parameters": params, "threads": torch.get_num_threads(),
           "config": {"init_dim": init_dim, "max_dim": max_dim, "codebook_size": spec["codebook_size"],
                      "layers": PEER_LAYERS, "use_gan": False, "perceptual_loss_weight": 0.0}})
    val = np.load(spec["val"])
    for line in sys.stdin:
        request = json.loads(line)
        if "train" in request:
            reply({"times": side.train(request["train"])})
        elif "encode" in request:
            reply({"times": side.encode_times(val, request["encode"])})
        else:
            np.save(spec["recon"], side.reconstruct(val))
            reply({"saved": spec["recon"]})
            break
    return 0


def reply(message: dict) -> None:
    print(json.dumps(message), flush=True)


class PeerClient:
    """The peer worker, driven from this process with the :class:`Side` interface."""

    def __init__(self, python: Path, spec: dict, folder: Path):
        spec_path = folder / "peer_spec.json"
        spec_path.write_text(json.dumps(spec))
        self.process = subprocess.Popen([str(python), str(Path(__file__).resolve()), "--peer-worker", str(spec_path)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.setup = {"venv": str(python.parent.parent), **self._read()}

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"bench_tokenizer: the peer worker exited ({self.process.wait()}); see its stderr above")
        return json.loads(line)

    def _ask(self, request: dict) -> dict:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return self._read()

    def train(self, seconds: float) -> list[float]:
        return self._ask({"train": seconds})["times"]

    def encode_times(self, val: np.ndarray, calls: int) -> list[float]:
        return self._ask({"encode": calls})["times"]

    def reconstruct(self, val: np.ndarray) -> np.ndarray:
        recon = np.load(self._ask({"reconstruct": True})["saved"])
        self.process.wait()
        return recon


def ensure_peer_venv(path: Path) -> Path:
    """The peer virtualenv's python, creating the venv (torch first: the local CPU wheel) if needed."""
    python = path / "bin" / "python"
    ready = path / PEER_READY
    if ready.exists() and json.loads(ready.read_text()) == list(PEER_REQUIREMENTS) and python.exists():
        return python
    shutil.rmtree(path, ignore_errors=True)
    print(f"bench_tokenizer: creating {path} ({', '.join(PEER_REQUIREMENTS)})", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    subprocess.run(pip + [PEER_REQUIREMENTS[0]], check=True, stdout=sys.stderr)
    subprocess.run(pip + list(PEER_REQUIREMENTS), check=True, stdout=sys.stderr)
    ready.write_text(json.dumps(list(PEER_REQUIREMENTS)))
    return python


# --- reelm side ----------------------------------------------------------------------------------


def reelm_side(preset: str, sched: Schedule, train: np.ndarray, folder: Path,
               precision: str = "fp32") -> tuple[Side, dict]:
    """reelm's tokenizer as a :class:`Side` whose step is ``TokenizerTrainer.train_step``, and what it is."""
    from reelm.data.clip_sampling import ClipSpec
    from reelm.tokenizer.losses import LOSS_PRESETS
    from reelm.tokenizer.model import PRESETS
    from reelm.tokenizer.train import TokenizerTrainer, TokenizerTrainConfig

    model_cfg = PRESETS[preset]()
    loss = replace(LOSS_PRESETS[preset](), recon="l2", perceptual_path=None, adversarial_weight=0.0)
    cfg = TokenizerTrainConfig(steps=10**9, loss=loss, batch_size=sched.batch, lr=sched.lr, betas=sched.betas,
                      weight_decay=sched.weight_decay, warmup_steps=sched.lr_warmup_steps, min_lr_ratio=1.0,
                      grad_clip=sched.grad_clip, seed=sched.seed, precision=precision,
                      clip=ClipSpec(num_frames=sched.frames, size=sched.size, fps=8.0, temporal_crop="random"))
    trainer = TokenizerTrainer(model_cfg, cfg, folder / "reelm-run", progress=False)
    trainer.stream = ClipPool(train, sched.batch)
    model = trainer.model
    side = Side(model, trainer.train_step, model.encode, lambda v: model(v)[0], sched)
    return side, {
        "parameters": sum(p.numel() for p in model.parameters()),
        "codebook_size": model.codebook_size,
        "precision": {"setting": precision, "bf16": trainer.bf16},
        "compression": {"space": model.spatial_downsample, "time": model.temporal_downsample},
        "loss": {"recon": "l2", "quantizer": asdict(model_cfg.quantizer)},
        "threads": torch.get_num_threads(),
    }


def train_interleaved(sides: dict, sched: Schedule) -> dict[str, list[float]]:
    """Train the sides in turn, ``sched.slice_seconds`` each, until each has ``budget_seconds`` of steps.

    Taking turns in short slices exposes both sides alike to whatever else the machine runs.
    """
    times = {name: [] for name in sides}
    while True:
        pending = {name: sched.budget_seconds - sum(times[name]) for name in sides}
        pending = {name: left for name, left in pending.items() if left > 0}
        if not pending:
            return times
        for name, left in pending.items():
            times[name] += sides[name].train(min(sched.slice_seconds, left))


def encode_interleaved(sides: dict, val: np.ndarray, sched: Schedule) -> dict[str, list[float]]:
    """Encode seconds per side: warm-up calls, then ``encode_rounds`` turns of ``encode_repeats`` calls each."""
    for side in sides.values():
        side.encode_times(val, sched.encode_warmup)
    times = {name: [] for name in sides}
    for _ in range(sched.encode_rounds):
        for name, side in sides.items():
            times[name] += side.encode_times(val, sched.encode_repeats)
    return times


def quality(val: np.ndarray, recon: np.ndarray) -> dict:
    """Mean PSNR / SSIM over clips of uint8 reconstructions (``tensor_to_frames``) of ``val``."""
    from reelm.data.video_read import tensor_to_frames
    from reelm.eval.reconstruction_metrics import psnr, ssim

    pairs = list(zip(val, tensor_to_frames(torch.from_numpy(recon))))  # uint8 (T, H, W, 3) each
    per_clip = [psnr(v, r) for v, r in pairs]
    return {"psnr": round(float(np.mean(per_clip)), 3),
            "ssim": round(float(np.mean([ssim(v, r) for v, r in pairs])), 4),
            "psnr_per_clip": [round(p, 2) for p in per_clip]}


def render_clips(count: int, sched: Schedule, split: str, *, size: int | None = None, frames: int | None = None,
                 fps: float = 8.0) -> np.ndarray:
    from reelm.data.synthetic.world import SyntheticWorld, WorldConfig

    side = size or sched.size
    world = SyntheticWorld(WorldConfig(height=side, width=side, num_frames=frames or sched.frames, fps=fps,
                                       seed=sched.seed, split=split))
    return np.stack([world.clip(i).frames for i in range(count)])  # (N, T, H, W, 3)


# --- streaming-encode memory ---------------------------------------------------------------------


def encode_child(path: str, preset: str, threads: int) -> int:
    """Encode one video file with ``encode_video`` in this fresh process; print its peak RSS as JSON."""
    from reelm.tokenizer.model import PRESETS, VideoTokenizer
    from reelm.tokenizer.video_codec import encode_video

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = VideoTokenizer(PRESETS[preset]()).eval()
    before = peak_rss_mib()
    start = time.perf_counter()
    codes, meta = encode_video(model, path)
    print(json.dumps({
        "frames": meta["frames"],
        "code_grid": list(codes.shape),
        "seconds": round(time.perf_counter() - start, 2),
        "peak_rss_mib": peak_rss_mib(),
        "peak_rss_before_encode_mib": before,
    }))
    return 0


def peak_rss_mib() -> float:
    """This process's peak resident set size (Linux ``VmHWM``) in MiB."""
    status = Path("/proc/self/status").read_text()
    kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    return round(kib / 1024, 1)


def bench_memory(preset: str, args, sched: Schedule, folder: Path) -> dict:
    """Peak RSS of encoding a short and a long synthetic 128 x 128 video, each in a fresh process."""
    from reelm.data.video_write import write_mp4

    clip_seconds = args.short_seconds
    clip_frames = int(round(clip_seconds * args.memory_fps))
    results = {}
    for seconds in (args.short_seconds, args.long_seconds):
        clips = render_clips(max(1, int(round(seconds / clip_seconds))), sched, "train", size=args.memory_size,
                             frames=clip_frames, fps=args.memory_fps)
        path = write_mp4(folder / f"video-{seconds:g}s.mp4", clips.reshape(-1, *clips.shape[2:]), args.memory_fps)
        del clips
        out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--encode-child", str(path),
                              "--preset", preset, "--threads", str(sched.threads)],
                             check=True, stdout=subprocess.PIPE, text=True).stdout
        results[f"{seconds:g}s"] = {"file_mib": round(path.stat().st_size / 2**20, 2),
                                    **json.loads(out.strip().splitlines()[-1])}
    short, long = (results[f"{s:g}s"]["peak_rss_mib"] for s in (args.short_seconds, args.long_seconds))
    return {"video": {"size": args.memory_size, "fps": args.memory_fps, "source": "synthetic clips, concatenated"},
            **results, "long_over_short": round(long / short, 4), "target": "<= 1.2",
            "target_met": long / short <= 1.2}


# --- main ----------------------------------------------------------------------------------------


def cpu_seconds() -> tuple[float, float]:
    """(CPU seconds all processes have used since boot, those of this process and its waited children)."""
    ticks = sum(int(v) for v in Path("/proc/stat").read_text().split()[1:4])  # user, nice, system
    own = sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))
    return ticks / os.sysconf("SC_CLK_TCK"), own


def compare(ours: dict, peer: dict) -> dict:
    train_x = ours["train_steps_per_s"] / peer["train_steps_per_s"]
    psnr_delta = ours["quality"]["psnr"] - peer["quality"]["psnr"]
    return {
        "parameters_ratio": round(peer["parameters"] / ours["parameters"], 4),
        "train_speedup": round(train_x, 3),
        "encode_speedup": round(ours["encode_clips_per_s"] / peer["encode_clips_per_s"], 3),
        "psnr_delta_db": round(psnr_delta, 3),
        "ssim_delta": round(ours["quality"]["ssim"] - peer["quality"]["ssim"], 4),
        "target": ">= 2x the peer's training steps/s at equal or better PSNR",
        "target_met": train_x >= 2 and psnr_delta >= 0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny", help="reelm tokenizer preset (default: tiny, the CPU preset)")
    parser.add_argument("--budget-seconds", type=float, default=150.0,
                        help="wall-clock training budget per side (default: 150)")
    parser.add_argument("--slice-seconds", type=float, default=10.0,
                        help="the sides train in turns of this many seconds (default: 10)")
    parser.add_argument("--warmup-steps", type=int, default=3, help="training steps left out of steps/s (default: 3)")
    parser.add_argument("--encode-repeats", type=int, default=10,
                        help="timed encode calls per turn, 3 turns a side (default: 10)")
    parser.add_argument("--train-clips", type=int, default=512, help="synthetic train clips in the pool (default: 512)")
    parser.add_argument("--val-clips", type=int, default=8, help="held-out synthetic val clips scored (default: 8)")
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW LR on both sides (default: 1e-3, reelm's)")
    parser.add_argument("--lr-warmup-steps", type=int, default=0, help="linear LR warm-up steps (default: 0)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads on both sides (default: 2)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "auto", "bf16"),
                        help="reelm's training precision (the peer trains in fp32); auto: as reelm tokenizer "
                             "train does by default (default: fp32, the like-for-like comparison)")
    parser.add_argument("--skip-peer", action="store_true", help="measure reelm only")
    parser.add_argument("--skip-memory", action="store_true", help="skip the streaming-encode memory test")
    parser.add_argument("--peer-venv", type=Path, default=PEER_VENV, help=f"peer virtualenv (default: {PEER_VENV})")
    parser.add_argument("--memory-size", type=int, default=128, help="memory-test frame size (default: 128)")
    parser.add_argument("--memory-fps", type=float, default=30.0, help="memory-test videos' fps (default: 30)")
    parser.add_argument("--short-seconds", type=float, default=10.0, help="short memory-test video (default: 10)")
    parser.add_argument("--long-seconds", type=float, default=300.0, help="long memory-test video (default: 300)")
    parser.add_argument("--peer-worker", metavar="SPEC", help=argparse.SUPPRESS)
    parser.add_argument("--encode-child", metavar="VIDEO", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peer_worker:
        return peer_worker(args.peer_worker)
    if args.encode_child:
        return encode_child(args.encode_child, args.preset, args.threads)

    sched = Schedule(budget_seconds=args.budget_seconds, slice_seconds=args.slice_seconds,
                     warmup_steps=args.warmup_steps,
                     encode_repeats=args.encode_repeats, lr=args.lr, lr_warmup_steps=args.lr_warmup_steps,
                     threads=args.threads)
    torch.set_num_threads(sched.threads)
    peer_python = None if args.skip_peer else ensure_peer_venv(args.peer_venv)
    cpu_start = cpu_seconds()
    with tempfile.TemporaryDirectory(prefix="reelm-bench-tok-") as tmp:
        folder = Path(tmp)
        train, val = render_clips(args.train_clips, sched, "train"), render_clips(args.val_clips, sched, "val")
        ours, ours_info = reelm_side(args.preset, sched, train, folder, args.precision)
        sides, info = {"reelm": ours}, {"reelm": ours_info}
        if peer_python is not None:
            np.save(folder / "train.npy", train)
            np.save(folder / "val.npy", val)
            spec = {"schedule": asdict(sched), "target_parameters": ours_info["parameters"],
                    "codebook_size": ours_info["codebook_size"], "train": str(folder / "train.npy"),
                    "val": str(folder / "val.npy"), "recon": str(folder / "peer_recon.npy")}
            sides["peer"] = PeerClient(peer_python, spec, folder)
            info["peer"] = sides["peer"].setup
        train_times = train_interleaved(sides, sched)
        encode_times = encode_interleaved(sides, val, sched)
        report = {
            "date": time.strftime("%Y-%m-%d"),
            "machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                        "torch": torch.__version__},
            "preset": args.preset,
            "input": {"batch": sched.batch, "frames": sched.frames, "height": sched.size, "width": sched.size},
            "schedule": {**asdict(sched), "recon_loss": "mse", "train_clips": args.train_clips,
                         "val_clips": args.val_clips, "data": "pre-rendered synthetic clips, same order both sides"},
        }
        for name, side in sides.items():
            report[name] = {**info[name], **throughput(train_times[name], encode_times[name], sched),
                            "quality": quality(val, side.reconstruct(val))}
        if "peer" in report:
            report["comparison"] = compare(report["reelm"], report["peer"])
        (all_end, own_end), (all_start, own_start) = cpu_seconds(), cpu_start
        report["machine"]["other_processes_cpu_s"] = round(max(0.0, (all_end - all_start) - (own_end - own_start)), 1)
        if not args.skip_memory:
            report["memory"] = bench_memory(args.preset, args, sched, folder)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
