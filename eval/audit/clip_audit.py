"""One clip's audit: stream its frames once, measure every dimension, return its record.

A record holds the row (``index``, ``video``, ``caption``, ``start``/``end``), the clip's
``info`` (native size, frame rate, frames read, seconds), ``dimensions`` (each
:func:`reelm.eval.audit.dimensions.result`), ``reasons`` (the dimensions that drop it),
``flags`` (failed dimensions that do not drop it), ``verdict`` (``keep`` or ``drop``) and the
``signature`` the near-duplicate search needs. Duplicates are decided across the dataset
afterwards (:mod:`reelm.eval.audit.duplicates`). A file that cannot be read fails ``decode``
with the reader's reason; frames read before a decode error are still measured.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from reelm.data.sources import Source, SourceRow, SyntheticSource
from reelm.eval.audit import dimensions as dims
from reelm.eval.audit.audit_config import AuditConfig
from reelm.eval.audit.signals import FrameSignals, stride


class ClipFrames:
    """What the audit reads of one row: its frames (streamed), frame rate, native size and duration."""

    def __init__(self, frames: Iterator[np.ndarray], *, fps: float | None, width: int, height: int,
                 duration: float | None, still: bool):
        self.frames, self.fps, self.width, self.height = frames, fps, width, height
        self.duration, self.still = duration, still


def open_clip(source: Source, row: SourceRow, cfg: AuditConfig) -> ClipFrames:
    """The row's frames at the analysis size (its window, where the row has ``start``/``end``); raises
    :class:`reelm.data.video_read.VideoReadError` for a file that cannot be opened."""
    from reelm.data.video_read import NOT_FOUND, VideoReadError, iter_frames, probe

    if isinstance(source, SyntheticSource):
        frames = source.world.clip(source.world_index(row.index)).frames
        t, h, w, _ = frames.shape
        return ClipFrames(iter(frames), fps=float(source.world.cfg.fps), width=w, height=h,
                          duration=t / float(source.world.cfg.fps), still=False)
    if not row.video:
        raise VideoReadError("<no path>: missing file", reason=NOT_FOUND)
    path = Path(row.video)
    info = probe(path)
    size = cfg.analysis_size if min(info.width, info.height) > cfg.analysis_size else None
    start = row.start or 0.0
    count = None
    if row.end is not None and info.fps:
        count = max(1, int(round((row.end - start) * info.fps)))
    still = row.is_image or info.num_frames == 1 and not info.duration
    duration = info.duration if row.end is None else row.end - start
    frames = iter_frames(path, start=start, num_frames=count, size=size)
    return ClipFrames(frames, fps=info.fps, width=info.width, height=info.height, duration=duration, still=still)


def audit_clip(source: Source, row: SourceRow, cfg: AuditConfig,
               caption_check: Callable[[np.ndarray, float | None, str | None], dict] | None = None) -> dict:
    """The record of one row (see the module docstring)."""
    from reelm.data.video_read import VideoReadError

    record = {"index": row.index, "video": row.video, "caption": row.caption, "start": row.start, "end": row.end}
    if row.problem or any(t is not None and not math.isfinite(t) for t in (row.start, row.end)):
        return _unreadable(record, row.problem or f"{row.video}: bad start/end time", "refused")
    try:
        clip = open_clip(source, row, cfg)
    except VideoReadError as exc:
        return _unreadable(record, str(exc), exc.reason or "unreadable")
    signals = FrameSignals(fps=clip.fps or 0.0, bar_level=cfg.bars.max_level,
                           blur_every=stride(clip.fps, cfg.blur_per_second),
                           hash_every=stride(clip.fps, 2.0))
    keep_frames = caption_check is not None
    kept: list[np.ndarray] = []  # frames the caption check reads (sampled, bounded)
    decode = dims.result(None, None, False)
    try:
        for frame in clip.frames:
            signals.add(frame)
            if keep_frames and len(kept) < CAPTION_FRAMES:
                kept.append(frame)
    except VideoReadError as exc:
        decode = dims.result(signals.count, None, True, f"decoded {signals.count} frames, then: {exc}",
                             kind=exc.reason, frames_decoded=signals.count)
    if signals.count == 0:
        return _unreadable(record, f"{row.video}: no frames", "no frames")
    fps = clip.fps
    measured = signals.count / fps if fps and not clip.still else clip.duration
    info = {"width": clip.width, "height": clip.height, "fps": fps, "frames": signals.count,
            "seconds": None if measured is None else round(measured, 3),
            "analysed": list(signals.shape), "still": clip.still}
    results = {"decode": decode,
               "spec": dims.spec_check(cfg, fps=fps, duration=measured, width=clip.width, height=clip.height,
                                       frames=signals.count, still=clip.still)}
    if clip.still:
        results.update({name: dims.result(None, None, None) for name in ("frozen", "static", "flicker", "cut")})
        pixel = dims.pixel_dimensions(cfg, signals)
        results.update({name: pixel[name] for name in ("exposure", "blur", "bars")})
    else:
        results.update(dims.pixel_dimensions(cfg, signals))
    results["duplicate"] = dims.result(None, {"max_bits": cfg.duplicate.max_bits,
                                              "max_color": cfg.duplicate.max_color}, False)
    results["caption"] = _caption(caption_check, kept, fps, row.caption, results.get("cut")) if keep_frames else \
        dims.result(None, None, None, method="none")
    record.update(info=info, dimensions=results, signature=signals.sampled_hashes(cfg.duplicate.frames))
    return decide(record, cfg)


CAPTION_FRAMES = 64  # frames kept for the caption check (the world's clips are 9-33 frames)


def _caption(check, frames: list[np.ndarray], fps, caption, cut: dict | None) -> dict:
    """The caption check on the clip, or, where it has cuts, on each piece between them: the best-agreeing piece
    counts (the caption describes one scene; the cut is the cut dimension's finding)."""
    bounds = [0] + [f for f in (cut or {}).get("evidence", {}).get("frames", []) if f < len(frames)] + [len(frames)]
    pieces = [frames[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b - a >= 2]
    results = [check(np.stack(piece), fps, caption) for piece in pieces or [frames]]
    scored = [r for r in results if r["verdict"] != dims.NA]
    best = max(scored, key=lambda r: r["value"]) if scored else results[0]
    if len(pieces) > 1:
        best["evidence"]["pieces"] = len(pieces)
    return best


def _unreadable(record: dict, reason: str, kind: str) -> dict:
    record.update(info=None, signature=[], dimensions={"decode": dims.result(None, None, True, reason, kind=kind)})
    record.update(reasons=["decode"], flags=[], verdict="drop")
    return record


def decide(record: dict, cfg: AuditConfig) -> dict:
    """Set ``reasons`` (failed dimensions that drop), ``flags`` (failed ones that do not) and ``verdict``."""
    failed = [name for name, r in record["dimensions"].items() if r["verdict"] == dims.FAIL]
    drops = {name: name == "decode" or getattr(cfg, name).drop for name in failed}
    record["reasons"] = [name for name in failed if drops[name]]
    record["flags"] = [name for name in failed if not drops[name]]
    record["verdict"] = "drop" if record["reasons"] else "keep"
    return record
