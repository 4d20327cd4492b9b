"""``export_to_video``: frames from a pipeline output to a video file, with diffusers' signature.

Takes what :class:`reelm.generation.VideoPipeline` returns in ``.frames`` (or ``.videos``): a
list of ``(H, W, 3)`` frames (float in [0, 1] or uint8) or of ``PIL.Image``, or one ``(T, H, W, 3)``
array, and writes it through reelm's writer (:func:`reelm.data.video_write.write_video`: H.264
MP4 or GIF, atomically). ``quality`` follows imageio's 0–10 scale (10 best), mapped to x264's
CRF as imageio-ffmpeg maps it (``crf = 51 * (1 - quality / 10)``); frames are padded (edge
pixels repeated) to a multiple of ``macro_block_size``, where imageio resizes.

Follows: ``diffusers.utils.export_to_video``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from reelm.core.errors import ReelmError
from reelm.data.video_write import write_gif, write_mp4


def export_to_video(video_frames, output_video_path: str | Path | None = None, fps: int | float = 10,
                    quality: float = 5.0, bitrate: int | None = None, macro_block_size: int | None = 16) -> str:
    """Write ``video_frames`` to ``output_video_path`` (a new temporary ``.mp4`` when None); returns the path."""
    if bitrate is not None:
        raise ReelmError("export_to_video: bitrate is not supported by reelm's writer; set quality (0-10) instead")
    if not 0 <= quality <= 10:
        raise ReelmError(f"export_to_video: quality {quality!r}: expected 0 to 10 (10 best)")
    frames = _uint8_frames(video_frames)
    if macro_block_size and macro_block_size > 1:
        frames = _pad_to_multiple(frames, macro_block_size)
    if output_video_path is None:
        output_video_path = tempfile.NamedTemporaryFile(suffix=".mp4", delete=False).name
    path = Path(output_video_path)
    if path.suffix.lower() == ".gif":
        write_gif(path, frames, float(fps))
    else:
        write_mp4(path, frames, float(fps), crf=round(51 * (1 - quality / 10)))
    return str(path)


def _uint8_frames(video_frames) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 from a list of frames (arrays in [0, 1] or uint8, or PIL images) or one array."""
    if hasattr(video_frames, "detach"):  # a torch tensor: (T, 3, H, W) as output_type="pt" gives one video
        video_frames = video_frames.detach().cpu().float().permute(0, 2, 3, 1).numpy()
    if isinstance(video_frames, np.ndarray):
        frames = video_frames
    else:
        frames = np.stack([np.asarray(frame.convert("RGB") if hasattr(frame, "convert") else frame)
                           for frame in video_frames])
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ReelmError(f"export_to_video: expected frames of shape (T, H, W, 3), got {tuple(frames.shape)}")
    if frames.dtype != np.uint8:
        frames = (np.clip(frames, 0.0, 1.0) * 255).round().astype(np.uint8)
    return frames


def _pad_to_multiple(frames: np.ndarray, block: int) -> np.ndarray:
    pad_h, pad_w = -frames.shape[1] % block, -frames.shape[2] % block
    if not (pad_h or pad_w):
        return frames
    return np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
