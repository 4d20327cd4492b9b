"""What ``reelm generate`` writes and reads: sample files (video, contact sheet, JSON sidecar) and prompt files.

Every generated video ``NAME.mp4`` (or ``.gif``) gets ``NAME.png`` (a contact sheet of its
frames, captioned with its prompt) and ``NAME.json`` (the prompt, the seed, every setting, the
model and tokenizer identities, token counts and timings) beside it, each written atomically.
Several videos from one command are numbered: ``NAME-P-S.mp4`` for prompt ``P``, sample ``S``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from reelm.core.atomic import write_json
from reelm.data.contact_sheet import contact_sheet
from reelm.data.video_write import write_video
from reelm.core.errors import ReelmError

SHEET_FRAMES = 9


class OutputError(ReelmError):
    """An output path or a prompt file that cannot be used."""


def sample_paths(output: Path, prompts: int, samples: int) -> list[Path]:
    """Where each video goes: ``output`` itself for one video, ``NAME-P-S.ext`` for several."""
    if prompts * samples == 1:
        return [output]
    return [output.with_name(f"{output.stem}-{p:03d}-{s:02d}{output.suffix}")
            for p in range(prompts) for s in range(samples)]


def write_sample(path: Path, frames: np.ndarray, fps: float, sidecar: dict, *, label: str | None = None,
                 extra_rows: Sequence[tuple[str, np.ndarray]] = ()) -> dict[str, Path]:
    """The video, its contact sheet (``extra_rows`` first, e.g. the conditioning clip) and its JSON sidecar."""
    video = write_video(path, frames, fps)
    rows = [clip for _, clip in extra_rows] + [frames]
    labels = [name for name, _ in extra_rows] + [_short(label or "generated")]
    sheet = contact_sheet(rows, path.with_suffix(".png"), max_frames=SHEET_FRAMES, labels=labels)
    record = {**sidecar, "video": video.name, "contact_sheet": sheet.name, "frames": int(len(frames)),
              "height": int(frames.shape[1]), "width": int(frames.shape[2]), "fps": fps}
    meta = write_json(path.with_suffix(".json"), record)
    return {"video": video, "contact_sheet": sheet, "sidecar": meta}


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
