"""Reference clips for the distribution metrics (FVD, KVD, FID, KID), and the record of what they were.

A distribution metric compares generated clips with real ones, so the number means only what the
reference is. The reference is the user's own data when given (a folder, a manifest or a
``datasets.Dataset``, read at the model's clip spec as training read it), or the synthetic world's
``val`` clips for a model trained on the synthetic world. A model trained on anything else is
never scored against the synthetic world: :func:`check_reference` refuses in one line before any
sample is generated. Every result records the reference beside its detector: kind, path, clips
used and skipped, and a SHA-256 of the clips' frames.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from reelm.core.errors import ReelmError
from reelm.data.clip_sampling import ClipSpec, SkipRow
from reelm.data.row_reader import RowReader
from reelm.data.sources import FolderSource, Source, TableSource, open_source
from reelm.data.synthetic.world import SyntheticWorld, WorldConfig

REFERENCE_START = 40_000  # world clip indices of the synthetic reference (disjoint from the eval's other uses)


@dataclass(frozen=True, eq=False)
class ReferenceClips:
    clips: list[np.ndarray]  # (T, H, W, 3) uint8 each
    record: dict  # kind, path, count, skipped, content_sha256


def trained_on_synthetic(meta: dict) -> bool:
    """Whether an LM model folder's ``reelm.json`` says its shards came from the synthetic world."""
    data = meta.get("data") or {}
    return "world" in data or str(data.get("source") or "").startswith("synthetic")


def check_reference(meta: dict, reference_data: Any) -> None:
    """Refuse, in one line, to score against the synthetic world a model whose shards were not synthetic."""
    if reference_data is None and not trained_on_synthetic(meta):
        source = (meta.get("data") or {}).get("source")
        said = f"records its data as {source}" if source else "records no synthetic data"
        raise ReelmError(f"the model was not trained on the synthetic world (its reelm.json {said}): FVD / KVD / "
                         "FID / KID against the synthetic world would not mean anything; give --reference-data "
                         "(a folder or manifest of real clips like its training data)")


def synthetic_reference(world: WorldConfig, count: int) -> ReferenceClips:
    """``count`` clips of the world's ``val`` split (indices from :data:`REFERENCE_START`)."""
    from dataclasses import replace

    source = SyntheticWorld(replace(world, split="val"))
    clips = [source.clip(REFERENCE_START + i).frames for i in range(count)]
    return ReferenceClips(clips, _record("synthetic", f"synthetic:val (seed {world.seed})", clips, {}))


def reference_from(data: Any, clip: ClipSpec, count: int, *, seed: int = 0) -> ReferenceClips:
    """Up to ``count`` clips of ``data`` at the clip spec ``clip`` (captions not needed); unusable rows are
    skipped and counted by reason. A one-line error if none can be used."""
    source = open_source(data)
    spec = ClipSpec(num_frames=clip.num_frames, fps=clip.fps, size=clip.size, temporal_crop="center")
    read = RowReader(source, spec, seed, need_caption=False)
    clips, skipped = [], {}
    for index in range(len(source)):
        if len(clips) >= count:
            break
        _, found = read(index)
        if isinstance(found, SkipRow):
            skipped[found.reason] = skipped.get(found.reason, 0) + 1
            continue
        clips += [c.frames for c in found if not c.is_image and len(c.frames) == spec.num_frames]
    clips = clips[:count]
    if not clips:
        reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(skipped.items())) or "no rows"
        raise ReelmError(f"--reference-data {data}: no usable clip of {spec.num_frames} frames at {spec.size} px "
                         f"({reasons})")
    return ReferenceClips(clips, _record(_kind(source), str(data), clips, skipped))


def _kind(source: Source) -> str:
    if isinstance(source, FolderSource):
        return "folder"
    if isinstance(source, TableSource):
        return "manifest" if source.root is not None else "dataset"
    return type(source).__name__


def _record(kind: str, path: str, clips: list[np.ndarray], skipped: dict) -> dict:
    digest = hashlib.sha256()
    for frames in clips:
        digest.update(str(frames.shape).encode())
        digest.update(np.ascontiguousarray(frames).tobytes())
    return {"kind": kind, "path": path, "count": len(clips), "skipped": dict(sorted(skipped.items())),
            "content_sha256": digest.hexdigest()}
