"""Device and precision choice: the one place ``--device auto`` is resolved and bf16 is decided.

Every command that runs a model takes ``--device auto|cpu|cuda|cuda:N``. ``auto`` is the GPU
when PyTorch sees one, else the CPU; a process launched as one rank of several
(``LOCAL_RANK``) takes the GPU of its local rank.

Precision. Training (``precision`` in both trainers' configs: ``auto``, ``bf16`` or ``fp32``)
runs in bf16 mixed precision where the hardware multiplies bf16 natively: GPUs with bf16
support, and CPUs with AMX or AVX512-BF16 (Intel Sapphire Rapids and later, AMD Zen 4 and
later), where oneDNN's bf16 matmuls and convolutions are several times its fp32 ones; elsewhere,
and with ``precision=fp32``, it is full fp32. Weights are always kept in fp32 on CPUs (autocast
computes in bf16). Inference holds its weights in bf16 on GPUs and in fp32 on CPUs.
"""

from __future__ import annotations

import contextlib
import os

import torch

from reelm.core.errors import ReelmError

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


PRECISIONS = ("auto", "bf16", "fp32")


def use_bf16(device: torch.device) -> bool:
    """Whether inference on ``device`` holds its weights in bf16 (GPUs with bf16 support) rather than fp32."""
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 in hardware: a GPU with bf16 support, a CPU with AMX or AVX512-BF16."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    checks = (getattr(torch.cpu, "_is_amx_tile_supported", None), getattr(torch.cpu, "_is_avx512_bf16_supported", None))
    return any(check is not None and bool(check()) for check in checks)


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``; elsewhere what ``platform`` knows), for benchmark reports."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def train_in_bf16(device: torch.device, precision: str = "auto") -> bool:
    """Whether training on ``device`` runs in bf16 mixed precision under the ``precision`` setting.

    ``auto`` is bf16 where :func:`native_bf16` holds, fp32 elsewhere; ``bf16`` insists (an error
    where the hardware would emulate it, many times slower); ``fp32`` never uses bf16.
    """
    if precision not in PRECISIONS:
        raise ReelmError(f"precision {precision!r}: choose from {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return False
    native = native_bf16(device)
    if precision == "bf16" and not native:
        raise ReelmError(f"precision=bf16: this {device.type.upper()} has no native bf16 arithmetic "
                         "(AMX or AVX512-BF16 on CPUs); use precision=auto or fp32")
    return native


def saved_precision(train_config: dict) -> dict:
    """A saved training config with its ``precision``; one saved before the setting existed gets the one it ran in.

    Runs before 2026-11-26 trained in bf16 on GPUs and in fp32 on CPUs: ``auto`` keeps that on
    GPUs, ``fp32`` on CPUs (``auto`` there would switch a resumed run to bf16 on AMX CPUs).
    """
    if "precision" in train_config:
        return train_config
    return {**train_config, "precision": "auto" if torch.cuda.is_available() else "fp32"}


def compute_dtype(device: torch.device) -> torch.dtype:
    """The dtype weights are held in for inference on ``device``: bf16 where supported, else fp32."""
    return torch.bfloat16 if use_bf16(device) else torch.float32


def autocast(device: torch.device, enabled: bool | None = None):
    """A bf16 autocast context on ``device`` when ``enabled`` (None: where :func:`use_bf16` holds), else a no-op."""
    if use_bf16(device) if enabled is None else enabled:
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


def cxx_compiler() -> str | None:
    """The C++ compiler inductor would call ($CXX, else g++; clang++ on macOS), if it is on PATH."""
    import shutil

    from torch._inductor import config as inductor_config

    return shutil.which(inductor_config.cpp.cxx[-1])


def check_cpu_compile(device: torch.device, what: str) -> None:
    """Raise a clear error where ``torch.compile`` would fail on ``device``: a CPU without a C++ compiler."""
    if device.type == "cpu" and not cxx_compiler():
        raise ReelmError(f"{what} needs a C++ compiler for torch.compile on CPUs (g++, clang++ on macOS, or the one "
                         "$CXX names, on PATH); install one or leave it off")
