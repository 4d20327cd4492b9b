"""A corpus of bad and awkward media, made by the tests themselves (PyAV + numpy), never downloaded.

Each case is a function ``make(folder) -> Path`` that creates one file (or folder, link, or
nothing) inside ``folder`` and returns its path. :data:`CASES` lists them all with what every
entry point must do with them:

- ``"use"``: a valid but awkward file (1x1, odd sizes, one frame, VFR, rotation, 10-bit, alpha,
  a name with spaces and non-ASCII characters, a very large resolution). Entry points read it.
- a reason of :mod:`reelm.data.video_read` (``"truncated or corrupt"``, ``"not found"``, ...):
  a file that cannot be used. Entry points refuse it with one line naming the file and that
  reason, and batch jobs record it as skipped and carry on.

:func:`make_corpus` builds every case in one folder (the ``bad_media`` session fixture in
``conftest.py`` does this once); :func:`write_manifest` writes a JSONL manifest with a row per
case, so any batch entry point can be run over the whole corpus at once. Cases that the installed FFmpeg cannot
make raise :class:`CannotMake` naming what is missing.

The awkward videos have 9 frames at 8 fps (enough for 5-frame clips at 8 fps), except
``one_frame`` and ``huge_resolution`` (3 frames of 7680x4320 at 4 fps: an 8K frame takes ~0.3 s
to decode and convert here).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

import av
import numpy as np

from reelm.data import video_read

FPS = 8
FRAMES = 9
USE = "use"


class CannotMake(RuntimeError):
    """The installed PyAV / FFmpeg cannot make this case (a missing encoder or muxer)."""


def _gradient(t: int, h: int, w: int) -> np.ndarray:
    """``(t, h, w, 3)`` uint8: smooth moving colors, easy to encode at any size."""
    tt, yy, xx = np.meshgrid(np.arange(t), np.arange(h), np.arange(w), indexing="ij")
    channels = [128 + 90 * np.sin(xx / max(w, 2) * 2 * np.pi + tt * 0.3),
                128 + 90 * np.cos(yy / max(h, 2) * 2 * np.pi - tt * 0.2),
                60 + 150 * (xx + yy) / max(w + h, 2)]
    return np.stack(channels, axis=-1).round().astype(np.uint8)


def _write(path: Path, frames, *, codec: str = "libx264", pix_fmt: str = "yuv420p", fmt: str | None = None,
           rate: int = FPS, pts: list[int] | None = None, options: dict | None = None,
           container_options: dict | None = None, rotation: float | None = None, in_format: str = "rgb24") -> Path:
    frames = list(frames)
    h, w = frames[0].shape[:2] if in_format != "yuv420p" else (frames[0].shape[0] * 2 // 3, frames[0].shape[1])
    try:
        codec_ok = av.codec.Codec(codec, "w")
    except Exception as exc:
        raise CannotMake(f"no {codec} encoder in this FFmpeg ({exc})") from None
    if pix_fmt not in [f.name for f in codec_ok.video_formats or []]:
        raise CannotMake(f"{codec} cannot encode {pix_fmt} in this FFmpeg")
    with av.open(str(path), "w", format=fmt, container_options=container_options or {}) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        if codec in ("libx264", "libx265"):
            stream.options = {"preset": "ultrafast", "crf": "12", **(options or {})}
        elif options:
            stream.options = options
        if pts is not None:
            stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for k, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format=in_format)
            if pts is not None:
                frame.pts, frame.time_base = pts[k], Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def _mp4_bytes(folder: Path, *, faststart: bool = False, name: str = "src") -> bytes:
    options = {"movflags": "+faststart"} if faststart else None
    path = _write(folder / f".{name}.mp4", _gradient(24, 48, 64), container_options=options)
    data = path.read_bytes()
    path.unlink()
    return data


# --- bad files: refused with one line, skipped by batch jobs -------------------------------------


def zero_byte(folder: Path) -> Path:
    path = folder / "zero_byte.mp4"
    path.write_bytes(b"")
    return path


def random_bytes(folder: Path) -> Path:
    path = folder / "random_bytes.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    return path


def text_as_webm(folder: Path) -> Path:
    path = folder / "text.webm"
    path.write_text("this is a text file, not a video\n" * 40)
    return path


def _truncated(folder: Path, name: str, fraction: float, *, faststart: bool) -> Path:
    data = _mp4_bytes(folder, faststart=faststart, name=name)
    path = folder / f"{name}.mp4"
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def truncated_10(folder: Path) -> Path:
    """An MP4 cut at 10 %: the index (moov, at the end) is gone."""
    return _truncated(folder, "truncated_10", 0.10, faststart=False)


def truncated_50(folder: Path) -> Path:
    """A fast-start MP4 (index first) cut at 50 %: the index promises frames whose bytes are gone."""
    return _truncated(folder, "truncated_50", 0.50, faststart=True)


def truncated_90(folder: Path) -> Path:
    """A fast-start MP4 cut at 90 %: most frames decode, the last ones are cut."""
    return _truncated(folder, "truncated_90", 0.90, faststart=True)


def truncated_mkv(folder: Path) -> Path:
    """A Matroska file cut at 2/3 (no index needed: frames decode until the cut)."""
    path = _write(folder / ".src.mkv", _gradient(24, 48, 64), fmt="matroska")
    data = path.read_bytes()
    path.unlink()
    out = folder / "truncated.mkv"
    out.write_bytes(data[: len(data) * 2 // 3])
    return out


def corrupt_middle(folder: Path) -> Path:
    """A fast-start MP4 whose middle frames' bytes are overwritten with noise."""
    data = _mp4_bytes(folder, faststart=True, name="corrupt_middle")
    mdat = data.index(b"mdat")
    start, length = mdat + (len(data) - mdat) // 2, (len(data) - mdat) // 4
    noise = np.random.default_rng(1).integers(0, 256, length, dtype=np.uint8).tobytes()
    path = folder / "corrupt_middle.mp4"
    path.write_bytes(data[:start] + noise + data[start + length:])
    return path


