"""What ``reelm generate`` writes and reads: sample files (video, contact sheet, JSON sidecar) and prompt files.

Every generated video ``NAME.mp4`` (or ``.gif``) gets ``NAME.png`` (a contact sheet of its
frames, captioned with its prompt) and ``NAME.json`` (the prompt, the seed, every setting, the
model and tokenizer identities, token counts and timings) beside it, each written atomically.
Several videos from one command are numbered: ``NAME-P-S.mp4`` for prompt ``P``, sample ``S``, or
named as VBench reads them (``{prompt}-{S}.mp4``). The sidecar is written last, so a sample whose
sidecar exists is whole: a killed batch run resumes with ``--skip-existing``. A story
(``--story``) is one video written window by window, its sheet a row a segment, its sidecar
recording each segment's prompt, frames, seed and contexts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from reelm.core.atomic import write_json
from reelm.data.contact_sheet import contact_sheet
from reelm.data.video_write import open_video, write_video
from reelm.core.errors import ReelmError

SHEET_FRAMES = 9


class OutputError(ReelmError):
    """An output path or a prompt file that cannot be used."""


NAMINGS = ("numbered", "vbench")
VBENCH_SIDE_FOLDER = "reelm"  # under --naming vbench: the contact sheets and sidecars, out of VBench's video folder
NAME_BYTES = 255  # the longest file name most file systems take


@dataclass(frozen=True)
class SampleFiles:
    """Where one sample's video, contact sheet and sidecar go, and which (prompt, sample) it is."""

    prompt_index: int
    sample: int
    prompt: str | None
    video: Path
    sheet: Path
    sidecar: Path

    def complete(self) -> bool:
        """Whether an earlier run wrote this sample whole (the sidecar is written last, each file atomically)."""
        return self.sidecar.is_file() and self.video.is_file() and self.sheet.is_file()


