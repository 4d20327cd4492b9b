"""Video-text sources: where captioned clips come from, as rows with random access.

Every source — a JSONL / CSV / Parquet manifest, a folder of videos (or images) with
same-name ``.txt`` captions, any Hugging Face ``datasets.Dataset`` with a video-path and a
caption column, or the synthetic world (the default) — is a sequence of :class:`SourceRow`
addressed by a stable index, so a job can be split across processes by index
(``index % num_shards == shard_index``) and resumed without re-reading what it finished.
Rows are not validated here, except that a manifest's paths must stay inside its folder (the
dataset root) unless allowed; :mod:`reelm.data.clip_sampling` turns a row into clips or a skip
reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from reelm.core.errors import ReelmError

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".gif", ".m4v", ".mpg", ".mpeg", ".ts")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MANIFEST_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
VIDEO_COLUMNS = ("video", "video_path", "path", "file", "image")
CAPTION_COLUMNS = ("caption", "text", "description")
SYNTHETIC = "synthetic"
CAPTION_BATCH = 4096  # manifest rows read at a time when streaming captions


@dataclass(kw_only=True)
class SourceOptions:
    """How a manifest or dataset is read, the same wherever data is read (``--video-column``,
    ``--caption-column``, ``--confine-to-root``)."""

    video_column: str | None = None  # None: the first of VIDEO_COLUMNS the table has
    caption_column: str | None = None  # None: the first of CAPTION_COLUMNS the table has
    confine_to_root: bool = False  # skip manifest rows whose video lies outside the manifest's folder

    def kwargs(self) -> dict:
        """These options as :func:`open_source` keywords."""
        return {"video_column": self.video_column, "caption_column": self.caption_column,
                "confine_to_root": self.confine_to_root}


class SourceError(ReelmError):
    """A source that cannot be opened at all (as opposed to a bad row, which is skipped)."""


@dataclass(frozen=True)
class SourceRow:
    index: int
    video: str  # an absolute path, or "synthetic:<split>:<index>"
    caption: str | None
    start: float | None = None  # seconds
    end: float | None = None
    attributes: dict | None = None  # ground truth, when the source knows it
    problem: str | None = None  # why the source refuses the row before reading it (a path outside the root)

    @property
    def is_image(self) -> bool:
        return self.video.lower().endswith(IMAGE_SUFFIXES)


class Source:
    """A sequence of rows; subclasses implement ``__len__`` and ``row``."""

    name: str = "source"

    def __len__(self) -> int:
        raise NotImplementedError

    def row(self, index: int) -> SourceRow:
        raise NotImplementedError

    def captions(self) -> Iterator[str]:
        """Every non-empty caption, streamed (a manifest's may not fit in memory at once)."""
        return (c for c in (self.row(i).caption for i in range(len(self))) if c)


class TableSource(Source):
    """Rows of a table (a ``datasets.Dataset``) with a video column and a caption column."""

    def __init__(self, table, *, name: str, root: Path | None = None,
                 video_column: str | None = None, caption_column: str | None = None,
                 confine_to_root: bool = False):
        self.table = table
        self.name = name
        self.root = root
        self.confine_to_root = confine_to_root
        columns = list(table.column_names)
        self.video_column = _pick_column(columns, video_column, VIDEO_COLUMNS, "video", name)
        self.caption_column = _pick_column(columns, caption_column, CAPTION_COLUMNS, "caption", name)
        self.has_times = "start" in columns or "end" in columns

    def __len__(self) -> int:
        return len(self.table)

    def row(self, index: int) -> SourceRow:
        record = self.table[int(index)]
        video = str(record[self.video_column] or "")
        problem = None
        if video and self.root is not None:
            target = Path(video) if Path(video).is_absolute() else self.root / video
            if self.confine_to_root and not is_inside(target, self.root):
                problem = f"{video}: outside the dataset root {self.root} (--confine-to-root; drop it to read the path)"
            video = str(target)
        return SourceRow(
            index=int(index),
            video=video,
            caption=_text(record.get(self.caption_column)),
            start=_seconds(record.get("start")),
            end=_seconds(record.get("end")),
            attributes=record.get("attributes") if isinstance(record.get("attributes"), dict) else None,
            problem=problem,
        )

    def captions(self) -> Iterator[str]:
        for batch in self.table.select_columns([self.caption_column]).iter(batch_size=CAPTION_BATCH):
            yield from (c for c in (_text(v) for v in batch[self.caption_column]) if c)


class FolderSource(Source):
    """Videos and images in a folder (recursively), each captioned by a same-name ``.txt``; or the given files."""

    def __init__(self, folder: Path, files: list[Path] | None = None):
        self.name = str(files[0]) if files and len(files) == 1 else str(folder)
        suffixes = VIDEO_SUFFIXES + IMAGE_SUFFIXES
        # Every entry named like media, files or not: a folder named x.mp4 or a broken link is a row that is
        # then skipped with its reason, never dropped unseen.
        self.files = files if files is not None else \
            sorted(p for p in folder.rglob("*") if p.suffix.lower() in suffixes)

    def __len__(self) -> int:
        return len(self.files)

    def row(self, index: int) -> SourceRow:
        path = self.files[index]
        caption_file = path.with_suffix(".txt")
        caption = caption_file.read_text(errors="replace") if caption_file.is_file() else None
        return SourceRow(index=int(index), video=str(path), caption=_text(caption))


@dataclass(frozen=True)
class StoryRows:
    """Training stories (:func:`reelm.data.synthetic.stories.story_row`) after a synthetic source's clips: ``count``
    of them, each changing at ``change_frame``, the first pixel frame after a continuation's
    ``context_latent_frames`` (:mod:`reelm.data.token_layout`, "Stories")."""

    count: int
    change_frame: int
    context_latent_frames: int
    anchor_gaps: tuple[int, ...] = ()  # with gaps, each row draws one of 0 (none) and these: an anchored row
    # (:func:`reelm.data.synthetic.stories.story_row`'s ``anchor_gap``), what a story window sees with an anchor

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 0:
            raise SourceError(f"the number of story clips must be a non-negative integer, got {self.count!r}")
        if any(isinstance(g, bool) or not isinstance(g, int) or g < 1 for g in self.anchor_gaps):
            raise SourceError(f"story anchor gaps must be positive numbers of frames, got {list(self.anchor_gaps)}")

    def anchor_gap(self, world_index: int, seed: int) -> int:
        """The anchor gap of the story at ``world_index``: 0 or one of ``anchor_gaps``, drawn per row."""
        if not self.anchor_gaps:
            return 0
        import numpy as np

        rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(world_index), 9]))
        choices = (0, *self.anchor_gaps)
        return int(choices[int(rng.integers(len(choices)))])


