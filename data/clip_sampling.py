"""Clip sampling: a source row becomes fixed-size clips, or a recorded reason to skip it.

A clip is ``num_frames`` frames at ``fps``, the shorter side resized to ``size`` and
center-cropped square; images (and videos of a single frame) become 1-frame clips. A long video gives ``clips_per_video``
windows, spread evenly (``temporal_crop="center"``) or drawn at random (``"random"``, from
the caller's generator so runs are reproducible). Rows that cannot be used raise
:class:`SkipRow` with one of the ``SKIP_*`` reasons; :class:`SkipLog` records them in an
errors file and counts them, so nothing is dropped silently.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reelm.data.sources import Source, SourceRow, SyntheticSource
from reelm.core.errors import ReelmError

SKIP_MISSING = "missing file"
SKIP_EMPTY_CAPTION = "empty caption"
SKIP_UNREADABLE = "unreadable video"
SKIP_TOO_SHORT = "too short"
SKIP_BAD_TIME = "bad start/end time"
SKIP_OUTSIDE_ROOT = "outside the dataset root"
SKIP_ERROR = "unexpected error"  # a bug or an unforeseen file: recorded with its exception, never fatal to a job
TEMPORAL_CROPS = ("center", "random")


@dataclass(kw_only=True)
class ClipSpec:
    num_frames: int = 17
    fps: float = 8.0
    size: int = 64  # shorter side resized to this, then a centered size x size crop
    temporal_crop: str = "center"  # "center" | "random"
    clips_per_video: int = 1


def check_clip_spec(spec: ClipSpec, *, spatial: int, temporal: int) -> None:
    """One :class:`ReelmError` line naming every setting of ``spec`` a tokenizer with these spatial and temporal
    factors cannot take (and the flag that sets it), or nothing."""
    problems = []
    if spec.size < spatial or spec.size % spatial:
        problems.append(f"size {spec.size} (--size): must be a positive multiple of {spatial}, e.g. {8 * spatial}")
    if spec.num_frames < 1 or (spec.num_frames - 1) % temporal:
        problems.append(f"num_frames {spec.num_frames} (--num-frames): must be 1 + {temporal}k, e.g. {1 + 4 * temporal}")
    if not spec.fps > 0:
        problems.append(f"fps {spec.fps} (--fps): must be positive")
    if spec.clips_per_video < 1:
        problems.append(f"clips_per_video {spec.clips_per_video} (--clips-per-video): must be at least 1")
    if spec.temporal_crop not in TEMPORAL_CROPS:
        problems.append(f"temporal_crop {spec.temporal_crop!r}: choose from {list(TEMPORAL_CROPS)}")
    if problems:
        raise ReelmError(f"clip settings: {'; '.join(problems)}")


@dataclass(frozen=True, eq=False)
class Clip:
    frames: np.ndarray  # (T, H, W, 3) uint8; T = 1 for images
    start: float  # seconds into the source video
    is_image: bool


class SkipRow(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def load_clips(source: Source, row: SourceRow, spec: ClipSpec, rng: np.random.Generator, *,
               need_caption: bool = True) -> list[Clip]:
    """The clips of one row, or :class:`SkipRow`. ``need_caption=False`` takes uncaptioned videos too
    (a video tokenizer learns from pixels alone)."""
    if row.problem:
        raise SkipRow(SKIP_OUTSIDE_ROOT, row.problem)
    if need_caption and not row.caption:
        raise SkipRow(SKIP_EMPTY_CAPTION, row.video)
    if isinstance(source, SyntheticSource):
        return [Clip(frames=source.frames(row.index), start=0.0, is_image=False)]
    from reelm.data.video_read import NOT_FOUND, VideoReadError, probe, read_video

    path = Path(row.video)
    if not row.video:
        raise SkipRow(SKIP_MISSING, "<no path>")
    if any(t is not None and not math.isfinite(t) for t in (row.start, row.end)):
        raise SkipRow(SKIP_BAD_TIME, row.video)
    try:
        if row.is_image:
            frames = read_video(path, num_frames=1, size=spec.size, crop=spec.size)
            return [Clip(frames=frames, start=0.0, is_image=True)]
        try:
            starts, known_length = _window_starts(path, row, spec, rng, probe)
        except SkipRow as skip:
            still = _still(path, spec, read_video) if skip.reason == SKIP_TOO_SHORT and not row.start else None
            if still is None:
                raise
            return [still]
        clips = []
        for start in starts:
            frames = read_video(path, fps=spec.fps, start=start, num_frames=spec.num_frames,
                                size=spec.size, crop=spec.size)
            if len(frames) < spec.num_frames:
                still = _still(path, spec, read_video) if len(frames) == 1 and start == 0 else None
                if still is not None:
                    return [still]
                detail = f"{row.video}: {len(frames)} of {spec.num_frames} frames from {start:.2f}s"
                if known_length:  # the header promised those frames: the file is cut short
                    raise SkipRow(SKIP_UNREADABLE, f"{detail}, though its header promises more (truncated)")
                raise SkipRow(SKIP_TOO_SHORT, detail)
            clips.append(Clip(frames=frames, start=start, is_image=False))
        return clips
    except VideoReadError as exc:
        raise SkipRow(SKIP_MISSING if exc.reason == NOT_FOUND else SKIP_UNREADABLE, str(exc)) from None
    except (SkipRow, MemoryError):
        raise
    except Exception as exc:  # anything else one file provokes is recorded, not allowed to end a batch job
        raise SkipRow(SKIP_ERROR, f"{row.video}: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}") from None


def _still(path: Path, spec: ClipSpec, read_video) -> Clip | None:
    """A video of exactly one frame, as the image it is (a 1-frame clip); None for anything longer."""
    frames = read_video(path, num_frames=2, size=spec.size, crop=spec.size)
    return Clip(frames=frames, start=0.0, is_image=True) if len(frames) == 1 else None


def _window_starts(path: Path, row: SourceRow, spec: ClipSpec, rng: np.random.Generator,
                   probe) -> tuple[list[float], bool]:
    """Start times of the clip windows inside ``[row.start, row.end]``, and whether the length was known."""
    begin = row.start or 0.0
    duration = probe(path).duration
    end = row.end if row.end is not None else (duration if duration else None)
    window = spec.num_frames / spec.fps  # the last frame needs its own 1/fps before the end
    if end is None:  # no duration known: take one window from the start, checked when read
        return [begin], False
    slack = end - begin - window
    if slack < 0:
        raise SkipRow(SKIP_TOO_SHORT, f"{row.video}: {end - begin:.2f}s, a clip needs {window:.2f}s")
    count = max(1, spec.clips_per_video)
    if spec.temporal_crop == "random":
        offsets = np.sort(rng.uniform(0.0, slack, size=count))
    elif count == 1:
        offsets = np.array([slack / 2])
    else:
        offsets = np.linspace(0.0, slack, count)
    # Snap to the frame grid so the same clip is read whatever rounding the container uses.
    return [begin + math.floor(o * spec.fps) / spec.fps for o in offsets], duration is not None


class SkipLog:
    """Records rows that could not be used: ``errors.jsonl`` plus counts by reason."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path is not None else None
        self.counts: Counter[str] = Counter()

    def record(self, row: SourceRow, skip: SkipRow) -> None:
        self.counts[skip.reason] += 1
        if self.path is not None:
            try:
                with open(self.path, "a") as fh:
                    fh.write(json.dumps({"index": row.index, "video": row.video, "reason": skip.reason,
                                         "detail": skip.detail}) + "\n")
            except OSError as exc:
                from reelm.core.atomic import describe_os_error

                raise ReelmError(f"{self.path}: cannot record a skipped row ({describe_os_error(exc)})") from None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self, used: int) -> str:
        parts = [f"used {used}", f"skipped {self.total}"]
        parts += [f"{reason}: {n}" for reason, n in sorted(self.counts.items())]
        return ", ".join(parts)
