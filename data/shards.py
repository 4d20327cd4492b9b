"""Pre-tokenized shards: the Arrow dataset of video codes + caption ids the LM trains on.

A shard folder written by ``reelm data tokenize``::

    OUT/
      shards.json                     format version, video tokenizer identity, clip spec, source
      layout/                         the token layout (PreTrainedTokenizerFast-readable)
      parts/part-00000-of-00002/
        chunk-000000/                 a `datasets` Arrow dataset (save_to_disk) + skipped.jsonl
        chunk-000001/
        .chunk-000002.partial/        being written; never read
      summary.json                    used / skipped counts by reason, after a finished run

Part ``k`` of ``n`` holds the source rows with ``index % n == k``; chunk ``j`` of a part
holds its rows ``[j * S, (j + 1) * S)``. A chunk is staged in a hidden folder and renamed
into place whole, together with the record of the rows it skipped, so a killed run re-run
with the same arguments writes only the missing chunks: no duplicates, nothing half-written
visible.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import datasets

from reelm.config import load_json, save_json
from reelm.data.token_layout import TokenLayout
from reelm.errors import ReelmError

SHARDS_VERSION = 1
INFO_FILE = "shards.json"
LAYOUT_DIR = "layout"
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
    """Write one chunk atomically: stage ``.NAME.partial``, then rename to ``NAME``."""
    staged = folder.parent / f".{folder.name}.partial"
    shutil.rmtree(staged, ignore_errors=True)
    table = datasets.Dataset.from_list(records, features=FEATURES) if records else \
        datasets.Dataset.from_dict({name: [] for name in FEATURES}, features=FEATURES)
    table.save_to_disk(str(staged))
    (staged / SKIPPED_FILE).write_text("".join(json.dumps(s) + "\n" for s in skipped))
    for path in staged.iterdir():
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
    os.replace(staged, folder)
    return folder


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
    if info.get("format_version") != SHARDS_VERSION:
        raise ShardError(f"{out}: shard format version {info.get('format_version')}, this reelm reads {SHARDS_VERSION}")
    layout = TokenLayout.load(out / LAYOUT_DIR)
    chunks = chunk_folders(out)
    if not chunks:
        raise ShardError(f"{out}: no finished chunks yet")
    tables, skipped = [], []
    for chunk in chunks:
        try:
            tables.append(datasets.load_from_disk(str(chunk)))
        except Exception as exc:  # datasets raises several types for a damaged folder
            raise ShardError(f"{chunk}: unreadable chunk ({type(exc).__name__}: {exc})") from None
        skip_file = chunk / SKIPPED_FILE
        if skip_file.is_file():
            skipped += [json.loads(line) for line in skip_file.read_text().splitlines() if line]
    dataset = datasets.concatenate_datasets(tables)
    if len(dataset) == 0:
        raise ShardError(f"{out}: the shards hold no clips")
    return ShardSet(dataset=dataset, layout=layout, info=info, chunks=len(chunks), skipped=skipped)
