"""Device and precision choice: the one place ``--device auto`` is resolved and bf16 is decided.

Every command that runs a model takes ``--device auto|cpu|cuda|cuda:N``. ``auto`` is the GPU
when PyTorch sees one, else the CPU; a process launched as one rank of several
(``LOCAL_RANK``) takes the GPU of its local rank. Mixed precision is bf16 autocast on GPUs
that support it and full fp32 elsewhere (CPUs train and infer in fp32).
"""

from __future__ import annotations

import contextlib
import os

import torch

from reelm.errors import ReelmError

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


def resolve_device(name: str | torch.device | None = "auto", *, local_rank: int | None = None) -> torch.device:
    """The ``torch.device`` that ``--device NAME`` means on this machine (for this rank)."""
    if isinstance(name, torch.device):
        return name
    name = (name or "auto").strip().lower()
    if local_rank is None and "LOCAL_RANK" in os.environ:
        local_rank = int(os.environ["LOCAL_RANK"])
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    kind, _, index = name.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise ReelmError(f"--device {name}: expected {DEVICE_CHOICES}")
    if not torch.cuda.is_available():
        raise ReelmError(f"--device {name}: PyTorch sees no CUDA GPU here (use --device cpu or auto)")
    number = int(index) if index else (local_rank or 0)
    if number >= torch.cuda.device_count():
        raise ReelmError(f"--device {name}: this machine has {torch.cuda.device_count()} GPU(s)")
    return torch.device("cuda", number)


def use_bf16(device: torch.device) -> bool:
    """Whether work on ``device`` runs in bf16 (GPUs with bf16 support) rather than fp32."""
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def compute_dtype(device: torch.device) -> torch.dtype:
    """The dtype weights are held in for inference on ``device``: bf16 where supported, else fp32."""
    return torch.bfloat16 if use_bf16(device) else torch.float32


def autocast(device: torch.device):
    """A bf16 autocast context on GPUs that support it, a no-op elsewhere."""
    if use_bf16(device):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def synchronize(device: torch.device) -> None:
    """Wait for queued work on ``device`` (for timing); a no-op on CPUs."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def torch_threads(count: int | None):
    """Run the block with ``count`` intra-op threads (None: leave them), restoring the previous count after."""
    if count is None:
        yield
        return
    saved = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(saved)
