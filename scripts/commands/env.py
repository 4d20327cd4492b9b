"""``reelm env``: what a bug report needs — versions, the device and precision reelm would choose, bf16 support.

Package versions are read from the installed distributions' metadata, so an optional package
(DeepSpeed, flash-attn, TensorBoard) is reported without importing it; torch and PyAV are
imported for what only they know (CUDA, the GPU, the CPU's matmul features, FFmpeg's libraries).
``--json`` prints the same facts as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys

# Distributions reported, in this order (missing ones say so).
PACKAGES = ("reelm", "torch", "transformers", "deepspeed", "flash-attn", "peft", "datasets", "tokenizers",
            "vector-quantize-pytorch", "av", "numpy", "safetensors", "accelerate", "tensorboard", "wandb", "trackio",
            "fastapi", "uvicorn")


def register(subparsers) -> None:
    p = subparsers.add_parser("env", help="Print versions, the device and precision reelm would use (for bug reports).",
                              description="Print the versions of reelm's libraries, PyAV's FFmpeg, the device and "
                              "precision reelm would choose here and whether bf16 is native: paste it into a bug "
                              "report.")
    p.add_argument("--json", action="store_true", help="one JSON object instead of aligned lines")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    facts = collect()
    if args.json:
        print(json.dumps(facts, indent=2, sort_keys=False))
        return 0
    width = max(len(key) for key in _flat(facts))
    for key, value in _flat(facts).items():
        print(f"{key:<{width}}  {value}")
    return 0


def collect() -> dict:
    """The facts, as plain JSON-ready data."""
    import torch

    from reelm.core.device import compute_dtype, cpu_name, native_bf16, resolve_device, train_in_bf16
    from reelm.lm.model import select_attention

    device = resolve_device("auto")
    gpu = {"cuda_available": torch.cuda.is_available(), "cuda_version": torch.version.cuda,
           "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in PACKAGES},
        "ffmpeg": _ffmpeg(),
        "gpu": gpu,
        "cpu": {"name": cpu_name(), "threads": torch.get_num_threads(), "capability": torch.backends.cpu.get_cpu_capability(),
                "amx": _cpu_check("_is_amx_tile_supported"), "avx512_bf16": _cpu_check("_is_avx512_bf16_supported")},
        "reelm_would_use": {
            "device": str(device),
            "training_precision": "bf16 mixed" if train_in_bf16(device) else "fp32",
            "inference_dtype": str(compute_dtype(device)).removeprefix("torch."),
            "bf16_native": native_bf16(device),
            "attention": select_attention(device),
        },
    }


def _version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _ffmpeg() -> dict:
    try:
        import av
    except ImportError:
        return {"error": "PyAV is not importable"}
    return {name: ".".join(map(str, version)) for name, version in sorted(av.library_versions.items())}


def _cpu_check(name: str) -> bool | None:
    import torch

    check = getattr(torch.cpu, name, None)
    return None if check is None else bool(check())


def _flat(facts: dict, prefix: str = "") -> dict:
    """``{"packages.torch": "2.13.0", ...}``: nested facts as dotted keys, lists joined."""
    flat = {}
    for key, value in facts.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = ", ".join(map(str, value)) or "none" if isinstance(value, list) else value
    return flat
