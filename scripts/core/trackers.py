"""Experiment trackers, ``--report-to``: where a training run's scalars, images and videos also go.

``tensorboard`` writes ``RUN/tensorboard`` (``tensorboard --logdir RUN/tensorboard``),
``wandb`` a Weights & Biases run (``wandb.init(project=$WANDB_PROJECT or "reelm", dir=RUN)``),
``trackio`` a trackio run (project ``$TRACKIO_PROJECT`` or ``"reelm"``; ``trackio show``);
``all`` is those installed, ``none`` (the default) none of them; names may be
comma-separated. A backend asked for but not installed is a one-line error naming its pip
install, raised on every rank so all of them stop together; only rank 0 reports.

Every backend takes scalars, images (``(H, W, 3)`` uint8) and videos (``(T, H, W, 3)``
uint8), the videos as animated GIFs encoded here with Pillow (TensorBoard's and W&B's own
video encoders need moviepy, trackio's ffmpeg). A resumed run calls
:meth:`Trackers.truncate_after`: TensorBoard then drops the events past the checkpoint.

Follows: transformers' ``report_to`` (``TrainingArguments``) and its integration callbacks.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import os
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from reelm.core.errors import ReelmError, one_line_reason

BACKENDS = ("tensorboard", "wandb", "trackio")
PROJECT = "reelm"


def resolve_report_to(report_to: str | Sequence[str] | None) -> tuple[str, ...]:
    """The backends ``--report-to`` names (``"none"``, ``"all"``, ``"tensorboard,wandb"``, a list), checked:
    an unknown name, or one not installed, is a one-line error."""
    if report_to is None:
        return ()
    given = [report_to] if isinstance(report_to, str) else list(report_to)
    names = [name.strip().lower() for item in given for name in item.split(",") if name.strip()]
    unknown = [name for name in names if name not in (*BACKENDS, "all", "none")]
    if unknown:
        raise ReelmError(f"--report-to {','.join(unknown)}: choose from {', '.join(BACKENDS)}, all or none")
    if "all" in names:
        return tuple(name for name in BACKENDS if installed(name))
    chosen = tuple(dict.fromkeys(name for name in names if name != "none"))
    missing = [name for name in chosen if not installed(name)]
    if missing:
        raise ReelmError(f"--report-to {missing[0]} needs the {missing[0]} package (pip install {missing[0]})")
    return chosen


def installed(name: str) -> bool:
    if name in sys.modules:
        return sys.modules[name] is not None  # None: an import blocked on purpose
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a module without a spec (e.g. one a test put in sys.modules)
        return False


class Trackers:
    """The backends of one run, or none (falsy): ``scalars``, ``image``, ``video``, ``close``."""

    def __init__(self, backends: Sequence = ()):
        self.backends = list(backends)

    def __bool__(self) -> bool:
        return bool(self.backends)

    def scalars(self, values: dict[str, float], step: int) -> None:
        """``{"train/loss": 0.12, ...}`` at ``step``."""
        for backend in self.backends:
            backend.scalars(values, step)

    def image(self, tag: str, image: np.ndarray, step: int, caption: str | None = None) -> None:
        """One ``(H, W, 3)`` uint8 image."""
        image = _checked(image, 3, tag)
        for backend in self.backends:
            backend.image(tag, image, step, caption)

    def video(self, tag: str, frames: np.ndarray, step: int, fps: float, caption: str | None = None) -> None:
        """One ``(T, H, W, 3)`` uint8 clip, as an animated GIF."""
        gif = encode_gif(_checked(frames, 4, tag), fps)
        for backend in self.backends:
            backend.video(tag, gif, frames.shape, step, caption)

    def truncate_after(self, step: int) -> None:
        """A resumed run logs again from ``step + 1``."""
        for backend in self.backends:
            backend.truncate_after(step)

    def close(self) -> None:
        for backend in self.backends:
            backend.close()
        self.backends = []


def open_trackers(report_to: str | Sequence[str] | None, run_dir: str | Path, *, enabled: bool,
                  config: dict | None = None) -> Trackers:
    """The trackers ``report_to`` names for the run in ``run_dir`` (checked on every rank; opened where
    ``enabled``, i.e. on rank 0); ``config`` is the run's settings, shown by W&B and trackio."""
    names = resolve_report_to(report_to)
    if not enabled:
        return Trackers()
    run_dir = Path(run_dir)
    return Trackers([_BACKEND_CLASSES[name](run_dir, config or {}) for name in names])


