"""One video file through a video tokenizer and back, streamed: the reconstruction, its contact sheet, PSNR and SSIM.

``reelm tokenizer reconstruct`` runs :func:`reconstruct_file`. Nothing holds the whole video,
so memory does not grow with its length or resolution beyond one chunk:

1. the file is encoded in causal chunks into its code grid
   (:func:`reelm.tokenizer.video_codec.encode_video`; the grid is small, ``h * w`` ints per
   latent frame);
2. the grid is decoded chunk by chunk (:func:`reelm.tokenizer.video_codec.iter_decoded`)
   while the original is read a second time with the same geometry, chunk for chunk; each
   pair is scored (:class:`reelm.eval.reconstruction_metrics.ClipMetrics`, whose totals equal the whole-clip
   PSNR and SSIM), appended to the output video (:func:`reelm.data.video_write.open_video`,
   written atomically) and sampled for the contact sheet.

Follows: MAGVIT-v2 / VQGAN reconstruction evaluation (PSNR, SSIM), computed chunk by chunk.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from reelm.data.contact_sheet import contact_sheet, sample_indices
from reelm.data.video_read import iter_frames, probe
from reelm.data.video_write import open_video
from reelm.core.errors import ReelmError
from reelm.eval.reconstruction_metrics import ClipMetrics
from reelm.tokenizer.model import VideoTokenizer
from reelm.tokenizer.video_codec import encode_video, iter_decoded

SHEET_FRAMES = 8
SSIM_WINDOW = 11  # frames smaller than the window have no SSIM


@dataclass(frozen=True)
class RoundTrip:
    frames: int
    size: int | None  # the shorter side frames were resized to (None: native)
    height: int
    width: int
    codes_shape: tuple[int, int, int]
    fps: float
    psnr: float
    ssim: float | None  # None for frames smaller than the SSIM window
    video: Path
    sheet: Path


def reconstruct_file(model: VideoTokenizer, path: str | Path, output: str | Path, *, fps: float | None = None,
                     size: int | None = None, max_frames: int | None = None, device: torch.device | str = "cpu",
                     progress: bool = True) -> RoundTrip:
    """Write ``model``'s reconstruction of the video ``path`` to ``output`` (and ``output`` as ``.png``:
    original above reconstruction) and score it; see the module docstring."""
    from reelm.core.progress import progress_bar

    output = Path(output)
    expected = _expected_frames(path, fps, max_frames)
    with progress_bar(expected, desc="encode", unit="frame", enabled=progress) as bar:
        codes, meta = encode_video(model, path, fps=fps, size=size, max_frames=max_frames, device=device,
                                   progress=bar.update)
    total, crop = meta["frames"], (meta["height"], meta["width"])
    rate = meta["fps"] or 8.0
    originals = iter_frames(path, fps=fps, num_frames=total, size=meta["size"], crop=crop)
    picked = set(sample_indices(total, SHEET_FRAMES).tolist())
    sheet_rows: tuple[list, list] = ([], [])
    metrics, done = ClipMetrics(ssim=min(crop) >= SSIM_WINDOW), 0
    with progress_bar(total, desc="decode", unit="frame", enabled=progress) as bar, \
            open_video(output, rate) as video:
        for recon in iter_decoded(model, codes, device=device):  # (T_i, H, W, 3)
            original = np.stack(list(itertools.islice(originals, len(recon))))  # (T_i, H, W, 3)
            if original.shape != recon.shape:
                raise ReelmError(f"{path}: gave {len(original)} frames on the second reading where the first gave "
                                 f"{len(recon)} (has it changed meanwhile?)")
            metrics.update(original, recon)
            video.write(recon)
            for k in range(len(recon)):
                if done + k in picked:
                    sheet_rows[0].append(original[k])
                    sheet_rows[1].append(recon[k])
            done += len(recon)
            bar.update(len(recon))
    sheet = contact_sheet([np.stack(rows) for rows in sheet_rows], output.with_suffix(".png"),
                          max_frames=SHEET_FRAMES, labels=["original", "reconstruction"])
    return RoundTrip(frames=done, size=meta["size"], height=crop[0], width=crop[1], codes_shape=tuple(codes.shape), fps=rate,
                     psnr=metrics.psnr(), ssim=metrics.ssim() if metrics.with_ssim else None, video=output, sheet=sheet)


def _expected_frames(path: str | Path, fps: float | None, max_frames: int | None) -> int | None:
    """Frames the header promises at ``fps`` (a progress bar's total; ``None`` when unknown)."""
    info = probe(path)
    count = round(info.duration * fps) if fps and info.duration else info.num_frames
    known = [n for n in (count, max_frames) if n]
    return min(known) if known else None