class SyntheticSource(Source):
    """Clips ``start .. start + num_clips - 1`` of a synthetic world split (rendered on demand); with ``stories``,
    that many training stories follow them (rows ``num_clips`` on, world indices ``start + row``): their
    ``attributes`` are the first segment's, each segment's (and where it changes) under ``attributes["story"]``.
    The clips' rows are the same with or without stories."""

    def __init__(self, num_clips: int, world_cfg=None, start: int = 0, stories: StoryRows | None = None):
        from reelm.data.synthetic.world import SyntheticWorld, WorldConfig

        self.world = SyntheticWorld(world_cfg or WorldConfig())
        self.num_clips, self.start = int(num_clips), int(start)
        self.stories = stories if stories and stories.count > 0 else None
        if self.stories and self.world.cfg.max_objects != 1:
            raise SourceError(f"training stories follow one object: the world's max_objects must be 1 "
                              f"(--max-objects 1), got {self.world.cfg.max_objects}")
        self.name = f"{SYNTHETIC}:{self.world.cfg.split}"

    def __len__(self) -> int:
        return self.num_clips + (self.stories.count if self.stories else 0)

    def world_index(self, index: int) -> int:
        return self.start + int(index)

    def is_story(self, index: int) -> bool:
        return int(index) >= self.num_clips

    def row(self, index: int) -> SourceRow:
        if self.is_story(index):
            clip, caption = self._story(index)
            return SourceRow(index=int(index), video=f"{self.name}:story:{self.world_index(index)}", caption=caption,
                             attributes={**clip.attributes, "num_frames": self.world.cfg.num_frames,
                                         "story": story_record(clip, self.stories)})
        attributes = self.world.attributes(self.world_index(index))
        return SourceRow(
            index=int(index),
            video=f"{self.name}:{self.world_index(index)}",
            caption=self.world.caption(self.world_index(index), attributes),
            attributes=attributes,
        )

    def frames(self, index: int):
        """Row ``index``'s frames, rendered."""
        if self.is_story(index):
            return self._story(index)[0].frames
        return self.world.clip(self.world_index(index)).frames

    def _story(self, index: int):
        from reelm.data.synthetic.stories import story_row

        at = self.world_index(index)
        return story_row(self.world.cfg, at, self.stories.change_frame,
                         anchor_gap=self.stories.anchor_gap(at, self.world.cfg.seed))


