"""What one submission of the page is, and running it: settings checked, the upload kept, the sample written.

A :class:`PromptRequest` is a prompt (or none), an optional upload (an image: image-to-video;
anything else: a clip to continue), a seed, a frame count and a guidance scale, checked as the
form sends them (text) with one-line reasons. :class:`PromptRunner` runs one on a loaded
:class:`~reelm.generation.VideoPipeline` and writes its video, contact sheet and JSON sidecar
into the session's folder with :mod:`reelm.generation.outputs`, as ``reelm generate`` does: the
same seed and settings make the same video as ``reelm generate PROMPT --seed S``. An upload's
reasons (a corrupt clip, a text file named ``clip.mp4``) name the file as it was uploaded.
"""

from __future__ import annotations

import math
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from reelm.core.atomic import describe_os_error
from reelm.core.errors import ReelmError, one_line_reason
from reelm.data.sources import IMAGE_SUFFIXES
from reelm.generation.outputs import SampleFiles, plan_samples, write_sample
from reelm.generation.pipeline import DEFAULT_GUIDANCE

MAX_WINDOWS = 8  # frames at most per request: this many training lengths (one request holds the queue)
MAX_PROMPT_CHARS = 2000
SIDE_KEYS = ("engine", "sample_seeds", "sample_numbers", "num_samples", "batch_size")  # per-call, not per-sample


class AppInputError(ReelmError):
    """A submission the app cannot run: a setting out of range, nothing to generate from, a bad upload."""


@dataclass(frozen=True)
class PromptRequest:
    prompt: str | None
    seed: int = 0
    frames: int | None = None  # None: the model's training length
    guidance: float = DEFAULT_GUIDANCE
    upload: Path | None = None  # the uploaded file, saved under its own name's suffix
    upload_name: str | None = None  # its name as uploaded

    @property
    def condition(self) -> str | None:
        """``"image"`` (image-to-video), ``"video"`` (continuation) or None (text-to-video)."""
        if self.upload is None:
            return None
        return "image" if self.upload.suffix.lower() in IMAGE_SUFFIXES else "video"


def parse_request(fields: dict[str, str], *, max_frames: int, upload: Path | None = None,
                  upload_name: str | None = None) -> PromptRequest:
    """A request from the form's text fields (``prompt``, ``seed``, ``frames``, ``guidance``), checked."""
    prompt = (fields.get("prompt") or "").strip() or None
    if prompt is not None and len(prompt) > MAX_PROMPT_CHARS:
        raise AppInputError(f"prompt: {len(prompt)} characters; keep it under {MAX_PROMPT_CHARS}")
    if prompt is None and upload is None:
        raise AppInputError("nothing to generate from: type a prompt or choose an image or a clip")
    seed = _number(fields, "seed", int, 0)
    frames = _number(fields, "frames", int, None)
    if frames is not None and not 1 <= frames <= max_frames:
        raise AppInputError(f"frames {frames}: expected 1 .. {max_frames}")
    guidance = _number(fields, "guidance", float, DEFAULT_GUIDANCE)
    if not math.isfinite(guidance) or guidance < 0:
        raise AppInputError(f"guidance {guidance}: expected a number of 0 or more (1 = no guidance)")
    return PromptRequest(prompt, seed, frames, guidance, upload, upload_name)


def _number(fields: dict[str, str], name: str, kind: type, default):
    text = (fields.get(name) or "").strip()
    if not text:
        return default
    try:
        return kind(text)
    except ValueError:
        raise AppInputError(f"{name} {text!r}: expected {'a whole number' if kind is int else 'a number'}") from None


def upload_file_name(name: str | None) -> str:
    """An uploaded file's name made safe to save under (its folder dropped, odd characters replaced)."""
    base = Path((name or "").replace("\\", "/")).name
    stem, suffix = Path(base).stem, Path(base).suffix.lower()
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")[:80] or "upload"
    return stem + (suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else "")


class PromptRunner:
    """Runs requests on ``pipe`` and writes their samples into ``out`` (``NAME.mp4``, ``.png``, ``.json``)."""

    def __init__(self, pipe, out: Path):
        self.pipe = pipe
        self.out = Path(out)
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AppInputError(f"{out}: cannot make the samples' folder ({describe_os_error(exc)})") from None
        self.session = time.strftime("%Y%m%d-%H%M%S")
        self.uploads: Path | None = None  # made with the first upload
        self._saved = 0

    @property
    def max_frames(self) -> int:
        return MAX_WINDOWS * self.pipe.model.clip.num_frames

    def upload_path(self, name: str | None) -> Path:
        """A fresh path to save an upload at, keeping its name (so its suffix, and its reasons, read as uploaded)."""
        if self.uploads is None:
            self.uploads = Path(tempfile.mkdtemp(prefix="reelm-app-uploads-"))
        self._saved += 1
        folder = self.uploads / f"{self._saved:04d}"
        folder.mkdir()
        return folder / upload_file_name(name)

    def discard(self, upload: Path) -> None:
        """Remove a saved upload (once its job has read it, or when its submission was refused)."""
        shutil.rmtree(upload.parent, ignore_errors=True)

    def close(self) -> None:
        if self.uploads is not None:
            shutil.rmtree(self.uploads, ignore_errors=True)

    def __call__(self, request: PromptRequest, job_id: str) -> SampleFiles:
        files = plan_samples(self.out / f"{self.session}-{int(job_id):04d}.mp4", [request.prompt], 1)[0]
        try:
            out = self.pipe(request.prompt, **{request.condition: str(request.upload)} if request.condition else {},
                            seed=request.seed, num_frames=request.frames, guidance_scale=request.guidance)
        except ReelmError as exc:
            message = one_line_reason(exc)
            if request.upload is not None:
                message = message.replace(str(request.upload), request.upload_name or request.upload.name)
            raise AppInputError(message) from exc
        finally:
            if request.upload is not None:
                self.discard(request.upload)
        video = out.videos[0]  # (T, H, W, 3) uint8
        info = {key: value for key, value in out.info.items() if key not in SIDE_KEYS}
        sidecar = {"prompt": request.prompt, "sample": 0, "upload": request.upload_name, **info,
                   "sample_seed": out.info["sample_seeds"][0], "tokens_this_sample": int(out.codes[0].size),
                   "app_job": job_id}
        return write_sample(files, video, self.pipe.model.clip.fps, sidecar,
                            label=request.prompt or request.upload_name)
