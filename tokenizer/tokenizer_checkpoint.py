"""Tokenizer checkpoints (reelm's one format) and the tokenizer identity stamped on codes files.

A tokenizer checkpoint folder holds ``model.safetensors`` and ``reelm.json`` (kind
``video_tokenizer``, the model config — no training settings, no local paths — codebook
size, latent factors and a fingerprint of the weights). :func:`load_tokenizer` rebuilds the
model from the saved config alone and loads strictly. :func:`tokenizer_identity` /
:func:`check_identity` let a codes file (or a token layout) record which tokenizer made it
and refuse to decode it with another. The fingerprint is computed once, when the weights
are loaded or saved, and kept on the model (:meth:`VideoTokenizer.weights_fingerprint`).

Checkpoints written before reelm 0.2 also saved the training objective (``loss``) in the
model config; loading ignores it.

Follows: nanochat's checkpoint_manager (one strict loader, config saved with the weights).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from safetensors.torch import save_file

from reelm.core.checkpoint_format import CheckpointError, read_meta, resolve_checkpoint, write_meta
from reelm.core.config import from_dict, to_dict
from reelm.core.errors import ReelmError
from reelm.core.tokenizer_identity import IDENTITY_FIELDS, identity, identity_differences
from reelm.tokenizer.model import TokenizerConfig, VideoTokenizer
from reelm.core.weights import fingerprint, read_weights, state_mismatch

KIND = "video_tokenizer"
WEIGHTS_FILE = "model.safetensors"
LEGACY_TRAINING_KEY = "loss"  # pre-0.2 checkpoints kept the training objective in the model config


class TokenizerMismatchError(ReelmError):
    """Codes made by one tokenizer offered to another."""


def tokenizer_identity(model: VideoTokenizer) -> dict[str, Any]:
    """What codes depend on (:mod:`reelm.core.tokenizer_identity`), computed from ``model``."""
    return identity(codebook_size=model.codebook_size, temporal_downsample=model.temporal_downsample,
                    spatial_downsample=model.spatial_downsample, fingerprint=model.weights_fingerprint())


def check_identity(saved: Mapping[str, Any], model: VideoTokenizer, source: str = "codes") -> None:
    """Raise unless ``saved`` (a :func:`tokenizer_identity` stored with ``source``) is ``model``'s."""
    diffs = identity_differences(saved, tokenizer_identity(model))
    if diffs:
        raise TokenizerMismatchError(f"{source}: made by another tokenizer ({', '.join(diffs)}); use the tokenizer "
                                     "that made it, or make it again with this one")


def save_tokenizer(model: VideoTokenizer, folder: str | Path) -> Path:
    """Write ``model.safetensors`` then ``reelm.json`` into ``folder`` (use with reelm.core.checkpoint_format's staging)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE))
    model._fingerprint = fingerprint(state)
    record = tokenizer_identity(model)
    write_meta(folder, kind=KIND, config=to_dict(model.cfg), **{k: record[k] for k in IDENTITY_FIELDS})
    return folder


def load_tokenizer(path: str | Path) -> VideoTokenizer:
    """A tokenizer (in eval mode, on CPU) from a checkpoint folder or a run folder's latest checkpoint."""
    ckpt = resolve_checkpoint(path)
    meta = read_meta(ckpt, kind=KIND)
    config = {k: v for k, v in meta.get("config", {}).items() if k != LEGACY_TRAINING_KEY}
    try:
        model = VideoTokenizer(from_dict(TokenizerConfig, config, where=f"{ckpt}/reelm.json config"))
    except (ReelmError, TypeError) as exc:
        raise CheckpointError(f"{ckpt}: saved tokenizer config is unusable ({exc})") from None
    weights = ckpt / WEIGHTS_FILE
    state = read_weights(weights, error=CheckpointError, what="tokenizer weights")
    problem = state_mismatch(model.state_dict(), state)
    if problem:
        raise CheckpointError(f"{weights}: weights do not match the saved config ({problem})")
    loaded = fingerprint(state)
    if meta.get("fingerprint") != loaded:
        raise CheckpointError(f"{weights}: weights differ from those recorded in reelm.json (fingerprint mismatch)")
    model.load_state_dict(state, strict=True)
    model._fingerprint = loaded
    for key in IDENTITY_FIELDS[:-1]:
        if meta.get(key) != getattr(model, key):
            raise CheckpointError(
                f"{ckpt}: reelm.json says {key} {meta.get(key)!r}, its config gives {getattr(model, key)!r}"
            )
    model.eval()
    return model
