"""Readable reports: one self-contained HTML page per eval run, with its pictures beside it.

A :class:`Report` is built from sections, each a heading, a line of prose and its evidence
(tables, contact sheets, matplotlib figures); :meth:`Report.write` puts ``report.html`` and a
``report_files/`` folder of PNGs (relative links) in the run's folder, atomically, so the page
opens from disk with no server. The summary table comes first, then each dimension with
what shows *why* its score is what it is.

Follows: nanochat's ``report.py`` (a report assembled from small sections each stage writes);
VBench's per-dimension results with every sample's own score.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from reelm.core.atomic import atomic_write, write_text

FILES_DIR = "report_files"
STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1180px;
       color: #1b1b1b; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; }
h3 { font-size: 1.05em; margin-bottom: 0.3em; }
.meta { color: #666; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.6em 0 1em; font-size: 0.92em; }
th, td { border: 1px solid #d7d7d7; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.good { background: #e7f6e7; } .bad { background: #fbe9e9; }
figure { margin: 0.8em 0; } figcaption { color: #555; font-size: 0.88em; }
img { max-width: 100%; image-rendering: pixelated; border: 1px solid #eee; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 1em; }
"""


@dataclass
class Section:
    title: str
    report: Report
    parts: list[str] = field(default_factory=list)

    def text(self, text: str) -> Section:
        self.parts.append(f"<p>{html.escape(text)}</p>")
        return self

    def table(self, rows: Sequence[Sequence[Any]], header: Sequence[str], *,
              highlight: Sequence[str | None] | None = None) -> Section:
        """A table; ``highlight`` gives a CSS class per row (``"good"``, ``"bad"`` or None)."""
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
        body = []
        for i, row in enumerate(rows):
            cls = f' class="{highlight[i]}"' if highlight and highlight[i] else ""
            cells = "".join(_cell(value) for value in row)
            body.append(f"<tr{cls}>{cells}</tr>")
        self.parts.append(f"<table><tr>{head}</tr>{''.join(body)}</table>")
        return self

    def image(self, picture, caption: str, *, name: str | None = None) -> Section:
        """A PNG: a path already written, an ``(H, W, 3)`` uint8 array or a PIL image (saved under report_files/)."""
        path = self.report.add_file(picture, name or caption)
        self.parts.append(f'<figure><img src="{FILES_DIR}/{html.escape(path.name)}" alt="{html.escape(caption)}">'
                          f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        return self

    def figure(self, fig, caption: str, *, name: str | None = None) -> Section:
        """A matplotlib ``Figure`` (made without pyplot), saved as PNG."""
        path = self.report.files / f"{_slug(name or caption)}.png"
        self.report.files.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png", bbox_inches="tight"))
        self.parts.append(f'<figure><img src="{FILES_DIR}/{html.escape(path.name)}" alt="{html.escape(caption)}">'
                          f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        return self

    def html(self, fragment: str) -> Section:
        """Raw HTML the caller built and escaped itself."""
        self.parts.append(fragment)
        return self


class Report:
    def __init__(self, folder: str | Path, title: str, *, subtitle: str = ""):
        self.folder, self.title, self.subtitle = Path(folder), title, subtitle
        self.files = self.folder / FILES_DIR
        self.sections: list[Section] = []
        self._names: set[str] = set()

    def section(self, title: str) -> Section:
        section = Section(title, self)
        self.sections.append(section)
        return section

    def add_file(self, picture, name: str) -> Path:
        from PIL import Image

        self.files.mkdir(parents=True, exist_ok=True)
        stem = _slug(name)
        while stem in self._names:
            stem += "_"
        self._names.add(stem)
        target = self.files / f"{stem}.png"
        if isinstance(picture, (str, Path)):
            data = Path(picture).read_bytes()
            atomic_write(target, lambda tmp: tmp.write_bytes(data))
        else:
            image = Image.fromarray(np.asarray(picture)) if not isinstance(picture, Image.Image) else picture
            atomic_write(target, lambda tmp: image.save(tmp, format="PNG"))
        return target

    def write(self, name: str = "report.html") -> Path:
        body = [f"<h1>{html.escape(self.title)}</h1>"]
        if self.subtitle:
            body.append(f'<p class="meta">{html.escape(self.subtitle)}</p>')
        for section in self.sections:
            body.append(f"<h2>{html.escape(section.title)}</h2>")
            body += section.parts
        page = (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(self.title)}</title>"
                f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n")
        self.folder.mkdir(parents=True, exist_ok=True)
        return write_text(self.folder / name, page)


def enlarge(frames: np.ndarray, min_side: int = 96) -> np.ndarray:
    """``(..., H, W, 3)`` frames repeated pixel by pixel until the shorter side is at least ``min_side`` (for display)."""
    frames = np.asarray(frames)
    factor = max(1, -(-min_side // min(frames.shape[-3:-1])))
    return frames.repeat(factor, axis=-3).repeat(factor, axis=-2) if factor > 1 else frames


def display_frames(frames: np.ndarray, height: int = 72) -> np.ndarray:
    """Frames at a size to look at: small ones enlarged pixel by pixel to at least ``height``, tall ones shrunk to it."""
    if frames.shape[1] >= height:
        from PIL import Image

        width = round(frames.shape[2] * height / frames.shape[1])
        return np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.BILINEAR)) for f in frames])
    return enlarge(frames, height)


def labelled_rows(rows: list[tuple[str, np.ndarray]]) -> np.ndarray:
    """``(label, strip)`` images stacked, each labelled in a left margin, padded to one width."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=14)
    margin = max(int(font.getlength(label)) for label, _ in rows) + 12
    width = margin + max(strip.shape[1] for _, strip in rows)
    height = sum(strip.shape[0] + 6 for _, strip in rows)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    y = 0
    for label, strip in rows:
        canvas.paste(Image.fromarray(strip), (margin, y))
        draw.text((4, y + strip.shape[0] // 2), label, fill=(0, 0, 0), font=font, anchor="lm")
        y += strip.shape[0] + 6
    return np.asarray(canvas)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f'<td class="num">{value:.4g}</td>' if abs(value) < 1e4 else f'<td class="num">{value:.3e}</td>'
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f'<td class="num">{value}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def _slug(text: str) -> str:
    keep = "".join(ch.lower() if ch.isalnum() else "_" for ch in text)
    return "_".join(filter(None, keep.split("_")))[:60] or "figure"