def header_only(folder: Path) -> Path:
    """A fast-start MP4 cut right after its header (ftyp + moov): an index and no frames."""
    data = _mp4_bytes(folder, faststart=True, name="header_only")
    path = folder / "header_only.mp4"
    path.write_bytes(data[: data.index(b"mdat") - 4])
    return path


def audio_only(folder: Path) -> Path:
    path = folder / "audio_only.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        for k in range(8):
            samples = (np.sin(np.arange(1024) / 8 + k) * 0.3).astype(np.float32)[None]
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, k * 1024
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def png_header_only(folder: Path) -> Path:
    """The PNG signature and the start of an IHDR chunk, and nothing behind it."""
    path = folder / "header_only.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00")
    return path


def directory(folder: Path) -> Path:
    path = folder / "x.mp4"
    path.mkdir()
    return path


def missing(folder: Path) -> Path:
    return folder / "does_not_exist.mp4"


def symlink_loop(folder: Path) -> Path:
    a, b = folder / "loop_a.mp4", folder / "loop_b.mp4"
    os.symlink(b.name, a)
    os.symlink(a.name, b)
    return a


# --- awkward but valid: used ---------------------------------------------------------------------


def tiny_1x1(folder: Path) -> Path:
    return _write(folder / "tiny_1x1.mkv", _gradient(FRAMES, 1, 1), codec="ffv1", pix_fmt="yuv444p", fmt="matroska")


def thin_16x512(folder: Path) -> Path:
    return _write(folder / "thin_16x512.mp4", _gradient(FRAMES, 16, 512))


def odd_33x17(folder: Path) -> Path:
    """33 wide, 17 high (odd both ways: H.264 in 4:4:4 allows it)."""
    return _write(folder / "odd_33x17.mp4", _gradient(FRAMES, 17, 33), pix_fmt="yuv444p")


def one_frame(folder: Path) -> Path:
    return _write(folder / "one_frame.mp4", _gradient(1, 48, 64))


VFR_PTS_MS = [0, 20, 200, 230, 500, 900, 950, 1000, 1300, 1350, 1600]


def variable_frame_rate(folder: Path) -> Path:
    """Irregular timestamps (ms): gaps from 20 ms to 400 ms, 1.6 s in all."""
    return _write(folder / "vfr.mp4", _gradient(len(VFR_PTS_MS), 48, 64), pts=VFR_PTS_MS)


def rotated(folder: Path) -> Path:
    """48 wide x 32 high as stored, with a display matrix rotating it 90 degrees (shown 32 x 48).

    The stored frames are white in their top-left 8x8 corner, black elsewhere: shown upright
    (rotated 90 degrees counterclockwise) the white corner is at the bottom left.
    """
    frames = np.zeros((FRAMES, 32, 48, 3), np.uint8)
    frames[:, :8, :8] = 255
    return _write(folder / "rotated.mp4", frames, rotation=90, options={"crf": "0"})


