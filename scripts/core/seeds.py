"""Derived seeds: one integer seed per piece of a seeded job, distinct per piece and fixed by the job's seed."""

from __future__ import annotations

import numpy as np


def derive_seed(seed: int, *keys: int) -> int:
    """A non-negative 63-bit seed from ``seed`` and the integer ``keys`` that name the piece (a batch, a window)."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1, np.uint64)[0] >> 1)


def text_key(text: str) -> int:
    """A 63-bit integer standing for ``text`` in :func:`derive_seed` (the first bytes of its SHA-256)."""
    import hashlib

    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") >> 1
