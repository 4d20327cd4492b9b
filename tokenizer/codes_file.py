"""The codes file: a clip's code grid plus what is needed to decode it, as ``.npz``.

``codes`` is the ``(t, h, w)`` int32 grid; ``meta`` is a JSON string holding the format
version, the tokenizer identity (codebook size, compression factors, weights fingerprint),
and the clip's frame count, size and fps. Loading never unpickles (``allow_pickle=False``)
and checks the file against the tokenizer that is to decode it.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from reelm.atomic import atomic_write
from reelm.errors import ReelmError

CODES_VERSION = 1


class CodesFileError(ReelmError):
    """A codes file that is missing, malformed, or made by another tokenizer."""


def save_codes(path: str | Path, codes: np.ndarray, meta: dict) -> Path:
    codes = np.asarray(codes)
    if codes.ndim != 3:
        raise CodesFileError(f"{path}: codes must be a (t, h, w) grid, got shape {codes.shape}")
    payload = json.dumps({"version": CODES_VERSION, **meta}, sort_keys=True)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, codes=codes.astype(np.int32), meta=np.array(payload))

    return atomic_write(path, write, error=CodesFileError)


def load_codes(path: str | Path) -> tuple[np.ndarray, dict]:
    path = Path(path)
    if not path.is_file():
        raise CodesFileError(f"{path}: not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            codes, meta = data["codes"], json.loads(str(data["meta"]))
    except (zipfile.BadZipFile, ValueError, KeyError, OSError, EOFError) as exc:
        raise CodesFileError(f"{path}: not a reelm codes file ({type(exc).__name__}: {exc})") from None
    if meta.get("version") != CODES_VERSION:
        raise CodesFileError(f"{path}: codes file version {meta.get('version')}, this reelm reads {CODES_VERSION}")
    if codes.ndim != 3:
        raise CodesFileError(f"{path}: codes have shape {codes.shape}, expected (t, h, w)")
    return codes.astype(np.int64), meta
