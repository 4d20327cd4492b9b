"""Weight files and weight dicts (state dicts): reading them safely, comparing, fingerprinting.

:func:`read_weights` is the one way reelm reads a weights file a user gives: safetensors, or a
PyTorch ``.pt`` / ``.pth`` state dict through ``torch.load(weights_only=True)`` (plain tensors
only: a pickle carrying code is refused, never run). Every failure is one line naming the
file. Shared by tokenizer checkpoints, the LPIPS loader and the eval detectors.

Follows: nanochat's strict loader (refuse, and say why, rather than load a partial model).
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path
from typing import Mapping

import torch

from reelm.core.errors import ReelmError, one_line_reason


def local_folder(path: str | Path, *, error: type[ReelmError] = ReelmError, what: str = "model folder") -> Path:
    """``path`` if it is a folder on this machine, else one ``error`` line. Called before any
    ``from_pretrained``: given a Hub repo id, transformers contacts the Hub even with ``local_files_only``."""
    if not Path(path).is_dir():
        raise error(f"{path}: not a {what} here (reelm loads local folders only, never from the Hub)")
    return Path(path)


def read_weights(path: str | Path, *, error: type[ReelmError] = ReelmError, what: str = "weights") -> dict:
    """The tensors of a safetensors file, or of a plain PyTorch state dict (``weights_only`` loading).

    The format is told from the bytes, not the name: a safetensors file starts with its
    8-byte header length and then ``{``; anything else goes to ``torch.load(weights_only=True)``.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {what} not found")
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
        if head[8:9] == b"{":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise error(f"{path}: refused: it holds pickled Python objects, not plain tensors (reelm never "
                    f"unpickles code from a file; save the {what} as a plain state dict or safetensors)") from None
    except Exception as exc:  # safetensors and torch.load raise several types for damaged files
        raise error(f"{path}: cannot read {what} ({one_line_reason(exc)})") from None
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise error(f"{path}: not a {what} file (expected a mapping of names to tensors)")
    return dict(state)


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
