"""Pre-tokenization: a video-text source becomes LM-ready Arrow shards of codes + caption ids.

Rows are read and cut into clips (:mod:`reelm.data.clips`, optionally in worker processes),
encoded by the video tokenizer in batches (on the GPU when there is one), and written as
chunks of a shard folder (:mod:`reelm.data.shards`). The token layout is built once per
folder — from the given text tokenizer, or from a byte-level BPE fitted on the source's
captions — and saved with the shards, so LM training needs no other flags. A job is split
across processes with ``num_shards`` / ``shard_index`` (rows ``index % num_shards ==
shard_index``) and resumes by skipping the chunks already written.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from reelm.config import save_json, to_dict
from reelm.data.clips import ClipSpec, SkipLog, SkipRow, load_clips
from reelm.data.shards import (
    LAYOUT_DIR, SKIPPED_FILE, chunk_folders, chunk_name, part_dir, write_chunk, write_info,
)
from reelm.data.sources import Source, SourceRow, open_source
from reelm.data.token_layout import TokenLayout
from reelm.data.video_read import frames_to_tensor
from reelm.errors import ReelmError


@dataclass(kw_only=True)
class TokenizeConfig:
    clip: ClipSpec = field(default_factory=ClipSpec)
    num_clips: int | None = None  # the synthetic source's size
    chunk_rows: int = 256  # source rows per written chunk
    num_shards: int = 1
    shard_index: int = 0
    workers: int = 0  # processes reading/decoding rows; 0 = in this process
    batch_size: int = 8  # clips per tokenizer forward
    text_tokenizer: str | None = None  # a tokenizer.json (or folder); None = fit a BPE on the captions
    text_vocab_size: int = 4096
    seed: int = 0
    device: str = "auto"


def tokenize_dataset(data: Any, video_tokenizer: str | Path, out: str | Path, cfg: TokenizeConfig,
                     *, progress: bool = True) -> dict:
    """Write (or finish) the shards of ``data`` in ``out``; returns the summary of this part."""
    from reelm.data.synthetic import WorldConfig
    from reelm.tokenizer.checkpoint import load_tokenizer, tokenizer_identity

    out = Path(out)
    if not 0 <= cfg.shard_index < cfg.num_shards:
        raise ReelmError(f"--shard-index {cfg.shard_index} must be in 0..{cfg.num_shards - 1}")
    device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if cfg.device == "auto" else cfg.device))
    model = load_tokenizer(video_tokenizer).to(device).eval()
    spec = cfg.clip
    t, h, w = model.latent_shape(spec.num_frames, spec.size, spec.size)
    world = WorldConfig(height=spec.size, width=spec.size, num_frames=spec.num_frames, fps=spec.fps, seed=cfg.seed)
    source = open_source(data, num_clips=cfg.num_clips, world_cfg=world)
    identity = tokenizer_identity(model)

    out.mkdir(parents=True, exist_ok=True)
    layout = _layout(out, source, cfg, model.codebook_size, (h, w), identity)
    write_info(out, {
        "video_tokenizer": identity,
        "clip": to_dict(spec),
        "latent_grid": [t, h, w],
        "source": source.name,
        "num_rows": len(source),
        "num_shards": cfg.num_shards,
        "seed": cfg.seed,
    })

    rows = list(range(cfg.shard_index, len(source), cfg.num_shards))
    chunks = [rows[i : i + cfg.chunk_rows] for i in range(0, len(rows), cfg.chunk_rows)]
    folder = part_dir(out, cfg.shard_index, cfg.num_shards)
    folder.mkdir(parents=True, exist_ok=True)
    todo = [(j, c) for j, c in enumerate(chunks) if not (folder / chunk_name(j)).is_dir()]

    began, clips_done = time.perf_counter(), 0
    bar = _progress(len(rows), sum(len(c) for _, c in todo), progress)
    with _row_reader(source, spec, cfg) as read:
        for j, chunk_rows in todo:
            records, skipped = [], []
            pending: list[tuple[SourceRow, int, Any]] = []
            for row, result in read(chunk_rows):
                bar.update(1)
                if isinstance(result, SkipRow):
                    skipped.append({"index": row.index, "video": row.video, "reason": result.reason,
                                    "detail": result.detail})
                    continue
                pending += [(row, k, clip) for k, clip in enumerate(result)]
            for batch in _same_shape_batches(pending, cfg.batch_size):
                records += _encode(model, device, layout, batch)
            write_chunk(folder / chunk_name(j), records, skipped)
            clips_done += len(records)
            bar.set_postfix(clips_per_s=f"{clips_done / max(time.perf_counter() - began, 1e-9):.1f}")
    bar.close()
    return _summarise(out, folder, len(rows), clips_done, time.perf_counter() - began)


def _layout(out: Path, source: Source, cfg: TokenizeConfig, codebook_size: int, latent_hw, identity) -> TokenLayout:
    """The folder's token layout: loaded and checked if present, else built and saved atomically."""
    from reelm.data.text_tokenizer import load_text_tokenizer, train_text_tokenizer

    folder = out / LAYOUT_DIR
    if not folder.is_dir():
        if cfg.text_tokenizer:
            text = load_text_tokenizer(cfg.text_tokenizer)
        else:
            captions = source.captions()
            if not captions:
                raise ReelmError(f"{source.name}: no captions to fit a text tokenizer on")
            text = train_text_tokenizer(captions, vocab_size=cfg.text_vocab_size)
        layout = TokenLayout.build(text, codebook_size=codebook_size, latent_hw=latent_hw, video_tokenizer=identity)
        staged = out / f".{LAYOUT_DIR}.partial-{os.getpid()}"
        shutil.rmtree(staged, ignore_errors=True)
        layout.save(staged)
        try:
            os.rename(staged, folder)
        except OSError:  # another shard process got there first: use its layout
            shutil.rmtree(staged, ignore_errors=True)
    layout = TokenLayout.load(folder)
    layout.check_video_tokenizer(identity)
    return layout


