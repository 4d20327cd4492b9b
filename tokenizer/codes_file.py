"""The codes file: a clip's code grid plus what is needed to decode it, as ``.npz``.

``codes`` is the ``(t, h, w)`` int32 grid; ``meta`` is a JSON string holding the format
version, the tokenizer identity (codebook size, compression factors, weights fingerprint),
and the clip's frame count, size and fps. Loading never unpickles (``allow_pickle=False``: a
pickle renamed ``.npz`` is refused, never run), checks the fields decoding reads (types,
version, codes inside the codebook) and, in the caller, the file against the tokenizer that
is to decode it.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from reelm.core.atomic import atomic_write, output_folder
from reelm.core.errors import ReelmError

CODES_VERSION = 1


class CodesFileError(ReelmError):
    """A codes file that is missing, malformed, or made by another tokenizer."""


def check_codes_path(path: str | Path) -> Path:
    """``path`` if a codes file can be written there (``.npz``; its folder is made if missing): checked before any work."""
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise CodesFileError(f"{path}: a codes file is written as .npz; name the output e.g. {path.with_suffix('.npz').name}")
    output_folder(path, error=CodesFileError)
    return path


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
    """``(codes (t, h, w) int64, meta)``, every field checked; one :class:`CodesFileError` line otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CodesFileError(f"{path}: not found" if not path.exists() else f"{path}: not a file")
    try:
        with np.load(path, allow_pickle=False) as data:
            codes, meta = data["codes"], json.loads(str(data["meta"]))
    except (zipfile.BadZipFile, ValueError, KeyError, OSError, EOFError, AttributeError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise CodesFileError(f"{path}: not a reelm codes file ({type(exc).__name__}: {reason}); make one with "
                             "'reelm tokenizer encode'") from None
    if not isinstance(meta, dict) or meta.get("version") != CODES_VERSION:
        version = meta.get("version") if isinstance(meta, dict) else None
        raise CodesFileError(f"{path}: codes file version {version!r}, this reelm reads {CODES_VERSION}; "
                             "re-encode the video with 'reelm tokenizer encode'")
    if codes.ndim != 3 or 0 in codes.shape or not np.issubdtype(codes.dtype, np.integer):
        raise CodesFileError(f"{path}: codes are {codes.dtype} of shape {codes.shape}, expected a (t, h, w) integer grid")
    problems = [f"{key} {meta.get(key)!r} (expected {what})" for key, (check, what) in _META_FIELDS.items()
                if not check(meta.get(key))]
    if problems:
        raise CodesFileError(f"{path}: malformed metadata: {', '.join(problems)}")
    if codes.min() < 0 or codes.max() >= meta["tokenizer"].get("codebook_size", codes.max() + 1):
        raise CodesFileError(f"{path}: codes outside 0..{meta['tokenizer']['codebook_size'] - 1} (the codebook)")
    return codes.astype(np.int64), meta


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _fps(value) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 10_000)


def _identity(value) -> bool:
    return isinstance(value, dict) and all(_positive_int(value.get(k)) for k in ("codebook_size",))


_META_FIELDS = {
    "tokenizer": (_identity, "the identity of the tokenizer that made the codes"),
    "fps": (_fps, "a positive frame rate or null"),
}
