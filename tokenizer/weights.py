"""Comparing and fingerprinting weight dicts (state dicts): shared by checkpoints and the LPIPS loader.

Follows: nanochat's strict loader (refuse, and say why, rather than load a partial model).
"""

from __future__ import annotations

import hashlib
from typing import Mapping

import torch


def state_mismatch(expected: Mapping[str, torch.Tensor], got: Mapping[str, torch.Tensor]) -> str | None:
    """A one-line description of how ``got`` differs from ``expected`` (keys, shapes), or None."""
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    wrong = sorted(k for k in set(expected) & set(got) if tuple(got[k].shape) != tuple(expected[k].shape))
    parts = [
        f"{len(keys)} {name} e.g. {keys[:3]}"
        for name, keys in (("missing", missing), ("unexpected", unexpected), ("with another shape", wrong))
        if keys
    ]
    return "; ".join(parts) or None


def fingerprint(state: Mapping[str, torch.Tensor]) -> str:
    """A short hash of names, dtypes, shapes and values: equal iff the weights are."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()[:16]
