"""Near-duplicates across a dataset, from each clip's signature of sampled-frame hashes and thumbnails.

Candidates come from banding: each clip's middle hash is cut into 4 bands of 16 bits, and two
clips whose middle hashes differ by at most 3 bits share a band (pigeonhole), so only clips that
share a band are compared. A pair is a duplicate when, over their sampled frames (matched in
order), the mean Hamming distance is at most ``max_bits`` and the mean thumbnail difference at
most ``max_color``. Groups are the connected pairs; the clip first in the dataset is the one kept,
every other member is a duplicate *of it*. ``max_bits`` above 3 also finds pairs whose middle hashes
differ more than the bands guarantee only when another band matches, which re-encodes nearly
always do (they flip 0-4 bits).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from reelm.eval.audit.audit_config import DuplicateCheck

BANDS = 4


def _bits(signature: list[dict]) -> np.ndarray:
    return np.array([int(s["hash"], 16) for s in signature], dtype=np.uint64)


def _distance(a: list[dict], b: list[dict]) -> tuple[float, float]:
    """Mean Hamming bits and mean thumbnail difference of two signatures, frames matched evenly in order."""
    n = min(len(a), len(b))
    ia = np.linspace(0, len(a) - 1, n).round().astype(int)
    ib = np.linspace(0, len(b) - 1, n).round().astype(int)
    xa, xb = _bits(a)[ia], _bits(b)[ib]
    bits = float(np.mean([bin(int(x) ^ int(y)).count("1") for x, y in zip(xa, xb)]))
    ta = np.array([a[i]["thumb"] for i in ia], dtype=np.float32)
    tb = np.array([b[i]["thumb"] for i in ib], dtype=np.float32)
    return bits, float(np.abs(ta - tb).mean())


def find_duplicates(signatures: dict[int, list[dict]], cfg: DuplicateCheck) -> dict[int, dict]:
    """``{index: {"of": kept index, "bits", "color"}}`` for every clip that duplicates an earlier one."""
    buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
    for index, signature in signatures.items():
        if not signature:
            continue
        middle = int(signature[len(signature) // 2]["hash"], 16)
        for band in range(BANDS):
            buckets[(band, (middle >> (16 * band)) & 0xFFFF)].append(index)
    parent = {i: i for i in signatures}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    pairs: dict[tuple[int, int], tuple[float, float]] = {}
    for members in buckets.values():
        for x in range(len(members)):
            for y in range(x + 1, len(members)):
                a, b = sorted((members[x], members[y]))
                if (a, b) in pairs:
                    continue
                bits, color = _distance(signatures[a], signatures[b])
                pairs[(a, b)] = (bits, color)
                if bits <= cfg.max_bits and color <= cfg.max_color:
                    ra, rb = root(a), root(b)
                    parent[max(ra, rb)] = min(ra, rb)
    found = {}
    for (a, b), (bits, color) in pairs.items():
        if bits <= cfg.max_bits and color <= cfg.max_color:
            keep = root(a)
            for member in (a, b):
                if member != keep and (member not in found or found[member]["bits"] > bits):
                    found[member] = {"of": keep, "bits": round(bits, 2), "color": round(color, 2)}
    return found
