"""The identity of a video tokenizer: what codes depend on, as plain JSON fields, and how two are compared.

Codes mean something only to the tokenizer that made them, so whatever holds codes records
that tokenizer's identity and refuses another: a codes file (``reelm tokenizer encode``), a
token layout (shards, LM model folders). The identity is the codebook size, the temporal and
spatial downsampling factors and a fingerprint of the weights, as written in the tokenizer
checkpoint's ``reelm.json``. This module owns those fields and the comparison; it needs no
pixels and no model, so the LM side (which handles token ids only) reads identities from
JSON with it and the tokenizer side computes them from a model
(:func:`reelm.tokenizer.tokenizer_checkpoint.tokenizer_identity`).
"""

from __future__ import annotations

from typing import Any, Mapping

IDENTITY_VERSION = 1
IDENTITY_FIELDS = ("codebook_size", "temporal_downsample", "spatial_downsample", "fingerprint")


def identity(*, codebook_size: int, temporal_downsample: int, spatial_downsample: int,
             fingerprint: str) -> dict[str, Any]:
    """An identity record (what a codes file stores), versioned."""
    return {"identity_version": IDENTITY_VERSION, "codebook_size": codebook_size,
            "temporal_downsample": temporal_downsample, "spatial_downsample": spatial_downsample,
            "fingerprint": fingerprint}


def identity_from_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The identity fields a tokenizer checkpoint's ``reelm.json`` records (those it has)."""
    return {key: meta[key] for key in IDENTITY_FIELDS if key in meta}


def identity_differences(saved: Mapping[str, Any], current: Mapping[str, Any],
                         keys: tuple[str, ...] | None = None) -> list[str]:
    """``"KEY SAVED != CURRENT"`` for every key (default: the version and the identity fields) that differs."""
    keys = ("identity_version", *IDENTITY_FIELDS) if keys is None else keys
    return [f"{key} {saved.get(key)!r} != {current.get(key)!r}" for key in keys if saved.get(key) != current.get(key)]
