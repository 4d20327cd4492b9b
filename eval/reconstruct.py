"""Reconstruction eval: clips through a video tokenizer and back, scored clip by clip, with a report.

``reelm eval reconstruct --tokenizer RUN --data SOURCE --out DIR`` reads clips from anything
``reelm data tokenize`` reads (a manifest, a folder, one video file, ``synthetic``) with the
same clip spec (frames, fps, size; captions are not needed), encodes and decodes them in
batches, and scores every clip: PSNR and SSIM (equal to scikit-image's on the same frames),
LPIPS when its weights are given, and — for synthetic clips, whose ground truth is known —
how well the adherence scorer reads each attribute back from the reconstruction. Over all
clips: codebook usage and perplexity, and rFVD when I3D weights are given.

It writes ``DIR/clips.jsonl`` (one record per clip), ``DIR/skipped.jsonl``,
``DIR/summary.json`` (the scores and the protocol: tokenizer identity, clip spec, source,
seed, counts, versions) and ``DIR/report.html``. The same command gives the same JSON,
timings aside.

Follows: MAGVIT-v2 / VQGAN reconstruction evaluation (PSNR, SSIM, LPIPS, rFVD, codebook usage).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reelm import __version__
from reelm.core.atomic import write_text
from reelm.core.config import save_json, to_dict
from reelm.data.clip_sampling import ClipSpec, SkipRow, check_clip_spec
from reelm.data.row_reader import RowReader, read_rows
from reelm.data.sources import SourceOptions, SyntheticSource, open_source
from reelm.data.synthetic.world import WorldOptions
from reelm.data.video_read import frames_to_tensor, tensor_to_frames
from reelm.core.device import resolve_device
from reelm.core.errors import ReelmError
from reelm.eval.adherence import ATTRIBUTES, aggregate, read_clip, score_against
from reelm.eval.reconstruction_metrics import ClipMetrics
from reelm.tokenizer.tokenizer_checkpoint import load_tokenizer, tokenizer_identity

SHOWN = 4  # worst and best clips a report shows
SUMMARY_FILE = "summary.json"
CLIPS_FILE = "clips.jsonl"


@dataclass(kw_only=True)
class ReconstructConfig:
    clip: ClipSpec = field(default_factory=lambda: ClipSpec(num_frames=17, fps=8.0, size=64))
    num_clips: int | None = None  # the synthetic source's size
    world: WorldOptions = field(default_factory=WorldOptions)  # what the synthetic source draws
    seed: int = 0
    batch_size: int = 8
    lpips_path: str | None = None  # LPIPS-VGG16 weights (reelm.tokenizer.perceptual); None: no LPIPS
    i3d_path: str | None = None  # I3D weights for rFVD (reelm.eval.distribution.i3d); None: no rFVD
    source: SourceOptions = field(default_factory=SourceOptions)  # columns, confining paths to the root


@dataclass
class _Clip:
    index: int
    row: Any
    original: np.ndarray  # (T, H, W, 3) uint8
    start: float = 0.0  # seconds into the source video
    recon: np.ndarray | None = None
    codes: np.ndarray | None = None


def evaluate_reconstruction(tokenizer: str | Path, data: Any, out: str | Path, cfg: ReconstructConfig, *,
                            device: str = "auto", progress: bool = True) -> dict:
    """Score ``tokenizer``'s reconstructions of the clips of ``data``; writes and returns the summary."""
    from reelm.core.progress import progress_bar

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    chosen = resolve_device(device)
    model = load_tokenizer(tokenizer).to(chosen).eval()
    spec = cfg.clip
    check_clip_spec(spec, spatial=model.spatial_downsample, temporal=model.temporal_downsample)
    world = cfg.world.world_config(spec, seed=cfg.seed)
    source = open_source(data, num_clips=cfg.num_clips, world_cfg=world, start=cfg.world.start,
                         **cfg.source.kwargs())
    lpips = _lpips(cfg.lpips_path, chosen)
    counts = np.zeros(model.codebook_size, dtype=np.int64)
    records, skipped, adherence, kept = [], [], [], []
    frame_psnr: list[list[float]] = []
    began = time.perf_counter()
    bar = progress_bar(len(source), desc="reconstruct", unit="row", enabled=progress)
    pending: list[_Clip] = []
    next_index = 0
    with read_rows(RowReader(source, spec, cfg.seed, need_caption=False), 0) as read:
        for row, result in read(range(len(source))):
            bar.update(1)
            if isinstance(result, SkipRow):
                skipped.append({"index": row.index, "video": row.video, "reason": result.reason,
                                "detail": result.detail})
                continue
            for clip in result:
                pending.append(_Clip(next_index, row, clip.frames, clip.start))
                next_index += 1
            while len(pending) >= cfg.batch_size:
                batch, pending = pending[: cfg.batch_size], pending[cfg.batch_size:]
                _score_batch(model, chosen, batch, lpips, counts, records, adherence, frame_psnr, kept, cfg)
        while pending:
            batch, pending = pending[: cfg.batch_size], pending[cfg.batch_size:]
            _score_batch(model, chosen, batch, lpips, counts, records, adherence, frame_psnr, kept, cfg)
    bar.close()
    seconds = time.perf_counter() - began
    if not records:
        write_text(out / "skipped.jsonl", "".join(json.dumps(s, sort_keys=True) + "\n" for s in skipped))
        reasons = ", ".join(f"{reason}: {n}" for reason, n in _reasons(skipped).items()) or "the source is empty"
        raise ReelmError(f"{source.name}: no clip could be scored ({reasons}); see {out / 'skipped.jsonl'}, or ask "
                         "for shorter clips (--num-frames, --fps)")
    summary = _summary(model, source, cfg, records, skipped, counts, adherence, frame_psnr, kept, seconds)
    write_text(out / CLIPS_FILE, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    write_text(out / "skipped.jsonl", "".join(json.dumps(s, sort_keys=True) + "\n" for s in skipped))
    save_json(out / SUMMARY_FILE, summary)
    from reelm.eval.reports.reconstruct_report import write_report

    summary["report"] = str(write_report(out, summary, records, kept, frame_psnr, counts))
    return summary


@torch.no_grad()
def _score_batch(model, device, batch: list[_Clip], lpips, counts, records, adherence, frame_psnr, kept,
                 cfg: ReconstructConfig) -> None:
    by_shape: dict[tuple, list[_Clip]] = {}
    for clip in batch:
        by_shape.setdefault(clip.original.shape, []).append(clip)
    for clips in by_shape.values():
        video = torch.stack([frames_to_tensor(c.original) for c in clips]).to(device)  # (B, 3, T, H, W)
        quant = model.encode(video)
        recon = model.decode(quant.codes)
        for clip, frames, codes in zip(clips, tensor_to_frames(recon.float().cpu()), quant.indices.cpu().numpy()):
            clip.recon, clip.codes = frames, codes
    for clip in batch:
        metrics = ClipMetrics()
        metrics.update(clip.original, clip.recon)
        np.add.at(counts, clip.codes.reshape(-1), 1)
        record = {"clip": clip.index, "row": clip.row.index, "source": clip.row.video, "caption": clip.row.caption,
                  "start": clip.start, "frames": int(len(clip.original)), "psnr": metrics.psnr(), "ssim": metrics.ssim(),
                  "codes": list(clip.codes.shape)}
        if lpips is not None:
            record["lpips"] = _lpips_score(lpips, clip.original, clip.recon, device)
        if clip.row.attributes:
            readings = read_clip(clip.recon, cfg.clip.fps)
            score = score_against(readings, clip.row.attributes)
            record["adherence"] = {name: value["accuracy"] for name, value in score["attributes"].items()}
            record["read"] = [{**r.attributes(), "rgb": list(r.rgb)} for r in readings]
            record["expected"] = [obj["expected"] for obj in score["objects"]]
            adherence.append(score)
        records.append(record)
        frame_psnr.append(metrics.frame_psnr)
        kept.append(clip)
        if len(kept) > 2 * SHOWN and not cfg.i3d_path:  # the report shows the worst and best few: keep those only
            kept.sort(key=lambda c: records[c.index]["psnr"])
            del kept[SHOWN:-SHOWN]


def _lpips(path: str | None, device):
    if path is None:
        return None
    from reelm.tokenizer.perceptual import load_lpips

    return load_lpips(path).to(device)


@torch.no_grad()
def _lpips_score(lpips, original: np.ndarray, recon: np.ndarray, device) -> float:
    a = frames_to_tensor(original).transpose(0, 1).to(device)  # (T, 3, H, W)
    b = frames_to_tensor(recon).transpose(0, 1).to(device)
    return float(lpips(a, b).mean())


def _summary(model, source, cfg, records, skipped, counts, adherence, frame_psnr, kept, seconds) -> dict:
    psnrs = np.array([r["psnr"] for r in records], dtype=np.float64)
    probs = counts / max(1, counts.sum())
    nonzero = probs[probs > 0]
    summary: dict[str, Any] = {
        "clips": len(records),
        "skipped": len(skipped),
        "skipped_by_reason": _reasons(skipped),
        "psnr": _stats(psnrs),
        "ssim": _stats(np.array([r["ssim"] for r in records])),
        "codebook": {"size": int(model.codebook_size), "used": int((counts > 0).sum()),
                     "usage": float((counts > 0).mean()),
                     "perplexity": float(np.exp(-(nonzero * np.log(nonzero)).sum())) if len(nonzero) else None},
        "protocol": {
            "reelm_version": __version__,
            "tokenizer": tokenizer_identity(model),
            "clip": to_dict(cfg.clip),
            "source": source.name,
            **({"world": to_dict(cfg.world)} if isinstance(source, SyntheticSource) else {}),
            "seed": cfg.seed,
            "psnr": "over all pixels of a clip, data range 255 (scikit-image peak_signal_noise_ratio)",
            "ssim": "mean over frames and channels, 11x11 Gaussian window, sigma 1.5, population covariance "
                    "(scikit-image structural_similarity, gaussian_weights=True)",
        },
        "seconds": round(seconds, 2),
        "clips_per_s": round(len(records) / seconds, 2) if seconds > 0 else None,
    }
    if records and "lpips" in records[0]:
        summary["lpips"] = _stats(np.array([r["lpips"] for r in records]))
        summary["protocol"]["lpips"] = {"weights": cfg.lpips_path, "variant": "LPIPS-VGG16 v0.1, mean over frames"}
    else:
        summary["lpips"] = {"computed": False, "reason": "no LPIPS weights given (--lpips FILE)"}
    if adherence:
        summary["adherence"] = aggregate(adherence)
    summary["rfvd"] = _rfvd(cfg, kept)
    if frame_psnr:
        longest = max(len(f) for f in frame_psnr)
        summary["psnr_by_frame"] = [float(np.mean([f[i] for f in frame_psnr if len(f) > i])) for i in range(longest)]
    return summary


def _rfvd(cfg: ReconstructConfig, kept: list[_Clip]) -> dict:
    if cfg.i3d_path is None:
        return {"computed": False, "reason": "no I3D weights given (--i3d FILE)"}
    from reelm.eval.distribution.registry import compute

    frames = min(len(c.original) for c in kept)
    name = "fvd_16f" if frames >= 16 else "fvd_16f_padlast"
    result = compute(name, [c.recon for c in kept], [c.original for c in kept], i3d_path=cfg.i3d_path)
    return {key: value for key, value in result.items() if key != "per_sample"}


def _stats(values: np.ndarray) -> dict:
    if not len(values):
        return {"mean": None}
    return {"mean": float(values.mean()), "median": float(np.median(values)), "min": float(values.min()),
            "max": float(values.max())}


def _reasons(skipped: list[dict]) -> dict:
    counts: dict[str, int] = {}
    for item in skipped:
        counts[item["reason"]] = counts.get(item["reason"], 0) + 1
    return dict(sorted(counts.items()))


__all__ = ["ATTRIBUTES", "ReconstructConfig", "evaluate_reconstruction"]
