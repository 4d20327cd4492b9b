"""The checkpoint format, shared by every trained model in reelm.

A run directory holds step-numbered checkpoints::

    RUN/
      step-000100/
        reelm.json                   what this is: kind, format version, reelm version, config, metadata
        model.safetensors            weights (the model's own files; the LM's are Hugging Face files)
        trainer_state.json           step, data position, RNG, ... (tensors referenced by key)
        trainer_state.safetensors    the tensors of that state (optimizer moments, RNG state)
      step-000200/
      ...

A checkpoint is written into a hidden staging folder (``.step-000200.partial``) and
renamed into place only once every file is on disk, so a visible ``step-*`` folder is
always complete: a crash or SIGKILL mid-save leaves the previous checkpoints intact. A save
that fails (a full disk) removes its staging folder and says so in one line; the previous
checkpoints stay. Nothing is ever pickled: weights and state tensors are safetensors, the
rest is JSON.

Each checkpoint lists its files and their sizes (``files.json``, written at commit). A run
folder's latest checkpoint is its newest one that passes :func:`verify_checkpoint` (every
listed file present, every safetensors file at its saved size and consistent with its header,
every JSON file parseable); a damaged newer one (a file truncated, deleted or overwritten after
the save) is skipped with a one-line warning, in favour of the one before. The last
``keep_last`` checkpoints are kept.

Follows: nanochat's checkpoint_manager (step-numbered model / meta / optimizer files,
one strict loader) and torchtitan's "trainer state saved and restored as one".
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from reelm import __version__
from reelm.core.atomic import describe_error, publish_dir, staging_path, write_json, write_text
from reelm.core.errors import ReelmError, warn

FORMAT_VERSION = 1
META_FILE = "reelm.json"
FILES_FILE = "files.json"  # every file of the checkpoint and its size, written at commit
STEP_PREFIX = "step-"


class CheckpointError(ReelmError):
    """A checkpoint that is missing, incomplete, or of another kind/version."""


def step_dir_name(step: int) -> str:
    return f"{STEP_PREFIX}{step:06d}"


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``run_dir``, oldest first."""
    run_dir = Path(run_dir)
    found = []
    if run_dir.is_dir():
        for child in run_dir.iterdir():
            name = child.name
            if child.is_dir() and name.startswith(STEP_PREFIX) and name[len(STEP_PREFIX):].isdigit():
                if (child / META_FILE).is_file():
                    found.append((int(name[len(STEP_PREFIX):]), child))
    return sorted(found)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder (as given: its loader checks it), or a run folder's latest usable checkpoint
    (see :func:`latest_checkpoint`)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: not found; give a run folder or a {STEP_PREFIX}NNNNNN checkpoint folder")
    if (path / META_FILE).is_file():
        return path
    return latest_checkpoint(path)


_warned: set[tuple[str, str]] = set()


def latest_checkpoint(run_dir: str | Path) -> Path:
    """The newest checkpoint of ``run_dir`` that :func:`verify_checkpoint` passes; each damaged newer one is
    skipped with a one-line warning. A :class:`CheckpointError` when there is none."""
    run_dir = Path(run_dir)
    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        raise CheckpointError(f"{run_dir}: neither a checkpoint (no {META_FILE}) nor a run folder with checkpoints; "
                              f"give the --out folder of a training run, or one of its {STEP_PREFIX}NNNNNN folders")
    damaged = []
    for _, folder in reversed(checkpoints):
        problem = verify_checkpoint(folder)
        if problem is None:
            for bad, why in damaged:
                if (str(bad), why) not in _warned:  # once per process, however often the run is looked up
                    _warned.add((str(bad), why))
                    warn(f"{bad} is damaged ({why}); skipping it for {folder.name}")
            return folder
        damaged.append((folder, problem))
    raise CheckpointError(f"{run_dir}: every checkpoint is damaged (newest: {damaged[0][0].name}: {damaged[0][1]}); "
                          "start a new run")


