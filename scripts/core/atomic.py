"""Atomic writes: the one way reelm puts a file or a folder on disk.

A file is written to a hidden temporary name beside its destination, flushed to disk and
renamed onto it (:func:`atomic_write`, or :func:`atomic_file` for a writer that streams); a folder is filled under a hidden staging name and
published whole (:func:`publish_dir`). A reader therefore sees the previous version or the
new one, never half of either, and a crash or SIGKILL mid-write leaves the destination as
it was (at worst a hidden ``.NAME.*.partial`` beside it, which nothing reads).

Every checkpoint, shard chunk, codes file, video, contact sheet, text tokenizer, summary and
report goes through here. A failure becomes one :class:`AtomicWriteError` line naming the
destination (or the error type the caller names, e.g. ``VideoWriteError`` for videos); a
full, read-only or forbidden disk is said in words, with what to do (:func:`describe_error`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

from reelm.core.errors import ReelmError


class AtomicWriteError(ReelmError):
    """A file or folder that could not be written (missing folder, full disk, writer error)."""


def output_folder(path: str | Path, *, error: type[ReelmError] = AtomicWriteError) -> Path:
    """The folder an output file ``path`` goes into, made (with its parents) if missing, as ``--out`` folders
    are; one line of ``error`` when it cannot be (a file in the way, no permission)."""
    folder = Path(path).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise error(f"{path}: cannot make its folder {folder} ({describe_os_error(exc)})") from None
    if not folder.is_dir():
        raise error(f"{path}: {folder} is not a folder")
    return folder


@contextlib.contextmanager
def atomic_file(path: str | Path, *, error: type[ReelmError] = AtomicWriteError) -> Iterator[Path]:
    """A hidden temporary path beside ``path`` to fill in the ``with`` body; on success it is fsynced and
    renamed onto ``path``, on any exception removed (``path`` keeps its previous state) and the exception
    passes through unchanged. For writers that stream (a video written chunk by chunk)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise error(f"{path}: folder {path.parent} does not exist; create it first or write elsewhere")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    try:
        yield tmp
        try:
            _fsync_file(tmp)
            os.replace(tmp, path)
            fsync_dir(path.parent)
        except OSError as exc:
            raise error(f"{path}: writing failed ({describe_os_error(exc)})") from exc
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | Path, write: Callable[[Path], None], *,
                 error: type[ReelmError] = AtomicWriteError) -> Path:
    """Let ``write(tmp)`` fill a hidden file beside ``path``, fsync it, then rename it onto ``path``.

    If ``write`` fails (its exceptions other than :class:`ReelmError` become ``error``) or is
    interrupted, the temporary file is removed and ``path`` keeps its previous state.
    """
    with atomic_file(path, error=error) as tmp:
        try:
            write(tmp)
        except ReelmError:
            raise
        except Exception as exc:
            raise error(f"{path}: writing failed ({describe_error(exc)})") from exc
    return Path(path)


def describe_error(exc: BaseException) -> str:
    """One line for a failed write: what the OS said (with what to do for a full or read-only disk), or the error."""
    if isinstance(exc, OSError):
        return describe_os_error(exc)
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, OSError) and cause.errno in _ADVICE:
        return describe_os_error(cause)
    text = " ".join(str(exc).split())
    if "No space left on device" in text:  # libraries that report errno as text (safetensors, FFmpeg)
        return f"no space left on device: {_ADVICE[errno.ENOSPC]}"
    return f"{type(exc).__name__}: {text}"


_ADVICE = {
    errno.ENOSPC: "free some space or write to another disk",
    errno.EDQUOT: "the disk quota is used up; free some space or write to another disk",
    errno.EROFS: "the file system is read-only; write to another folder",
    errno.EACCES: "no permission to write there; write to another folder",
}


def describe_os_error(exc: OSError) -> str:
    reason = exc.strerror or str(exc) or type(exc).__name__
    advice = _ADVICE.get(exc.errno)
    return f"{reason.lower() if advice else reason}: {advice}" if advice else reason


def write_text(path: str | Path, text: str, **kwargs: Any) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), **kwargs)


def write_json(path: str | Path, payload: Any, **kwargs: Any) -> Path:
    """Write ``payload`` as indented, key-sorted JSON to ``path`` atomically."""
    return write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n", **kwargs)


def staging_path(final: str | Path) -> Path:
    """The hidden folder a folder is filled in before :func:`publish_dir` (deterministic: every rank finds it)."""
    final = Path(final)
    return final.with_name(f".{final.name}.partial")


def publish_dir(staged: str | Path, final: str | Path, *, replace: bool = True) -> Path:
    """Make the filled folder ``staged`` visible as ``final`` in one rename, after fsyncing every file.

    An existing ``final`` is replaced whole (``replace=True``), or left alone and ``staged``
    removed (``replace=False``: the first writer wins, for folders that several processes may
    race to create with the same content). Returns ``final``.
    """
    staged, final = Path(staged), Path(final)
    try:
        fsync_tree(staged)
        if final.exists():
            if not replace:
                shutil.rmtree(staged, ignore_errors=True)
                return final
            trash = final.with_name(f".{final.name}.{secrets.token_hex(4)}.old")
            os.replace(final, trash)
            os.replace(staged, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            try:
                os.rename(staged, final)
            except OSError:
                if replace or not final.exists():
                    raise
                shutil.rmtree(staged, ignore_errors=True)  # another process published it first
        fsync_dir(final.parent)
    except OSError as exc:
        raise AtomicWriteError(f"{final}: publishing failed ({describe_os_error(exc)})") from exc
    return final


def fsync_tree(folder: str | Path) -> None:
    """Flush every file under ``folder`` and the folder itself to disk."""
    folder = Path(folder)
    for path in folder.rglob("*"):
        if path.is_file():
            _fsync_file(path)
    fsync_dir(folder)


def fsync_dir(folder: str | Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())