def encode_gif(frames: np.ndarray, fps: float) -> bytes:
    """``(T, H, W, 3)`` uint8 frames as a looping GIF."""
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], loop=0,
                   duration=max(20, round(1000 / fps)))
    return buffer.getvalue()


def _checked(array: np.ndarray, ndim: int, tag: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != ndim or array.shape[-1] != 3 or array.dtype != np.uint8 or 0 in array.shape:
        shape = "(H, W, 3)" if ndim == 3 else "(T, H, W, 3)"
        raise ReelmError(f"tracker {tag!r}: expected a {shape} uint8 array, got {array.dtype} {array.shape}")
    return np.ascontiguousarray(array)


class TensorBoardBackend:
    """``RUN/tensorboard`` event files; opened at the first write so a resume can purge the later events."""

    def __init__(self, run_dir: Path, config: dict):
        self.folder = run_dir / "tensorboard"
        self.purge_step: int | None = None
        self._writer = None

    @property
    def writer(self):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.folder), purge_step=self.purge_step)
        return self._writer

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def image(self, tag: str, image: np.ndarray, step: int, caption: str | None) -> None:
        self.writer.add_image(tag, image, step, dataformats="HWC")

    def video(self, tag: str, gif: bytes, shape: tuple, step: int, caption: str | None) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary

        # What SummaryWriter.add_video writes (an image summary holding a GIF), without its moviepy encoder.
        image = Summary.Image(height=shape[1], width=shape[2], colorspace=3, encoded_image_string=gif)
        self.writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)

    def truncate_after(self, step: int) -> None:
        if self._writer is None:
            self.purge_step = step + 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


class WandbBackend:
    """A Weights & Biases run in ``RUN/wandb`` (online or offline as ``wandb`` is set up: ``WANDB_MODE``)."""

    def __init__(self, run_dir: Path, config: dict):
        self.wandb = importlib.import_module("wandb")
        try:
            self.run = self.wandb.init(project=os.environ.get("WANDB_PROJECT", PROJECT), name=run_dir.name,
                                       dir=str(run_dir), config=config)
        except Exception as exc:  # not logged in, no network, ...: wandb's own reason, on one line
            raise ReelmError(f"--report-to wandb: wandb.init failed ({one_line_reason(exc)}); run 'wandb login', "
                             "or set WANDB_MODE=offline") from None

    def scalars(self, values: dict[str, float], step: int) -> None:
        self.run.log(dict(values), step=step)

    def image(self, tag: str, image: np.ndarray, step: int, caption: str | None) -> None:
        self.run.log({tag: self.wandb.Image(image, caption=caption)}, step=step)

    def video(self, tag: str, gif: bytes, shape: tuple, step: int, caption: str | None) -> None:
        self.run.log({tag: self.wandb.Video(io.BytesIO(gif), caption=caption, format="gif")}, step=step)

    def truncate_after(self, step: int) -> None:
        pass  # a resumed run is a new W&B run; its steps continue from the checkpoint

    def close(self) -> None:
        self.run.finish()


class TrackioBackend:
    """A trackio run (stored where trackio keeps its projects: ``$TRACKIO_DIR``; ``trackio show``)."""

    def __init__(self, run_dir: Path, config: dict):
        self.trackio = importlib.import_module("trackio")
        self.trackio.init(project=os.environ.get("TRACKIO_PROJECT", PROJECT), name=run_dir.name, config=config)

    def scalars(self, values: dict[str, float], step: int) -> None:
        self.trackio.log(dict(values), step=step)

    def image(self, tag: str, image: np.ndarray, step: int, caption: str | None) -> None:
        self.trackio.log({tag: self.trackio.Image(image, caption=caption)}, step=step)

    def video(self, tag: str, gif: bytes, shape: tuple, step: int, caption: str | None) -> None:
        with tempfile.TemporaryDirectory() as folder:  # trackio copies the file when it logs it
            path = Path(folder) / "video.gif"
            path.write_bytes(gif)
            self.trackio.log({tag: self.trackio.Video(str(path), caption=caption)}, step=step)

    def truncate_after(self, step: int) -> None:
        pass

    def close(self) -> None:
        self.trackio.finish()


_BACKEND_CLASSES = {"tensorboard": TensorBoardBackend, "wandb": WandbBackend, "trackio": TrackioBackend}
