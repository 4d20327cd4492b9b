"""Pre-tokenized shards: the Arrow dataset of video codes + caption ids the LM trains on.

A shard folder written by ``reelm data tokenize``::

    OUT/
      shards.json                     format version, video tokenizer identity, clip spec, source
      layout/                         the token layout (PreTrainedTokenizerFast-readable)
      video_tokenizer/                the video tokenizer checkpoint the codes came from (copied in, so
                                      LM training can put it in every model folder it writes)
      parts/part-00000-of-00002/
        chunk-000000/                 a `datasets` Arrow dataset (save_to_disk) + skipped.jsonl
        chunk-000001/
        .chunk-000002.partial/        being written; never read
      summary-part-00000-of-00002.json  used / skipped counts by reason of a part, after each run
      errors.jsonl                    every skipped row of every finished chunk, with its reason

Part ``k`` of ``n`` holds the source rows with ``index % n == k``; chunk ``j`` of a part
holds its rows ``[j * S, (j + 1) * S)``. A chunk is staged in a hidden folder and renamed
into place whole, together with the record of the rows it skipped, so a killed run re-run
with the same arguments writes only the missing chunks: no duplicates, nothing half-written
visible.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import datasets

from reelm.core.atomic import publish_dir, staging_path, write_text
from reelm.core.config import load_json, save_json
from reelm.data.token_layout import TokenLayout
from reelm.core.errors import ReelmError

SHARDS_VERSION = 1
INFO_FILE = "shards.json"
LAYOUT_DIR = "layout"
VIDEO_TOKENIZER_DIR = "video_tokenizer"
PARTS_DIR = "parts"
SKIPPED_FILE = "skipped.jsonl"

FEATURES = datasets.Features({
    "codes": datasets.Sequence(datasets.Value("int32")),  # (t*h*w,) raster order, frame after frame
    "grid": datasets.Sequence(datasets.Value("int32"), length=3),  # (t, h, w)
    "caption": datasets.Value("string"),
    "caption_ids": datasets.Sequence(datasets.Value("int32")),
    "source": datasets.Value("string"),
    "row": datasets.Value("int64"),  # the source row index
    "clip": datasets.Value("int32"),  # the clip number within the row
    "start": datasets.Value("float32"),  # seconds into the source video
    "is_image": datasets.Value("bool"),
    "attributes": datasets.Value("string"),  # JSON ground truth when known (synthetic), else ""
})


class ShardError(ReelmError):
    """A shard folder that is missing, incomplete or of another version."""


def part_name(index: int, count: int) -> str:
    return f"part-{index:05d}-of-{count:05d}"


def chunk_name(index: int) -> str:
    return f"chunk-{index:06d}"


def part_dir(out: str | Path, index: int, count: int) -> Path:
    return Path(out) / PARTS_DIR / part_name(index, count)


def write_chunk(folder: Path, records: list[dict], skipped: list[dict]) -> Path:
    """Write one chunk atomically: stage ``.NAME.partial``, then publish it as ``NAME``."""
    staged = staging_path(folder)
    shutil.rmtree(staged, ignore_errors=True)
    table = datasets.Dataset.from_list(records, features=FEATURES) if records else \
        datasets.Dataset.from_dict({name: [] for name in FEATURES}, features=FEATURES)
    with _quiet_datasets():
        table.save_to_disk(str(staged))
    (staged / SKIPPED_FILE).write_text("".join(json.dumps(s) + "\n" for s in skipped))
    return publish_dir(staged, folder)


@contextlib.contextmanager
def _quiet_datasets():
    """No progress bar of ``datasets``' own for a chunk (the job's bar counts rows); the previous state after."""
    from datasets.utils import logging as ds_logging

    was_enabled = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            ds_logging.enable_progress_bar()


def write_info(out: str | Path, info: dict) -> None:
    """Write ``shards.json``, or check that an existing one describes the same job."""
    path = Path(out) / INFO_FILE
    info = {"format_version": SHARDS_VERSION, **info}
    if path.exists():
        existing = load_json(path)
        if existing != json.loads(json.dumps(info)):
            changed = sorted(k for k in set(existing) | set(info) if existing.get(k) != info.get(k))
            raise ShardError(f"{out}: holds shards of another job (differs in {changed}); use a new --out")
        return
    save_json(path, info)


@dataclass(frozen=True, eq=False)
class ShardSet:
    dataset: datasets.Dataset
    layout: TokenLayout
    info: dict
    chunks: int
    skipped: list[dict]
    video_tokenizer: Path | None  # the video tokenizer checkpoint folder, None in shards made before reelm 0.2


def chunk_folders(out: str | Path) -> list[Path]:
    parts = Path(out) / PARTS_DIR
    if not parts.is_dir():
        return []
    return sorted(c for c in parts.glob("part-*/chunk-*") if c.is_dir())


def load_shards(out: str | Path) -> ShardSet:
    """Every complete chunk of a shard folder as one memory-mapped dataset, with its layout."""
    out = Path(out)
    if not (out / INFO_FILE).is_file():
        raise ShardError(f"{out}: not a shard folder (no {INFO_FILE}); make one with 'reelm data tokenize'")
    info = load_json(out / INFO_FILE)
    if not isinstance(info, dict):
        raise ShardError(f"{out}/{INFO_FILE}: expected a JSON object; make the shards again with 'reelm data tokenize'")
    if info.get("format_version") != SHARDS_VERSION:
        raise ShardError(f"{out}: shard format version {info.get('format_version')!r}, this reelm reads "
                         f"{SHARDS_VERSION}; make the shards again with 'reelm data tokenize'")
    layout = TokenLayout.load(out / LAYOUT_DIR)
    chunks = chunk_folders(out)
    if not chunks:
        raise ShardError(f"{out}: no finished chunks yet; run (or finish) 'reelm data tokenize --out {out}' first")
    tables, skipped = [], []
    for chunk in chunks:
        table = read_chunk(chunk)
        if table is not None:
            tables.append(table)
        skip_file = chunk / SKIPPED_FILE
        if skip_file.is_file():
            skipped += [json.loads(line) for line in skip_file.read_text().splitlines() if line]
    if not tables:
        raise ShardError(f"{out}: the shards hold no clips (every row was skipped: see {out}/errors.jsonl)")
    dataset = datasets.concatenate_datasets(tables)
    video_tokenizer = out / VIDEO_TOKENIZER_DIR
    return ShardSet(dataset=dataset, layout=layout, info=info, chunks=len(chunks), skipped=skipped,
                    video_tokenizer=video_tokenizer if (video_tokenizer / "reelm.json").is_file() else None)


def read_chunk(chunk: Path) -> datasets.Dataset | None:
    """One finished chunk as a memory-mapped dataset, or ``None`` for a chunk whose every row was skipped."""
    try:
        if not load_json(chunk / "state.json").get("_data_files"):
            return None  # datasets saves an empty table without data files and cannot load it back
        return datasets.load_from_disk(str(chunk))
    except Exception as exc:  # datasets raises several types for a damaged folder
        raise ShardError(f"{chunk}: unreadable chunk ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); "
                         "delete it and re-run the same 'reelm data tokenize' command to write it again") from None


def skipped_counts(folder: Path) -> tuple[int, Counter]:
    """``(clips, skipped rows by reason)`` over every finished chunk of a part folder."""
    used, counts = 0, Counter()
    for chunk in sorted(c for c in folder.glob("chunk-*") if c.is_dir()):
        table = read_chunk(chunk)
        used += 0 if table is None else table.num_rows
        for line in (chunk / SKIPPED_FILE).read_text().splitlines():
            if line:
                counts[json.loads(line)["reason"]] += 1
    return used, counts


def write_summary(folder: Path, summary: dict) -> Path:
    """``OUT/summary-PART.json`` of a part, beside its ``parts/`` folder."""
    return save_json(folder.parent.parent / f"summary-{folder.name}.json", summary)


def write_errors_file(out: str | Path) -> Path:
    """``OUT/errors.jsonl``: every skipped row of every finished chunk, rewritten whole."""
    lines = []
    for chunk in chunk_folders(out):
        lines += [line + "\n" for line in (chunk / SKIPPED_FILE).read_text().splitlines() if line]
    return write_text(Path(out) / "errors.jsonl", "".join(lines))