def ten_bit(folder: Path) -> Path:
    return _write(folder / "ten_bit.mp4", _gradient(FRAMES, 48, 64), pix_fmt="yuv420p10le")


def alpha(folder: Path) -> Path:
    """RGBA frames (PNG in QuickTime): transparent on the left half."""
    rgba = np.concatenate([_gradient(FRAMES, 48, 64), np.full((FRAMES, 48, 64, 1), 255, np.uint8)], axis=-1)
    rgba[:, :, :32, 3] = 0
    return _write(folder / "alpha.mov", rgba, codec="png", pix_fmt="rgba", fmt="mov", in_format="rgba")


def unicode_name(folder: Path) -> Path:
    return _write(folder / "clip with spaces é 日本語.mp4", _gradient(FRAMES, 48, 64))


HUGE = (4320, 7680)  # 8K UHD: height, width


def huge_resolution(folder: Path) -> Path:
    """3 frames of 7680x4320 (8K) at 4 fps (0.75 s, enough for 5-frame clips at 8 fps), a horizontal ramp,
    written from YUV planes directly (fast)."""
    h, w = HUGE
    planes = np.empty((h * 3 // 2, w), np.uint8)
    planes[:h] = np.linspace(16, 235, w).astype(np.uint8)[None]
    planes[h:] = 128
    return _write(folder / "huge_8k.mp4", [planes] * 3, in_format="yuv420p", rate=4)


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Path], Path]
    expect: str  # USE, or the video_read reason it is refused with


CASES: dict[str, Case] = {case.name: case for case in [
    Case("zero_byte", zero_byte, video_read.CORRUPT),
    Case("random_bytes", random_bytes, video_read.NOT_MEDIA),
    Case("text_as_webm", text_as_webm, video_read.NOT_MEDIA),
    Case("truncated_10", truncated_10, video_read.CORRUPT),
    Case("truncated_50", truncated_50, video_read.CORRUPT),
    Case("truncated_90", truncated_90, video_read.CORRUPT),
    Case("truncated_mkv", truncated_mkv, video_read.CORRUPT),
    Case("corrupt_middle", corrupt_middle, video_read.CORRUPT),
    Case("header_only", header_only, video_read.CORRUPT),
    Case("audio_only", audio_only, video_read.NO_VIDEO_STREAM),
    Case("png_header_only", png_header_only, video_read.CORRUPT),
    Case("directory", directory, video_read.NOT_MEDIA),
    Case("missing", missing, video_read.NOT_FOUND),
    Case("symlink_loop", symlink_loop, video_read.UNREADABLE),
    Case("tiny_1x1", tiny_1x1, USE),
    Case("thin_16x512", thin_16x512, USE),
    Case("odd_33x17", odd_33x17, USE),
    Case("one_frame", one_frame, USE),
    Case("variable_frame_rate", variable_frame_rate, USE),
    Case("rotated", rotated, USE),
    Case("ten_bit", ten_bit, USE),
    Case("alpha", alpha, USE),
    Case("unicode_name", unicode_name, USE),
    Case("huge_resolution", huge_resolution, USE),
]}

BAD = [name for name, case in CASES.items() if case.expect != USE]
AWKWARD = [name for name, case in CASES.items() if case.expect == USE]


def make_corpus(folder: Path, names=None) -> dict[str, Path]:
    """Every case (or those ``names``) made in ``folder``: ``{name: path}``; a case FFmpeg cannot make is left out."""
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for name in names or CASES:
        try:
            made[name] = CASES[name].make(folder)
        except CannotMake:
            continue
    return made


def write_manifest(corpus: dict[str, Path], folder: Path) -> Path:
    """``folder/manifest.jsonl``: one row per case, its path relative to ``folder``, a caption naming the case;
    and a same-name ``.txt`` caption beside each case (for folder sources)."""
    lines = []
    for name, path in corpus.items():
        lines.append(json.dumps({"video": os.path.relpath(path, folder), "caption": f"case {name}"}) + "\n")
        caption = path.with_name(path.stem + ".txt")
        if not caption.exists():
            caption.write_text(f"case {name}")
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(lines))
    return manifest
