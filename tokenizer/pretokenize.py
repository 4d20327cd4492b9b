"""Pre-tokenization: a video-text source becomes LM-ready Arrow shards of codes + caption ids.

This module is the one job that needs the video tokenizer: rows are read and cut into clips
(:mod:`reelm.data.row_reader`, optionally in worker processes), encoded in batches (on the GPU
when there is one), and written as chunks of a shard folder (:mod:`reelm.data.shards`) with
the folder's token layout (:mod:`reelm.data.shard_layout`) and a copy of the video tokenizer
itself, so LM training needs no other flags and its model folders carry the tokenizer. A
job is split across processes with ``num_shards`` / ``shard_index`` (rows ``index %
num_shards == shard_index``) and resumes by skipping the chunks already written.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from reelm.core.atomic import publish_dir, staging_path
from reelm.core.config import to_dict
from reelm.data.clip_sampling import ClipSpec, SkipLog, SkipRow, check_clip_spec
from reelm.data.row_reader import RowReader, read_rows
from reelm.data.shard_layout import shard_layout
from reelm.data.shards import (
    VIDEO_TOKENIZER_DIR,
    chunk_name,
    part_dir,
    skipped_counts,
    write_chunk,
    write_errors_file,
    write_info,
    write_summary,
)
from reelm.data.sources import SourceOptions, SourceRow, StoryRows, SyntheticSource, open_source
from reelm.data.synthetic.world import WorldOptions
from reelm.data.token_layout import TokenLayout, continuation_context
from reelm.data.video_read import frames_to_tensor
from reelm.core.device import autocast, check_cpu_compile, resolve_device, train_in_bf16
from reelm.core.errors import ReelmError
from reelm.tokenizer.tokenizer_checkpoint import load_tokenizer, save_tokenizer, tokenizer_identity
from reelm.tokenizer.model import VideoTokenizer


@dataclass(kw_only=True)
class TokenizeConfig:
    clip: ClipSpec = field(default_factory=ClipSpec)
    num_clips: int | None = None  # the synthetic source's size
    world: WorldOptions = field(default_factory=WorldOptions)  # what the synthetic source draws
    story_clips: int = 0  # training stories after the synthetic source's clips (one object): their motion (or color)
    # changes where a continuation's context ends (reelm.data.token_layout, "Stories")
    story_anchor_windows: int = 0  # > 0: each training story is drawn plain or anchored, its context's first frame the
    # story's first, 1 .. this many windows back (StoryRows.anchor_gaps; a story's context="anchor")
    chunk_rows: int = 256  # source rows per written chunk
    num_shards: int = 1
    shard_index: int = 0
    workers: int = 0  # processes reading/decoding rows; 0 = in this process
    batch_size: int = 8  # clips per tokenizer forward
    precision: str = "fp32"  # fp32: the exact codes; bf16 / auto: the encoder under bf16 autocast (tokenize_dataset)
    compile: bool = False  # torch.compile the encoder (see tokenize_dataset)
    text_tokenizer: str | None = None  # a tokenizer.json (or folder); None = fit a BPE on the captions
    text_vocab_size: int = 4096
    seed: int = 0
    source: SourceOptions = field(default_factory=SourceOptions)  # columns, confining paths to the root


def tokenize_dataset(data: Any, video_tokenizer: str | Path, out: str | Path, cfg: TokenizeConfig,
                     *, progress: bool = True, device: str = "auto") -> dict:
    """Write (or finish) the shards of ``data`` in ``out``; returns the summary of this part.

    ``cfg.precision`` ``bf16`` (or ``auto`` where the device multiplies bf16 natively) runs the
    encoder under bf16 autocast (the quantizer rounds in fp32): faster on such CPUs, but a latent
    near an FSQ level boundary can round the other way, so about 1 % of codes differ from fp32's
    (BENCHMARKS.md, "Pre-tokenization in bf16, and compiled"); the default ``fp32`` keeps them
    exact.
    ``cfg.compile`` compiles the encoder with ``torch.compile`` for one batch shape (a short last
    batch is padded to it, the padding's codes dropped): worth it for large jobs, since the first
    batch pays the compilation (tens of seconds on a CPU); in fp32 it changes a few codes in 10^5
    (the same arithmetic, reordered).
    """
    out = Path(out)
    if not 0 <= cfg.shard_index < cfg.num_shards:
        raise ReelmError(f"--shard-index {cfg.shard_index} must be in 0..{cfg.num_shards - 1}")
    chosen = resolve_device(device)
    bf16 = train_in_bf16(chosen, cfg.precision)
    model = load_tokenizer(video_tokenizer).to(chosen).eval()
    if cfg.compile:
        check_cpu_compile(chosen, "--compile")
    spec = cfg.clip
    check_clip_spec(spec, spatial=model.spatial_downsample, temporal=model.temporal_downsample)
    t, h, w = model.latent_shape(spec.num_frames, spec.size, spec.size)
    world = cfg.world.world_config(spec, seed=cfg.seed)
    k = continuation_context(t)
    if cfg.story_clips and t < 3:
        raise ReelmError(f"training stories change where a continuation's context ends: clips of {spec.num_frames} "
                         f"frames ({t} latent frames) are too short; use at least "
                         f"{model.pixel_frames(3)} (--num-frames)")
    if cfg.story_anchor_windows < 0:
        raise ReelmError(f"--story-anchor-windows must be 0 or more, got {cfg.story_anchor_windows}")
    if cfg.story_anchor_windows and not cfg.story_clips:
        raise ReelmError("--story-anchor-windows anchors training stories: give --story-clips N too")
    gaps = tuple(model.temporal_downsample * (t - k) * i for i in range(1, cfg.story_anchor_windows + 1))
    stories = StoryRows(cfg.story_clips, model.pixel_frames(k), k, gaps) if cfg.story_clips else None
    source = open_source(data, num_clips=cfg.num_clips, world_cfg=world, start=cfg.world.start, stories=stories,
                         **cfg.source.kwargs())
    if stories and not isinstance(source, SyntheticSource):
        raise ReelmError(f"{data}: training stories come from the synthetic world only ({cfg.story_clips} story "
                         f"clips asked of another source)")
    identity = tokenizer_identity(model)

    out.mkdir(parents=True, exist_ok=True)
    layout = shard_layout(out, source, text_tokenizer=cfg.text_tokenizer, text_vocab_size=cfg.text_vocab_size,
                          codebook_size=model.codebook_size, latent_hw=(h, w), identity=identity)
    write_info(out, {
        "video_tokenizer": identity,
        "clip": to_dict(spec),
        "latent_grid": [t, h, w],
        "source": source.name,
        **({"world": to_dict(cfg.world)} if isinstance(source, SyntheticSource) else {}),
        **({"stories": {key: value for key, value in dataclasses.asdict(stories).items()
                        if key != "anchor_gaps" or value}}
           if stories else {}),  # anchor_gaps only where set: shard folders written before it resume as they were
        "num_rows": len(source),
        "num_shards": cfg.num_shards,
        "seed": cfg.seed,
        **({"encode_precision": "bf16"} if bf16 else {}),  # fp32 (exact codes) unsaid: older folders resume
        **({"encode_compiled": True} if cfg.compile else {}),
    })
    _embed_video_tokenizer(out, model)
    if cfg.compile:  # after the identity and the embedded copy: their state dict keeps its names
        model.encoder = torch.compile(model.encoder, dynamic=False)

    rows = range(cfg.shard_index, len(source), cfg.num_shards)  # ranges, not lists: a manifest may be huge
    chunks = [rows[i : i + cfg.chunk_rows] for i in range(0, len(rows), cfg.chunk_rows)]
    folder = part_dir(out, cfg.shard_index, cfg.num_shards)
    folder.mkdir(parents=True, exist_ok=True)
    todo = [(j, c) for j, c in enumerate(chunks) if not (folder / chunk_name(j)).is_dir()]

    began, clips_done = time.perf_counter(), 0
    bar = _progress(len(rows), sum(len(c) for _, c in todo), progress)
    with read_rows(RowReader(source, spec, cfg.seed), cfg.workers) as read:
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
                records += _encode(model, chosen, layout, batch, bf16, pad_to=cfg.batch_size if cfg.compile else 0)
            write_chunk(folder / chunk_name(j), records, skipped)
            clips_done += len(records)
            bar.set_postfix(clips_per_s=f"{clips_done / max(time.perf_counter() - began, 1e-9):.1f}")
    bar.close()
    summary = _summarise(out, folder, len(rows), clips_done, time.perf_counter() - began)
    if summary["clips"] == 0 and summary["rows"] > 0:
        shutil.rmtree(folder, ignore_errors=True)  # nothing to keep: a re-run with usable rows starts over
        raise ReelmError(f"{getattr(source, 'name', data)}: no usable clips in {summary['rows']} rows "
                         f"({summary['line'].split(', ', 1)[1]}); each row's reason is in {out}/errors.jsonl")
    return summary


def _embed_video_tokenizer(out: Path, model: VideoTokenizer) -> None:
    """``OUT/video_tokenizer/``: the tokenizer the codes came from (the first process of a job writes it)."""
    target = out / VIDEO_TOKENIZER_DIR
    if target.is_dir():
        return
    staged = staging_path(target).with_name(f"{staging_path(target).name}-{id(model)}")
    shutil.rmtree(staged, ignore_errors=True)
    save_tokenizer(model, staged)
    publish_dir(staged, target, replace=False)


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
def _encode(model: VideoTokenizer, device: torch.device, layout: TokenLayout, batch: list,
            bf16: bool = False, pad_to: int = 0) -> list[dict]:
    """Records of ``batch``'s clips; ``pad_to``: zero clips appended up to that many (one shape for a compiled
    encoder), their codes dropped."""
    video = torch.stack([frames_to_tensor(clip.frames) for _, _, clip in batch]).to(device)  # (B, 3, T, H, W)
    if len(batch) < pad_to:
        video = torch.cat([video, video.new_zeros((pad_to - len(batch), *video.shape[1:]))])
    with autocast(device, bf16):
        indices = model.encode(video).indices[: len(batch)].cpu().numpy()  # (B, t, h, w)
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


def _progress(total: int, remaining: int, enabled: bool):
    from reelm.core.progress import progress_bar

    return progress_bar(total, initial=total - remaining, desc="tokenize", unit="row", enabled=enabled)


def _summarise(out: Path, folder: Path, rows: int, clips_this_run: int, seconds: float) -> dict:
    """Counts over every chunk of this part (so a resumed run reports the whole part) + errors file."""
    used, counts = skipped_counts(folder)
    log = SkipLog(None)
    log.counts.update(counts)
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
    write_summary(folder, summary)
    write_errors_file(out)
    return summary
