"""Derived seeds: one integer seed per piece of a seeded job, distinct per piece and fixed by the job's seed."""

from __future__ import annotations

import numpy as np


def derive_seed(seed: int, *keys: int) -> int:
    """A non-negative 63-bit seed from ``seed`` and the integer ``keys`` that name the piece (a batch, a window)."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1, np.uint64)[0] >> 1)
