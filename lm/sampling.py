"""Choosing the next id from logits: greedy, or a draw after temperature, top-k and top-p (nucleus) filtering.

The logits come already guided and masked (ids a row may not emit are ``-inf``), so a
draw can never pick them: they get probability 0. The draw is the argmax of the
probabilities over exponential noise from the caller's ``torch.Generator``, which is a
multinomial draw without its cumulative sum and search (the same seed gives the same ids).

Follows: nanochat's ``sample_next_token`` (top-k, then a draw from a seeded generator)
and LlamaGen / gpt-fast (top-k and nucleus filtering; the exponential-noise draw).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from reelm.core.errors import ReelmError


class SamplingError(ReelmError):
    """Sampling settings that cannot be used."""


@dataclass(frozen=True, kw_only=True)
class Sampling:
    """How the next id is chosen. ``greedy`` (or ``temperature=0``) takes the most likely id."""

    temperature: float = 1.0
    top_k: int | None = None  # keep the k most likely ids
    top_p: float | None = None  # keep the most likely ids holding this much probability
    greedy: bool = False

    def __post_init__(self):
        if not isinstance(self.temperature, (int, float)) or not math.isfinite(self.temperature) \
                or self.temperature < 0:
            raise SamplingError(f"temperature {self.temperature!r}: expected a finite number >= 0")
        if self.top_k is not None and (isinstance(self.top_k, bool) or not isinstance(self.top_k, int)
                                       or self.top_k < 1):
            raise SamplingError(f"top_k {self.top_k!r}: expected a positive integer (or none)")
        if self.top_p is not None and (not isinstance(self.top_p, (int, float)) or not 0 < self.top_p <= 1):
            raise SamplingError(f"top_p {self.top_p!r}: expected a number in (0, 1] (or none)")

    @property
    def is_greedy(self) -> bool:
        return self.greedy or self.temperature == 0

    def to_dict(self) -> dict:
        return {"temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p, "greedy": self.is_greedy}


def sample(logits: torch.Tensor, sampling: Sampling,
           generator: torch.Generator | Sequence[torch.Generator] | None = None) -> torch.Tensor:
    """``(rows,)`` long: one column index of ``logits`` ``(rows, width)`` per row.

    ``generator`` is one generator for all rows, or one per row: then each row's draw depends on its
    own generator only, so a row samples the same ids whatever other rows share its batch.
    """
    if sampling.is_greedy:
        return logits.argmax(dim=-1)
    logits = logits.float()
    if sampling.temperature != 1:
        logits = logits / sampling.temperature
    top_p = sampling.top_p if sampling.top_p is not None and sampling.top_p < 1 else None
    index = None
    if sampling.top_k is not None and sampling.top_k < logits.shape[-1]:
        logits, index = logits.topk(sampling.top_k, dim=-1)  # (rows, k), sorted
    elif top_p is not None:
        logits, index = logits.sort(dim=-1, descending=True)
    probs = torch.softmax(logits, dim=-1)
    if top_p is not None:
        before = probs.cumsum(dim=-1) - probs  # (rows, k): the mass of the more likely ids
        probs = probs.masked_fill(before >= top_p, 0.0)
    if isinstance(generator, Sequence):
        noise = torch.stack([torch.empty_like(probs[0]).exponential_(generator=g) for g in generator])
    else:
        noise = torch.empty_like(probs).exponential_(generator=generator)
    noise = noise.clamp_min_(torch.finfo(probs.dtype).tiny)
    choice = (probs / noise).argmax(dim=-1)
    return choice if index is None else index.gather(-1, choice[:, None])[:, 0]