def _same_shape_batches(items: list, batch_size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        if batch and (len(batch) == batch_size or batch[0][2].frames.shape != item[2].frames.shape):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


@torch.no_grad()
def _encode(model, device: torch.device, layout: TokenLayout, batch: list) -> list[dict]:
    video = torch.stack([frames_to_tensor(clip.frames) for _, _, clip in batch]).to(device)  # (B, 3, T, H, W)
    indices = model.encode(video).indices.cpu().numpy()  # (B, t, h, w)
    records = []
    for (row, k, clip), grid in zip(batch, indices):
        records.append({
            "codes": grid.reshape(-1).astype(np.int32),
            "grid": list(grid.shape),
            "caption": row.caption,
            "caption_ids": layout.encode_text(row.caption).astype(np.int32),
            "source": row.video,
            "row": row.index,
            "clip": k,
            "start": clip.start,
            "is_image": clip.is_image,
            "attributes": json.dumps(row.attributes) if row.attributes else "",
        })
    return records


# --- reading rows, in this process or in workers ------------------------------------------

_WORKER: dict = {}


def _init_worker(source: Source, spec: ClipSpec, seed: int) -> None:
    _WORKER.update(source=source, spec=spec, seed=seed)


def _read_row(index: int):
    source, spec, seed = _WORKER["source"], _WORKER["spec"], _WORKER["seed"]
    row = source.row(index)
    try:
        return row, load_clips(source, row, spec, np.random.default_rng([seed, index]))
    except SkipRow as skip:
        return row, skip


class _row_reader:
    """``read(indices)`` yields ``(row, clips | SkipRow)`` in order, using a process pool if asked."""

    def __init__(self, source: Source, spec: ClipSpec, cfg: TokenizeConfig):
        self.args = (source, spec, cfg.seed)
        self.workers = cfg.workers
        self.pool = None

    def __enter__(self):
        if self.workers > 0:
            ctx = multiprocessing.get_context("spawn")
            self.pool = ctx.Pool(self.workers, initializer=_init_worker, initargs=self.args)
            return lambda indices: self.pool.imap(_read_row, indices, chunksize=4)
        _init_worker(*self.args)
        return lambda indices: map(_read_row, indices)

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.terminate() if exc[0] else self.pool.close()
            self.pool.join()


def _progress(total: int, remaining: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=total - remaining, unit="row", desc="tokenize", disable=not enabled)


def _summarise(out: Path, folder: Path, rows: int, clips_this_run: int, seconds: float) -> dict:
    """Counts over every chunk of this part (so a resumed run reports the whole part) + errors file."""
    log = SkipLog(None)
    used = 0
    import datasets

    for chunk in sorted(c for c in folder.glob("chunk-*") if c.is_dir()):
        used += datasets.load_from_disk(str(chunk)).num_rows
        for line in (chunk / SKIPPED_FILE).read_text().splitlines():
            log.counts[json.loads(line)["reason"]] += 1
    summary = {
        "part": folder.name,
        "rows": rows,
        "clips": used,
        "skipped": log.total,
        "skipped_by_reason": dict(sorted(log.counts.items())),
        "clips_this_run": clips_this_run,
        "seconds_this_run": round(seconds, 2),
        "clips_per_s": round(clips_this_run / seconds, 2) if seconds > 0 else None,
        "line": log.summary(used),
    }
    save_json(folder.parent / f"summary-{folder.name}.json", summary)
    _write_errors_file(out)
    return summary


def _write_errors_file(out: Path) -> None:
    """``OUT/errors.jsonl``: every skipped row of every finished chunk, rewritten whole."""
    lines = []
    for chunk in chunk_folders(out):
        lines += [line + "\n" for line in (chunk / SKIPPED_FILE).read_text().splitlines() if line]
    tmp = out / f".errors.jsonl.{os.getpid()}"
    tmp.write_text("".join(lines))
    os.replace(tmp, out / "errors.jsonl")