def verify_checkpoint(folder: str | Path) -> str | None:
    """What is wrong with a checkpoint folder (one line), or ``None``: a file listed in ``files.json`` missing
    (or a safetensors file of another size than saved), or one of its own (top-level) safetensors files
    whose header does not match its size, or JSON files that do not parse. Cheap: reads headers, not weights."""
    folder = Path(folder)
    listing = folder / FILES_FILE
    if listing.is_file():
        try:
            expected = json.loads(listing.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return f"{FILES_FILE} does not parse ({exc})"
        for name, size in sorted(expected.items()):
            path = folder / name
            if not path.is_file():
                return f"{name} is missing"
            if name.endswith(".safetensors") and path.stat().st_size != size:  # JSON may be edited by hand
                return f"{name} is {path.stat().st_size} bytes, {size} when saved"
    for path in sorted(folder.iterdir()):  # a subfolder (the LM's video_tokenizer/) is checked when it is loaded
        if path.name.endswith(".safetensors"):
            problem = _safetensors_problem(path)
        elif path.suffix == ".json":
            problem = _json_problem(path)
        else:
            continue
        if problem:
            return f"{path.relative_to(folder)}: {problem}"
    return None


def _safetensors_problem(path: Path) -> str | None:
    size = path.stat().st_size
    try:
        with open(path, "rb") as fh:
            length = int.from_bytes(fh.read(8), "little")
            if size < 8 or length > size - 8:
                return f"truncated ({size} bytes)"
            header = json.loads(fh.read(length))
        end = max((int(entry["data_offsets"][1]) for key, entry in header.items() if key != "__metadata__"),
                  default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        return f"not a safetensors file ({type(exc).__name__})"
    if 8 + length + end != size:
        return f"{size} bytes where its header says {8 + length + end} (truncated or overwritten)"
    return None


def _json_problem(path: Path) -> str | None:
    try:
        json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        return f"does not parse as JSON ({type(exc).__name__})"
    return None


def read_meta(ckpt_dir: str | Path, kind: str | None = None) -> dict:
    """The checkpoint's ``reelm.json``, checked for its shape (an object whose ``config`` is an object),
    format version and (optionally) kind."""
    ckpt_dir = Path(ckpt_dir)
    meta_path = ckpt_dir / META_FILE
    try:
        meta = json.loads(meta_path.read_bytes())
    except FileNotFoundError:
        raise CheckpointError(f"{ckpt_dir}: not a reelm checkpoint (no {META_FILE}); give a training run folder or "
                              f"one of its {STEP_PREFIX}NNNNNN folders") from None
    except (OSError, ValueError) as exc:  # unreadable, not UTF-8, not JSON
        raise CheckpointError(f"{meta_path}: corrupt ({type(exc).__name__}: {exc}); use another checkpoint of the "
                              "run") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("config", {}), dict):
        raise CheckpointError(f"{meta_path}: not a reelm checkpoint description (expected a JSON object with a "
                              "'config' object); use another checkpoint of the run")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{ckpt_dir}: checkpoint format version {version!r}, this reelm reads {FORMAT_VERSION}; "
                              "use the reelm version that wrote it")
    if kind is not None and meta.get("kind") != kind:
        raise CheckpointError(f"{ckpt_dir}: a {meta.get('kind')!r} checkpoint, expected {kind!r}; give a {kind} "
                              "run folder or checkpoint folder")
    return meta


def write_meta(ckpt_dir: str | Path, kind: str, config: dict, **metadata: Any) -> None:
    meta = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "reelm_version": __version__,
        "config": config,
        **metadata,
    }
    write_json(Path(ckpt_dir) / META_FILE, meta, error=CheckpointError)


# --- atomic writing -------------------------------------------------------------------


def staging_dir(run_dir: str | Path, step: int) -> Path:
    """The hidden folder a checkpoint is written into before :func:`commit` publishes it.

    The name is deterministic so that every rank of a distributed job writes into the same one.
    """
    return staging_path(Path(run_dir) / step_dir_name(step))


