"""Video-text sources and clip sampling: every manifest format, bad rows counted with reasons."""

import json

import datasets
import numpy as np
import pytest

from reelm.data.clip_sampling import (
    SKIP_EMPTY_CAPTION, SKIP_MISSING, SKIP_TOO_SHORT, SKIP_UNREADABLE, ClipSpec, SkipLog, SkipRow, load_clips,
)
from reelm.data.sources import FolderSource, SourceError, SyntheticSource, TableSource, open_source
from reelm.data.video_write import write_mp4

SPEC = ClipSpec(num_frames=5, fps=10.0, size=32)


def _moving_clip(num_frames=30, h=48, w=64):
    t = np.arange(num_frames)[:, None, None]
    x = np.arange(w)[None, None, :]
    y = np.arange(h)[None, :, None]
    r = (x * 4 + t * 3) % 256
    g = np.broadcast_to(y * 5, (num_frames, h, w))
    frames = np.stack([np.broadcast_to(r, (num_frames, h, w)), g, np.full((num_frames, h, w), 90)], -1)
    return frames.astype(np.uint8)


@pytest.fixture
def media(tmp_path):
    good = write_mp4(tmp_path / "good.mp4", _moving_clip(), fps=30)
    short = write_mp4(tmp_path / "short.mp4", _moving_clip(num_frames=3), fps=30)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 3])
    rows = [
        {"video": "good.mp4", "caption": "a gradient slides right"},
        {"video": "missing.mp4", "caption": "never there"},
        {"video": "corrupt.mp4", "caption": "cut in half"},
        {"video": "good.mp4", "caption": "   "},
        {"video": "short.mp4", "caption": "too short to clip"},
    ]
    return tmp_path, rows


def _check_rows(source, tmp_path):
    assert len(source) == 5
    log = SkipLog(tmp_path / "errors.jsonl")
    used = []
    for i in range(len(source)):
        row = source.row(i)
        try:
            used.append(load_clips(source, row, SPEC, np.random.default_rng(0)))
        except SkipRow as skip:
            log.record(row, skip)
    assert len(used) == 1 and used[0][0].frames.shape == (5, 32, 32, 3)
    assert log.counts == {SKIP_MISSING: 1, SKIP_UNREADABLE: 1, SKIP_EMPTY_CAPTION: 1, SKIP_TOO_SHORT: 1}
    recorded = [json.loads(line) for line in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert [r["index"] for r in recorded] == [1, 2, 3, 4]
    assert "corrupt.mp4" in recorded[1]["detail"]
    assert "used 1, skipped 4" in log.summary(len(used))


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_manifest_formats(media, fmt):
    tmp_path, rows = media
    manifest = tmp_path / f"manifest.{fmt}"
    if fmt == "jsonl":
        manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        table = datasets.Dataset.from_list(rows)
        (table.to_csv if fmt == "csv" else table.to_parquet)(str(manifest))
    _check_rows(open_source(manifest), tmp_path)


def test_hf_dataset_source(media):
    tmp_path, rows = media
    table = datasets.Dataset.from_list([{**r, "video": str(tmp_path / r["video"])} for r in rows])
    _check_rows(open_source(table), tmp_path)


def test_folder_source_pairs_videos_with_txt_captions(tmp_path):
    write_mp4(tmp_path / "a.mp4", _moving_clip(), fps=30)
    (tmp_path / "a.txt").write_text("a caption\n")
    write_mp4(tmp_path / "b.mp4", _moving_clip(), fps=30)  # no caption: skipped with a reason
    source = open_source(tmp_path)
    assert isinstance(source, FolderSource) and len(source) == 2
    assert source.row(0).caption == "a caption" and source.row(1).caption is None
    with pytest.raises(SkipRow, match=SKIP_EMPTY_CAPTION):
        load_clips(source, source.row(1), SPEC, np.random.default_rng(0))


def test_images_are_one_frame_clips(tmp_path):
    from PIL import Image

    Image.fromarray(_moving_clip(1)[0]).save(tmp_path / "still.png")
    (tmp_path / "still.txt").write_text("a still image")
    source = open_source(tmp_path)
    (clip,) = load_clips(source, source.row(0), SPEC, np.random.default_rng(0))
    assert clip.is_image and clip.frames.shape == (1, 32, 32, 3)


def test_several_clips_per_video_center_and_random(tmp_path):
    write_mp4(tmp_path / "long.mp4", _moving_clip(num_frames=90), fps=30)  # 3 s
    table = datasets.Dataset.from_list([{"video": str(tmp_path / "long.mp4"), "caption": "long"}])
    source = TableSource(table, name="t")
    spec = ClipSpec(num_frames=5, fps=10.0, size=32, clips_per_video=3)
    clips = load_clips(source, source.row(0), spec, np.random.default_rng(0))
    assert [c.start for c in clips] == pytest.approx([0.0, 1.2, 2.5], abs=1e-6)
    rand = ClipSpec(num_frames=5, fps=10.0, size=32, clips_per_video=2, temporal_crop="random")
    a = [c.start for c in load_clips(source, source.row(0), rand, np.random.default_rng(1))]
    b = [c.start for c in load_clips(source, source.row(0), rand, np.random.default_rng(1))]
    assert a == b and all(0 <= s <= 2.5 for s in a)


def test_synthetic_source_and_open_errors(tmp_path):
    source = open_source("synthetic", num_clips=3)
    assert isinstance(source, SyntheticSource) and len(source) == 3
    row = source.row(2)
    assert row.caption and row.attributes["index"] == 2
    with pytest.raises(SourceError, match="not found"):
        open_source(tmp_path / "nope.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"video": "a.mp4"}\n')
    with pytest.raises(SourceError, match="no caption column"):
        open_source(bad)


def test_a_truncated_real_clip_is_unreadable_not_short(real_media, tmp_path):
    cut = tmp_path / "cut.mkv"
    cut.write_bytes((real_media / "milk.mkv").read_bytes()[:40_000])
    table = datasets.Dataset.from_list([{"video": str(cut), "caption": "cut short"}])
    source = TableSource(table, name="t")
    with pytest.raises(SkipRow) as info:
        load_clips(source, source.row(0), ClipSpec(num_frames=9, fps=8.0, size=32), np.random.default_rng(0))
    assert info.value.reason == SKIP_UNREADABLE and "truncated" in info.value.detail
