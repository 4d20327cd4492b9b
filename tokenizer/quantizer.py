"""The one quantizer adapter: LFQ, FSQ or VQ behind a single result type.

vector-quantize-pytorch's three quantizers take and return different things (LFQ: a
namedtuple with an entropy loss; FSQ: a pair, int32 indices, no loss; VQ: a triple and an
EMA codebook). :class:`Quantizer` wraps them once so the tokenizer, its losses and the
codes files only ever see :class:`QuantizeResult` and ``indices_to_codes``.

Follows: MAGVIT-v2 lookup-free quantization (Yu et al. 2023), FSQ (Mentzer et al. 2023),
VQ-VAE with EMA codebook updates (van den Oord et al. 2017), all as implemented in
lucidrains/vector-quantize-pytorch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from einops import rearrange
from torch import nn
from vector_quantize_pytorch import FSQ, LFQ, VectorQuantize

from reelm.core.config import ConfigError
from reelm.core.errors import ReelmError

KINDS = ("lfq", "fsq", "vq")


@dataclass(kw_only=True)
class QuantizerConfig:
    kind: str = "lfq"  # "lfq" | "fsq" | "vq"
    codebook_size: int = 2**10  # lfq (a power of 2) and vq; fsq's is the product of `levels`
    lfq_groups: int = 1  # lfq: entropy computed over this many factorized sub-codebooks
    entropy_loss_weight: float = 0.1  # lfq
    diversity_gamma: float = 1.0  # lfq: weight of the batch-entropy (codebook usage) term
    commitment_weight: float = 0.25  # lfq and vq
    levels: tuple[int, ...] = (8, 5, 5, 5)  # fsq: levels per latent channel
    dim: int = 8  # vq: code vector size
    ema_decay: float = 0.99  # vq
    kmeans_init: bool = False  # vq: initialise the codebook by k-means on the first batch


class QuantizeResult(NamedTuple):
    codes: torch.Tensor  # (B, D, t, h, w) float, what the decoder consumes
    indices: torch.Tensor  # (B, t, h, w) long, in [0, codebook_size)
    aux_loss: torch.Tensor  # () the quantizer's own weighted losses (entropy, commitment)
    metrics: dict[str, torch.Tensor]  # () detached scalars to log


def latent_dim(cfg: QuantizerConfig) -> int:
    """Channels the encoder must produce for this quantizer (no projections inside it)."""
    if cfg.kind == "lfq":
        return int(math.log2(cfg.codebook_size))
    if cfg.kind == "fsq":
        return len(cfg.levels)
    return cfg.dim


def validate(cfg: QuantizerConfig) -> None:
    if cfg.kind not in KINDS:
        raise ConfigError(f"quantizer.kind {cfg.kind!r}: choose from {list(KINDS)}")
    if cfg.kind == "lfq":
        bits = math.log2(cfg.codebook_size) if cfg.codebook_size > 1 else 0.5
        if not bits.is_integer():
            raise ConfigError(f"quantizer.codebook_size {cfg.codebook_size}: LFQ needs a power of 2")
        if cfg.lfq_groups < 1 or int(bits) % cfg.lfq_groups:
            raise ConfigError(f"quantizer.lfq_groups {cfg.lfq_groups}: must divide log2(codebook_size) = {int(bits)}")
    if cfg.kind == "fsq" and (not cfg.levels or min(cfg.levels) < 3):
        raise ConfigError(f"quantizer.levels {list(cfg.levels)}: FSQ needs at least one level, each >= 3")
    if cfg.kind == "vq" and (cfg.codebook_size < 2 or cfg.dim < 1):
        raise ConfigError(f"quantizer: VQ needs codebook_size >= 2 and dim >= 1, got {cfg.codebook_size}, {cfg.dim}")


class Quantizer(nn.Module):
    """(B, D, t, h, w) latents -> :class:`QuantizeResult`, for any of the three kinds."""

    def __init__(self, cfg: QuantizerConfig):
        super().__init__()
        validate(cfg)
        self.cfg = cfg
        self.kind = cfg.kind
        self.dim = latent_dim(cfg)
        if cfg.kind == "lfq":
            self.group_size = 2 ** (self.dim // cfg.lfq_groups)
            self.impl = LFQ(
                dim=self.dim,
                codebook_size=self.group_size,  # per group
                num_codebooks=cfg.lfq_groups,
                keep_num_codebooks_dim=True,
                entropy_loss_weight=cfg.entropy_loss_weight,
                commitment_loss_weight=cfg.commitment_weight,
                diversity_gamma=cfg.diversity_gamma,
                has_projections=False,
            )
            self._size = cfg.codebook_size
            place = [self.group_size ** (cfg.lfq_groups - 1 - g) for g in range(cfg.lfq_groups)]
            self.register_buffer("group_place", torch.tensor(place), persistent=False)  # (G,)
        elif cfg.kind == "fsq":
            self.impl = FSQ(levels=list(cfg.levels))
            self._size = math.prod(cfg.levels)
        else:
            self.impl = VectorQuantize(
                dim=cfg.dim,
                codebook_size=cfg.codebook_size,
                decay=cfg.ema_decay,
                kmeans_init=cfg.kmeans_init,
                commitment_weight=cfg.commitment_weight,
                accept_3d_fmap=True,
            )
            self._size = cfg.codebook_size

    @property
    def codebook_size(self) -> int:
        return self._size

    def forward(self, z: torch.Tensor) -> QuantizeResult:  # (B, D, t, h, w)
        metrics: dict[str, torch.Tensor] = {}
        if self.kind == "lfq":
            (codes, indices, aux_loss), parts = self.impl(z, return_loss_breakdown=True)
            indices = self._merge_groups(indices)  # (B, t, h, w, G) -> (B, t, h, w)
            if self.training:
                metrics["per_sample_entropy"] = parts.per_sample_entropy.detach()
                metrics["batch_entropy"] = parts.batch_entropy.detach()
        elif self.kind == "fsq":
            codes, indices = self.impl(z)
            aux_loss = z.new_zeros(())
        else:
            codes, indices, aux_loss = self.impl(z)
        indices = indices.long()  # (B, t, h, w)
        metrics.update(usage_metrics(indices, self.codebook_size))
        return QuantizeResult(codes, indices, aux_loss.reshape(()), metrics)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:  # (B, t, h, w) -> (B, D, t, h, w)
        check_indices(indices, self.codebook_size)
        if self.kind == "lfq":
            return self.impl.indices_to_codes(self._split_groups(indices))
        if self.kind == "fsq":
            return self.impl.indices_to_codes(indices)
        return self.impl.get_output_from_indices(indices)

    def _merge_groups(self, indices: torch.Tensor) -> torch.Tensor:
        """LFQ sub-codebook indices (..., G) -> one index, equal to the ungrouped one (bits MSB first)."""
        return (indices.long() * self.group_place).sum(-1)

    def _split_groups(self, indices: torch.Tensor) -> torch.Tensor:  # (...) -> (..., G)
        return (rearrange(indices, "... -> ... 1") // self.group_place) % self.group_size


def usage_metrics(indices: torch.Tensor, codebook_size: int) -> dict[str, torch.Tensor]:
    """Fraction of the codebook used in this batch and the code perplexity (no host sync)."""
    flat = indices.detach().flatten()
    ones = torch.ones(flat.shape, device=flat.device)
    counts = torch.zeros(codebook_size, device=flat.device).index_add_(0, flat, ones)
    probs = counts / counts.sum().clamp(min=1)
    entropy = -(probs * probs.clamp(min=1e-12).log()).sum()
    return {"codebook_usage": (counts > 0).float().mean(), "perplexity": entropy.exp()}


def check_indices(indices: torch.Tensor, codebook_size: int) -> None:
    if indices.dtype.is_floating_point or indices.dtype == torch.bool:
        raise ReelmError(f"code indices must be an integer tensor, got {indices.dtype}")
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= codebook_size):
        raise ReelmError(
            f"code indices must lie in [0, {codebook_size}), got values in [{int(indices.min())}, {int(indices.max())}]"
        )
