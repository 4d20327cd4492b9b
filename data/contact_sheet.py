"""Contact sheets: one PNG showing clips as rows of evenly sampled frames.

Passing ``[real, reconstructed]`` (optionally with ``labels=["real", "recon"]``) puts
the two clips in aligned rows, frame above frame, for eyeballing a tokenizer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from reelm.data.video_write import VideoWriteError, atomic_write

BACKGROUND = 255
TEXT_COLOR = (0, 0, 0)


def sample_indices(num_frames: int, max_frames: int) -> np.ndarray:
    """``min(num_frames, max_frames)`` frame indices spread evenly over ``[0, num_frames - 1]``."""
    count = min(num_frames, max_frames)
    return np.linspace(0, num_frames - 1, count).round().astype(np.int64)


def contact_sheet(
    rows: Sequence[np.ndarray],
    path: str | Path,
    *,
    max_frames: int = 8,
    labels: Sequence[str] | None = None,
    pad: int = 2,
) -> Path:
    """Write a PNG grid: one row per clip ``(T, H, W, 3)`` uint8, each sampled to ``max_frames``.

    Frames of different sizes are centered in cells of the largest size; ``labels``
    (one per row) are drawn in a margin to the left.
    """
    path = Path(path)
    clips = [_as_clip(row, path, i) for i, row in enumerate(rows)]
    if not clips:
        raise VideoWriteError(f"{path}: a contact sheet needs at least one row")
    if max_frames < 1:
        raise VideoWriteError(f"{path}: max_frames must be >= 1, got {max_frames}")
    if labels is not None and len(labels) != len(clips):
        raise VideoWriteError(f"{path}: {len(labels)} labels for {len(clips)} rows")
    sheet = render_sheet(clips, max_frames=max_frames, labels=labels, pad=pad)

    def encode(tmp: Path) -> None:
        sheet.save(tmp, format="PNG")

    return atomic_write(path, encode)


def render_sheet(
    clips: Sequence[np.ndarray], *, max_frames: int = 8, labels: Sequence[str] | None = None, pad: int = 2
) -> Image.Image:
    """The contact sheet as a Pillow RGB image (see :func:`contact_sheet`)."""
    cell_h = max(clip.shape[1] for clip in clips)
    cell_w = max(clip.shape[2] for clip in clips)
    columns = max(min(len(clip), max_frames) for clip in clips)
    font = ImageFont.load_default(size=max(10, min(24, cell_h // 6)))
    label_w = 0
    if labels:
        label_w = max(int(font.getlength(str(label))) for label in labels) + 2 * pad

    width = label_w + columns * cell_w + (columns + 1) * pad
    height = len(clips) * cell_h + (len(clips) + 1) * pad
    canvas = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)  # (H_sheet, W_sheet, 3)
    for r, clip in enumerate(clips):
        top = pad + r * (cell_h + pad)
        for c, index in enumerate(sample_indices(len(clip), max_frames)):
            frame = clip[index]  # (h, w, 3)
            y = top + (cell_h - frame.shape[0]) // 2
            x = label_w + pad + c * (cell_w + pad) + (cell_w - frame.shape[1]) // 2
            canvas[y : y + frame.shape[0], x : x + frame.shape[1]] = frame

    image = Image.fromarray(canvas)
    if labels:
        draw = ImageDraw.Draw(image)
        for r, label in enumerate(labels):
            center_y = pad + r * (cell_h + pad) + cell_h // 2
            draw.text((pad, center_y), str(label), fill=TEXT_COLOR, font=font, anchor="lm")
    return image


def _as_clip(row: np.ndarray, path: Path, index: int) -> np.ndarray:
    clip = np.asarray(row)
    if clip.ndim == 3:
        clip = clip[None]  # (1, H, W, 3)
    if clip.ndim != 4 or clip.shape[-1] != 3 or 0 in clip.shape:
        raise VideoWriteError(f"{path}: row {index} must be a non-empty (T, H, W, 3) array, got shape {clip.shape}")
    if clip.dtype != np.uint8:
        raise VideoWriteError(f"{path}: row {index} must be uint8, got {clip.dtype}")
    return clip