def story_record(clip, stories: StoryRows) -> dict:
    """What a training story's row records: where it changes (in pixel and latent frames), its anchor gap and each
    segment's prompt, sentence and objects."""
    return {"change_frame": int(stories.change_frame), "context_latent_frames": int(stories.context_latent_frames),
            "anchor_gap": int(clip.anchor_gap),
            "segments": [{key: s[key] for key in ("start", "end", "prompt", "sentence", "change", "attributes")}
                         for s in clip.segments]}


def open_source(spec: Any, *, num_clips: int | None = None, world_cfg=None, start: int = 0,
                stories: StoryRows | None = None, video_column: str | None = None, caption_column: str | None = None,
                confine_to_root: bool = False) -> Source:
    """A source from ``"synthetic"`` (``world_cfg``, clips ``start`` on, then ``stories``), a manifest path, a
    folder path, a single video or image file, or a ``datasets.Dataset``.

    A manifest's paths are absolute or relative to its folder (the dataset root), and are read
    wherever they lead. With ``confine_to_root`` a path that leads outside the root
    (``../../etc/passwd``, an absolute path elsewhere) gives a row that is skipped with that reason.
    """
    import datasets

    if isinstance(spec, Source):
        return spec
    if isinstance(spec, datasets.Dataset):
        return TableSource(spec, name="dataset", video_column=video_column, caption_column=caption_column)
    if spec is None or str(spec) == SYNTHETIC:
        if not num_clips:
            raise SourceError("the synthetic source needs a number of clips (--num-clips N)")
        return SyntheticSource(num_clips, world_cfg, start, stories)
    path = Path(spec)
    if not path.exists():
        raise SourceError(f"{path}: not found")
    if path.is_dir():
        return FolderSource(path)
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES + IMAGE_SUFFIXES:
        return FolderSource(path.parent, files=[path])
    if suffix not in MANIFEST_SUFFIXES:
        raise SourceError(f"{path}: not a manifest (expected one of {', '.join(MANIFEST_SUFFIXES)}) or a folder")
    loader = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}[suffix]
    try:
        table = datasets.load_dataset(loader, data_files=str(path), split="train")
    except Exception as exc:  # datasets raises many types for a malformed file
        raise SourceError(f"{path}: cannot read manifest ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None
    return TableSource(table, name=str(path), root=path.parent, video_column=video_column,
                       caption_column=caption_column, confine_to_root=confine_to_root)


def is_inside(path: Path, root: Path) -> bool:
    """Whether ``path`` lies under ``root`` once ``..`` and ``.`` are resolved (links inside the root are trusted)."""
    target, base = os.path.normpath(os.path.abspath(path)), os.path.normpath(os.path.abspath(root))
    return target == base or target.startswith(base.rstrip(os.sep) + os.sep)


def _pick_column(columns: list[str], chosen: str | None, candidates: tuple[str, ...], what: str, name: str) -> str:
    if chosen is not None:
        if chosen not in columns:
            raise SourceError(f"{name}: no column {chosen!r} (columns: {columns})")
        return chosen
    for candidate in candidates:
        if candidate in columns:
            return candidate
    raise SourceError(f"{name}: no {what} column (looked for {list(candidates)}; columns: {columns})")


def _text(value) -> str | None:
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None


def _seconds(value) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")  # reported by the clip loader as a bad time, not silently ignored
