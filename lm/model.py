"""The multimodal LM: a Hugging Face Llama causal LM over the token layout's vocabulary.

Text tokens, special tokens and video codes share one vocabulary (owned by
``reelm.data.token_layout``); the model itself is a plain ``LlamaForCausalLM``, so
``from_pretrained``, ``generate``, the attention backends and serving engines all work on it.
The attention implementation is chosen once, when the model is built: ``flash_attention_2``
when flash-attn is installed and the model lives on a GPU, ``sdpa`` otherwise. Packed
sequences need no special model code: position ids restart at 0 for every document, and
transformers turns that into a block-diagonal causal mask (SDPA/eager) or the varlen kernel
(flash-attention), so documents never attend to each other.

Follows: VideoPoet (one decoder-only LM over text and MAGVIT-v2 video tokens), Llama.
"""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from reelm.config import resolve_preset
from reelm.errors import ReelmError


@dataclass(kw_only=True)
class LMConfig:
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int | None = None  # None: as many as num_heads (no grouped-query attention)
    intermediate_size: int | None = None  # None: the Llama ratio, 8/3 * hidden rounded up to 64
    max_position_embeddings: int = 2048
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = True
    initializer_range: float = 0.02
    pad_vocab_to_multiple_of: int = 64  # padded ids are never produced by the token layout


def tiny() -> LMConfig:
    """~2M non-embedding parameters: CPU tests and the demo."""
    return LMConfig(hidden_size=192, num_layers=4, num_heads=4, max_position_embeddings=2048)


def small() -> LMConfig:
    """~42M non-embedding parameters: wide and shallow (768 x 6, heads of 128), so matmuls dominate a CPU step.

    At the same block and batch, 768 x 6 reached a higher share of the reference CPU's fp32 matmul
    peak than 512 x 10 (32M) or 640 x 8 (40M): elementwise work grows with the width, matmuls
    with its square. Heads of 128 made the CPU attention kernel 3 % faster a step than heads of
    64 (BENCHMARKS.md, LM training).
    """
    return LMConfig(hidden_size=768, num_layers=6, num_heads=6, max_position_embeddings=4096)


def base() -> LMConfig:
    """~300M non-embedding parameters."""
    return LMConfig(hidden_size=1024, num_layers=24, num_heads=16, max_position_embeddings=8192)


def large() -> LMConfig:
    """~1B non-embedding parameters."""
    return LMConfig(
        hidden_size=2048, num_layers=20, num_heads=16, num_kv_heads=8, max_position_embeddings=8192,
        tie_word_embeddings=False,
    )


PRESETS = {"tiny": tiny, "small": small, "base": base, "large": large}


def preset(name: str) -> LMConfig:
    return resolve_preset(PRESETS, name, "LM")


def intermediate_size(cfg: LMConfig) -> int:
    if cfg.intermediate_size is not None:
        return cfg.intermediate_size
    return 64 * -(-int(8 * cfg.hidden_size / 3) // 64)


def padded_vocab_size(cfg: LMConfig, vocab_size: int) -> int:
    multiple = max(1, cfg.pad_vocab_to_multiple_of)
    return multiple * -(-vocab_size // multiple)


def select_attention(device: torch.device | str) -> str:
    """``flash_attention_2`` with flash-attn on a GPU, else ``sdpa``."""
    device = torch.device(device)
    if device.type == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def hf_config(cfg: LMConfig, vocab_size: int, *, bos_id: int, eos_id: int, pad_id: int) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=padded_vocab_size(cfg, vocab_size),
        hidden_size=cfg.hidden_size,
        intermediate_size=intermediate_size(cfg),
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads or cfg.num_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        tie_word_embeddings=cfg.tie_word_embeddings,
        initializer_range=cfg.initializer_range,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
    )


def build_model(
    cfg: LMConfig,
    vocab_size: int,
    *,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    device: torch.device | str = "cpu",
    attn_implementation: str | None = None,
    dtype: torch.dtype = torch.float32,
) -> LlamaForCausalLM:
    """A freshly initialised model; the attention backend is resolved here, once."""
    config = hf_config(cfg, vocab_size, bos_id=bos_id, eos_id=eos_id, pad_id=pad_id)
    config._attn_implementation = attn_implementation or select_attention(device)
    model = LlamaForCausalLM(config).to(device=device, dtype=dtype)
    return model


def compile_layers(model: LlamaForCausalLM) -> None:
    """Compile every decoder layer and the final norm in place with ``torch.compile`` (regional compilation).

    Inductor fuses the elementwise work between the matmuls (RMSNorm, rotary, SwiGLU, residuals)
    forward and backward; the matmuls and the attention kernel stay library calls. One layer's
    code is compiled once and reused by the others, so the cost is seconds, at the first step.
    Parameter names, state dicts and checkpoints are unchanged. On CPUs inductor needs a C++
    compiler; without one this raises before any work is done.
    """
    if next(model.parameters()).device.type == "cpu" and not cxx_compiler():
        raise ReelmError("compile=true needs a C++ compiler for torch.compile on CPUs (g++, clang++ on macOS, "
                         "or the one $CXX names, on PATH); install one or leave compile=false")
    for layer in model.model.layers:
        layer.compile()
    model.model.norm.compile()


def cxx_compiler() -> str | None:
    """The C++ compiler inductor would call ($CXX, else g++; clang++ on macOS), if it is on PATH."""
    from torch._inductor import config as inductor_config

    return shutil.which(inductor_config.cpp.cxx[-1])
