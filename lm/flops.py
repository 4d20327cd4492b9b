"""Model FLOPs utilisation: the model's training FLOPs per token and the device's measured peak.

MFU is model FLOPs per second (:func:`flops_per_token` times tokens per second) over the
peak, which :func:`measure_peak_flops` measures as large matmuls on the training device.

Follows: Kaplan et al. 2020 / PaLM (Chowdhery et al. 2022) appendix B, MFU accounting.
"""

from __future__ import annotations

import statistics
import time

import torch
from transformers import LlamaForCausalLM

from reelm.core.device import synchronize


def non_embedding_parameters(model: LlamaForCausalLM) -> int:
    embed = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    total = sum(p.numel() for p in model.parameters())
    return total - embed.numel() - (0 if head is embed else head.numel())


def flops_per_token(model: LlamaForCausalLM, seq_len: int) -> float:
    """Training FLOPs per token: 6 N (non-embedding) + the LM head + causal attention.

    Follows: Kaplan et al. / PaLM appendix B (MFU accounting); attention counts the
    QK^T and AV matmuls over an average causal context of ``seq_len / 2``, times 3 for
    forward + backward.
    """
    c = model.config
    head = 6 * c.hidden_size * c.vocab_size
    attention = 3 * 2 * 2 * c.num_hidden_layers * c.hidden_size * (seq_len / 2)
    return 6 * non_embedding_parameters(model) + head + attention


def measure_peak_flops(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, *,
                       size: int | None = None, repeats: int = 5) -> float:
    """FLOP/s of large square matmuls on ``device`` (all its threads), the median of ``repeats`` timings."""
    device = torch.device(device)
    size = size or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    out = torch.empty(size, size, device=device, dtype=dtype)
    timings = []
    for i in range(repeats + 1):
        synchronize(device)
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        synchronize(device)
        if i:  # the first one warms up
            timings.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(timings)