def plan_samples(output: Path, prompts: Sequence[str | None], samples: int, naming: str = "numbered") -> list[SampleFiles]:
    """Every sample's files, prompt after prompt (each prompt's ``samples`` together).

    ``numbered``: ``output`` itself for one video, ``NAME-P-S.ext`` (prompt ``P``, sample ``S``) for several,
    sheet and sidecar beside each. ``vbench``: ``output`` is a folder and each video is ``{prompt}-{S}.mp4``
    in it, as VBench's evaluation reads them; sheets and sidecars go to ``output/reelm/``."""
    if naming not in NAMINGS:
        raise OutputError(f"--naming {naming!r}: choose from {', '.join(NAMINGS)}")
    if naming == "numbered":
        if len(prompts) * samples == 1:
            videos = [output]
        else:
            videos = [output.with_name(f"{output.stem}-{p:03d}-{s:02d}{output.suffix}")
                      for p in range(len(prompts)) for s in range(samples)]
        sides = [(video.with_suffix(".png"), video.with_suffix(".json")) for video in videos]
    else:
        names = [f"{_vbench_prompt(prompts, p)}-{s}" for p in range(len(prompts)) for s in range(samples)]
        videos = [output / f"{name}.mp4" for name in names]
        sides = [(output / VBENCH_SIDE_FOLDER / f"{name}.png", output / VBENCH_SIDE_FOLDER / f"{name}.json")
                 for name in names]
    return [SampleFiles(i // samples, i % samples, prompts[i // samples], video, sheet, sidecar)
            for i, (video, (sheet, sidecar)) in enumerate(zip(videos, sides))]


def _vbench_prompt(prompts: Sequence[str | None], index: int) -> str:
    """A prompt as VBench names its videos, checked to make one file name, once."""
    prompt = prompts[index]
    if prompt is None:
        raise OutputError("--naming vbench names videos by their prompt: give prompts")
    if "/" in prompt or "\0" in prompt:
        raise OutputError(f"prompt {index + 1} ({_short(prompt)!r}) holds a '/', which a VBench file name cannot")
    if len(f"{prompt}-99.mp4".encode()) > NAME_BYTES:
        raise OutputError(f"prompt {index + 1} ({_short(prompt)!r}) is too long for a file name "
                          f"({len(prompt.encode())} bytes; VBench names each video by its prompt)")
    if prompt in prompts[:index]:
        raise OutputError(f"prompt {index + 1} ({_short(prompt)!r}) repeats prompt {prompts.index(prompt) + 1}; "
                          "VBench names videos by prompt, so each must be unique (use --num-samples for more)")
    return prompt


def write_sample(files: SampleFiles, frames: np.ndarray, fps: float, sidecar: dict, *, label: str | None = None,
                 extra_rows: Sequence[tuple[str, np.ndarray]] = ()) -> SampleFiles:
    """The video, its contact sheet (``extra_rows`` first, e.g. the conditioning clip) and, last, its JSON sidecar."""
    video = write_video(files.video, frames, fps)
    rows = [clip for _, clip in extra_rows] + [frames]
    labels = [name for name, _ in extra_rows] + [_short(label or "generated")]
    files.sheet.parent.mkdir(parents=True, exist_ok=True)
    sheet = contact_sheet(rows, files.sheet, max_frames=SHEET_FRAMES, labels=labels)
    record = {**sidecar, "video": video.name, "contact_sheet": str(sheet.relative_to(video.parent)),
              "frames": int(len(frames)), "height": int(frames.shape[1]), "width": int(frames.shape[2]), "fps": fps,
              "frames_sha256": frames_digest(frames)}
    write_json(files.sidecar, record)
    return files


def write_story(files: SampleFiles, pieces, fps: float, sidecar: dict, recorder, *,
                on_piece=None) -> dict:
    """A story's video streamed window by window (``pieces`` from
    :func:`reelm.generation.story_generation.iter_story`), then its contact sheet — a row a segment, labelled
    with its start time and prompt, so each row begins where its segment does — and, last, its sidecar with
    each segment's bookkeeping (``recorder``, a ``StoryRecorder``). Memory holds a window and the sheet's
    frames, never the video. Returns the sidecar record."""
    rows: list[list[np.ndarray]] = []
    labels: list[str] = []
    digest = hashlib.sha256()
    count, shape = 0, None
    with open_video(files.video, fps) as stream:
        for piece in pieces:
            recorder.add(piece)
            segment = piece.segment
            if piece.window == 0:  # a new segment: its sheet row, and which of its frames the row shows
                rows.append([])
                labels.append(_short(f"{segment.start / fps:.1f} s: {segment.segment.prompt}"))
                wanted = set(np.linspace(segment.start, segment.end - 1, min(SHEET_FRAMES, segment.frames)).round()
                             .astype(int).tolist())
            rows[-1].extend(f for i, f in enumerate(piece.frames, start=piece.start) if i in wanted)
            stream.write(piece.frames)
            digest.update(np.ascontiguousarray(piece.frames, dtype=np.uint8).tobytes())
            count, shape = count + len(piece.frames), piece.frames.shape[1:3]
            if on_piece is not None:
                on_piece(piece)
    files.sheet.parent.mkdir(parents=True, exist_ok=True)
    sheet = contact_sheet([np.stack(row) for row in rows], files.sheet, max_frames=SHEET_FRAMES, labels=labels)
    record = {**sidecar, "video": files.video.name, "contact_sheet": str(sheet.relative_to(files.video.parent)),
              "frames": count, "height": int(shape[0]), "width": int(shape[1]), "fps": fps,
              "frames_sha256": digest.hexdigest(), "segments": recorder.segments}
    write_json(files.sidecar, record)
    return record


def frames_digest(frames: np.ndarray) -> str:
    """SHA-256 of the generated uint8 frames before encoding: two runs made the same video if these agree (H.264
    is lossy and, at the tiny sizes of tests, not byte-stable across a process's first encodes)."""
    return hashlib.sha256(np.ascontiguousarray(frames, dtype=np.uint8).tobytes()).hexdigest()


def read_prompts(path: str | Path) -> list[str]:
    """Prompts from a UTF-8 text file, one per line (blank lines skipped); a one-line error otherwise."""
    path = Path(path)
    if not path.is_file():
        raise OutputError(f"--prompts {path}: {'not found' if not path.exists() else 'not a file'}; give a UTF-8 text "
                          "file with one prompt per line")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise OutputError(f"--prompts {path}: not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8") from None
    prompts = [line.strip() for line in lines if line.strip()]
    if not prompts:
        raise OutputError(f"--prompts {path}: holds no prompts (one per line)")
    return prompts


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