def commit(run_dir: str | Path, step: int, keep_last: int | None = None) -> Path:
    """Publish the staged checkpoint of ``step`` atomically; prune to ``keep_last``."""
    run_dir = Path(run_dir)
    staged = staging_dir(run_dir, step)
    if not (staged / META_FILE).is_file():
        raise CheckpointError(f"{staged}: nothing staged to commit (no {META_FILE})")
    files = {str(p.relative_to(staged)): p.stat().st_size for p in sorted(staged.rglob("*")) if p.is_file()}
    write_json(staged / FILES_FILE, files, error=CheckpointError)
    final = publish_dir(staged, run_dir / step_dir_name(step))
    if keep_last is not None and keep_last > 0:
        for _, old in list_checkpoints(run_dir)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    write: Callable[[Path], None],
    keep_last: int | None = None,
) -> Path:
    """Single-process save: stage, let ``write(folder)`` fill it, commit. A failure (a full disk) removes the
    staging folder and raises one :class:`CheckpointError` line; earlier checkpoints are untouched."""
    staged = staging_dir(run_dir, step)
    shutil.rmtree(staged, ignore_errors=True)
    try:
        staged.mkdir(parents=True)
        write(staged)
        return commit(run_dir, step, keep_last=keep_last)
    except BaseException as exc:
        shutil.rmtree(staged, ignore_errors=True)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise save_failed(run_dir, step, exc) from exc


def save_failed(run_dir: str | Path, step: int, exc: BaseException) -> CheckpointError:
    """The one-line error of a checkpoint that could not be saved, naming the one that is intact."""
    previous = [p.name for s, p in list_checkpoints(run_dir) if s != step]
    kept = f"the previous checkpoint {previous[-1]} is intact" if previous else "no earlier checkpoint exists"
    reason = str(exc) if isinstance(exc, ReelmError) else describe_error(exc)
    return CheckpointError(f"{Path(run_dir) / step_dir_name(step)}: saving failed ({reason}); {kept}. Free space "
                           "(or fix the folder) and resume with --resume")


# --- nested state (optimizer, scheduler, RNG, data position) without pickle ---------------


def save_state(folder: str | Path, name: str, state: Any) -> None:
    """Write a nested dict/list state holding tensors as ``name.json`` + ``name.safetensors``."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(state, tensors, prefix="")
    folder = Path(folder)
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(folder / f"{name}.safetensors"))
    write_text(folder / f"{name}.json", json.dumps(skeleton, indent=1) + "\n", error=CheckpointError)


def load_state(folder: str | Path, name: str) -> Any:
    """Read what :func:`save_state` wrote."""
    folder = Path(folder)
    try:
        skeleton = json.loads((folder / f"{name}.json").read_text())
        tensors = load_file(str(folder / f"{name}.safetensors"))
    except FileNotFoundError as exc:
        raise CheckpointError(f"{folder}: missing {Path(exc.filename).name}") from None
    except Exception as exc:  # json and safetensors raise several types for damaged files
        raise CheckpointError(f"{folder}: {name} is damaged ({describe_error(exc)}); use an earlier checkpoint") from None
    return _unflatten(skeleton, tensors)


def _flatten(obj: Any, tensors: dict[str, torch.Tensor], prefix: str) -> Any:
    if isinstance(obj, torch.Tensor):
        key = prefix or "root"
        tensors[key] = obj
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        key = prefix or "root"
        tensors[key] = torch.from_numpy(np.ascontiguousarray(obj))
        return {"__ndarray__": key}
    if isinstance(obj, dict):
        if not all(isinstance(k, (str, int)) for k in obj):
            raise TypeError(f"state keys must be str or int at {prefix!r}")
        return {
            "__dict__": [[k, _flatten(v, tensors, f"{prefix}.{k}" if prefix else str(k))] for k, v in obj.items()]
        }
    if isinstance(obj, tuple):
        return {"__tuple__": [_flatten(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_flatten(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix!r} in a checkpoint")


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__ndarray__" in obj:
            return tensors[obj["__ndarray__"]].numpy()
        if "__tuple__" in obj:
            return tuple(_unflatten(v, tensors) for v in obj["__tuple__"])
        if "__dict__" in obj:
            return {k: _unflatten(v, tensors) for k, v in obj["__dict__"]}
    return obj


def capture_rng() -> dict:
    """Every RNG a training step may draw from, as checkpointable state."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(tuple(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))
