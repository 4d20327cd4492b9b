"""Story files: a timed sequence of prompts, read from plain text or JSON, and laid out on latent frames.

A story is a list of segments, each a prompt and how long it lasts. The plain-text form has one
segment a line, ``DURATION: PROMPT``, where the duration is in seconds (``2s``, ``1.5 s``,
``2 sec``) or frames (``16f``, ``16 frames``); blank lines and lines starting with ``#`` are
skipped::

    # a story in three sentences
    2s: a red circle moves to the right
    2s: a red circle moves up
    16f: a red circle stays in place

The JSON form is a list of segments (or ``{"segments": [...]}``), each ``{"prompt": ...,
"seconds": ...}`` or ``{"prompt": ..., "frames": ...}``. Any other shape is refused with a
one-line error naming the file, the line or segment, and the reason.

The video tokenizer makes latent frames of ``temporal_downsample`` pixel frames (the first one
frame), so a segment is laid on whole latent frames: :func:`plan_segments` gives each segment's
latent frames, the pixel frames it really makes (its requested length rounded to latent frames
of the story so far) and where it starts.

Follows: Phenaki's story prompts (one video, a sentence a segment, each continuing the last).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from reelm.core.errors import ReelmError

STORY_CONTEXTS = ("pixels", "codes", "anchor")  # what a continuation window is given: re-encoded frames, the model's
# codes, or re-encoded frames whose first is the story's first frame (reelm.generation.story_generation)


class StoryError(ReelmError):
    """A story file or segment that cannot be used."""


@dataclass(frozen=True)
class StorySegment:
    """One sentence of a story: its prompt and its length, in ``seconds`` or in ``frames`` (exactly one)."""

    prompt: str
    seconds: float | None = None
    frames: int | None = None

    def requested_frames(self, fps: float) -> int:
        """The pixel frames asked for at ``fps`` (seconds rounded to the nearest frame)."""
        return self.frames if self.frames is not None else max(1, round(self.seconds * fps))

    def requested(self) -> dict:
        return {"seconds": self.seconds} if self.seconds is not None else {"frames": self.frames}


@dataclass(frozen=True)
class PlannedSegment:
    """Where one segment lies in the story's video: pixel frames ``[start, end)``, ``latent_frames`` of its own."""

    index: int
    segment: StorySegment
    start: int
    end: int
    latent_frames: int

    @property
    def frames(self) -> int:
        return self.end - self.start


_LINE = re.compile(r"^\s*(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>s|sec|secs|seconds?|f|frames?)\s*:\s*(?P<prompt>.*)$", re.I)


def parse_story_text(text: str, *, source: str = "story") -> list[StorySegment]:
    """Segments from the plain-text form (``DURATION: PROMPT`` a line); ``source`` names it in errors."""
    segments = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise StoryError(f"{source}, line {number}: expected 'DURATION: PROMPT' (e.g. '2s: a red circle moves "
                             f"up' or '16f: ...'), got {_short(line.strip())!r}")
        value, unit, prompt = match.group("value"), match.group("unit").lower(), match.group("prompt").strip()
        where = f"{source}, line {number}"
        if unit.startswith("f"):
            if "." in value:
                raise StoryError(f"{where}: {value} frames: a frame count is a whole number")
            segments.append(_segment(where, prompt, frames=int(value)))
        else:
            segments.append(_segment(where, prompt, seconds=float(value)))
    return _check_story(segments, source)


def parse_story_json(data, *, source: str = "story") -> list[StorySegment]:
    """Segments from the JSON form: a list of ``{"prompt", "seconds" | "frames"}`` (or ``{"segments": [...]}``)."""
    if isinstance(data, dict) and set(data) == {"segments"}:
        data = data["segments"]
    if not isinstance(data, list):
        raise StoryError(f"{source}: expected a list of segments (or {{\"segments\": [...]}}), got "
                         f"{type(data).__name__}")
    segments = []
    for number, item in enumerate(data, start=1):
        where = f"{source}, segment {number}"
        if not isinstance(item, dict):
            raise StoryError(f"{where}: expected {{\"prompt\": ..., \"seconds\": ...}}, got {type(item).__name__}")
        unknown = sorted(set(item) - {"prompt", "seconds", "frames"})
        if unknown:
            raise StoryError(f"{where}: unknown key(s) {', '.join(unknown)}; a segment has prompt and seconds or frames")
        if ("seconds" in item) == ("frames" in item):
            raise StoryError(f"{where}: give its length as exactly one of seconds or frames")
        prompt = item.get("prompt")
        if not isinstance(prompt, str):
            raise StoryError(f"{where}: prompt must be text, got {type(prompt).__name__}")
        if "frames" in item:
            frames = item["frames"]
            if isinstance(frames, bool) or not isinstance(frames, int):
                raise StoryError(f"{where}: frames {frames!r}: a frame count is a whole number")
            segments.append(_segment(where, prompt, frames=frames))
        else:
            seconds = item["seconds"]
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
                raise StoryError(f"{where}: seconds {seconds!r}: expected a number")
            segments.append(_segment(where, prompt, seconds=float(seconds)))
    return _check_story(segments, source)


def read_story(path: str | Path) -> list[StorySegment]:
    """A story file: JSON when it ends in ``.json``, the plain-text form otherwise."""
    path = Path(path)
    if not path.is_file():
        raise StoryError(f"--story {path}: {'not found' if not path.exists() else 'not a file'}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise StoryError(f"--story {path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StoryError(f"--story {path}: not JSON (line {exc.lineno}: {exc.msg})") from None
        return parse_story_json(data, source=str(path))
    return parse_story_text(text, source=str(path))


def plan_segments(segments: list[StorySegment], fps: float, temporal_downsample: int) -> list[PlannedSegment]:
    """Each segment on whole latent frames: its end is the story's requested end so far, rounded to the nearest
    latent frame (the first latent frame is one pixel frame, each later one ``temporal_downsample``), so rounding
    never accumulates; a segment too short to get a latent frame (``temporal_downsample`` frames) is refused."""
    ft = temporal_downsample
    planned, start, latents_so_far, requested_end = [], 0, 0, 0
    for index, segment in enumerate(segments):
        asked = segment.requested_frames(fps)
        requested_end += asked
        latents = max(1, 1 + round((requested_end - 1) / ft))  # latent frames of the story up to this end
        own = latents - latents_so_far
        if own < 1 or (index and asked < ft):  # the first segment's first latent frame is a single frame
            raise StoryError(f"segment {index + 1} ({_short(segment.prompt)!r}): {asked} "
                             f"frame(s) is shorter than one latent frame ({ft} frames, {ft / fps:.2f} s at "
                             f"{fps:g} fps); make it longer")
        end = 1 + ft * (latents - 1)
        planned.append(PlannedSegment(index, segment, start, end, own))
        start, latents_so_far = end, latents
    return planned


def _segment(where: str, prompt: str, *, seconds: float | None = None, frames: int | None = None) -> StorySegment:
    if not prompt.strip():
        raise StoryError(f"{where}: the prompt is empty")
    if frames is not None and frames < 1:
        raise StoryError(f"{where}: {frames} frames: a segment lasts at least one frame")
    if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
        raise StoryError(f"{where}: {seconds:g} s: a segment lasts a positive, finite time")
    return StorySegment(prompt.strip(), seconds=seconds, frames=frames)


def _check_story(segments: list[StorySegment], source: str) -> list[StorySegment]:
    if not segments:
        raise StoryError(f"{source}: holds no segments (one 'DURATION: PROMPT' a line, e.g. '2s: a red circle "
                         "moves up')")
    return segments


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
