"""``reelm data audit``: every known defect found at its frame, no clean clip flagged, resumable, shardable,
and its cleaned manifest read by the next stage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reelm.data.synthetic import defects
from reelm.data.synthetic.world import SyntheticWorld, WorldConfig
from reelm.data.video_write import write_mp4
from reelm.eval.audit.audit_config import AuditConfig
from reelm.eval.audit.audit_run import AuditError, audit_dataset
from reelm.eval.audit.scoring import precision_recall, read_jsonl
from reelm.eval.audit.signals import MAX_HASHES, FrameSignals

from conftest import child_env, free_port

FPS = 8.0
WORLD = WorldConfig(num_frames=17, fps=FPS, max_objects=1, textured_backgrounds=False, sizes=("large",),
                    motions=("left", "right", "up", "down"), speeds=("slow",), seed=3)
SPEC = AuditConfig().clip.__class__(num_frames=5, fps=FPS, size=64)  # pieces between cuts are long enough


def _world_clips(count: int, *, skip_black: bool = False):
    world = SyntheticWorld(WORLD)
    index = 0
    while count:
        clip = world.clip(index)
        index += 1
        if skip_black and clip.attributes["background"]["tone"] == "black":
            continue  # a black bar on a black wall shows nothing to find
        count -= 1
        yield clip


@pytest.fixture(scope="module")
def defect_folder(tmp_path_factory) -> tuple[Path, dict]:
    """A manifest of clips the test made: each defect once at a known place, and clean clips."""
    root = tmp_path_factory.mktemp("audit_set")
    (root / "clips").mkdir()
    clips = list(_world_clips(16, skip_black=True))
    rng = np.random.default_rng(0)
    rows, truth = [], {}

    def add(name: str, frames: np.ndarray, caption: str, fps: float = FPS, *, crf: int = 18):
        path = root / "clips" / f"{name}.mp4"
        write_mp4(path, frames, fps, crf=crf)
        rows.append({"video": f"clips/{name}.mp4", "caption": caption})
        return len(rows) - 1

    for i in range(4):
        truth[add(f"clean{i}", clips[i].frames, clips[i].caption)] = "clean"
    frozen = clips[4].frames.copy()
    frozen[6:12] = frozen[6]  # frames 7..11 repeat frame 6
    truth[add("frozen", frozen, clips[4].caption)] = "frozen"
    dark = clips[5].frames.copy()
    dark[:3] = 0
    truth[add("black", dark, clips[5].caption)] = "black"
    truth[add("flicker", defects.flicker(clips[6].frames, 0.5, rng)[0], clips[6].caption)] = "flicker"
    truth[add("blur", defects.blur(clips[7].frames, 0.6, rng)[0], clips[7].caption)] = "blur"
    cut = clips[8].frames.copy()
    cut[8:] = clips[9].frames[8:]  # a hard cut at frame 8 (1.0 s)
    truth[add("cut", cut, clips[8].caption)] = "cut"
    truth[add("letterbox", defects.letterbox(clips[10].frames, 0.5, rng)[0], clips[10].caption)] = "letterbox"
    truth[add("duplicate", clips[0].frames, clips[0].caption)] = "duplicate"
    truth[add("reencoded", clips[1].frames, clips[1].caption, crf=34)] = "reencoded"
    truth[add("low_fps", clips[11].frames[::2], clips[11].caption, fps=FPS / 2)] = "low_fps"
    truth[add("swapped", clips[12].frames, clips[13].caption)] = "swapped"
    truth[add("faded", defects.faded(clips[14].frames, 0.5, rng)[0], clips[14].caption)] = "faded"
    truth[add("pillarbox", defects.pillarbox(clips[15].frames, 0.5, rng)[0], clips[15].caption)] = "pillarbox"
    rows.append({"video": "clips/missing.mp4", "caption": "a red circle moves to the left"})
    truth[len(rows) - 1] = "missing"
    (root / "clips" / "garbage.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    rows.append({"video": "clips/garbage.mp4", "caption": "a red circle moves to the left"})
    truth[len(rows) - 1] = "garbage"
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root, truth


@pytest.fixture(scope="module")
def audited(defect_folder, tmp_path_factory):
    root, truth = defect_folder
    out = tmp_path_factory.mktemp("audit_out")
    summary = audit_dataset(root / "manifest.jsonl", out, AuditConfig(clip=SPEC), progress=False)
    records = {r["index"]: r for r in read_jsonl(out / "audit.jsonl")}
    by_name = {truth[i]: records[i] for i in truth}
    return out, summary, by_name


def _failed(record: dict) -> set[str]:
    return {name for name, r in record["dimensions"].items() if r["verdict"] == "fail"}


def test_every_clean_clip_is_kept(audited, defect_folder):
    out, _, _ = audited
    root, truth = defect_folder
    records = {r["index"]: r for r in read_jsonl(out / "audit.jsonl")}
    for index, name in truth.items():
        if name == "clean":
            assert records[index]["verdict"] == "keep" and not records[index]["flags"], records[index]["dimensions"]


@pytest.mark.parametrize("name, dimension", [
    ("frozen", "frozen"), ("black", "exposure"), ("flicker", "flicker"), ("blur", "blur"), ("cut", "cut"),
    ("letterbox", "bars"), ("duplicate", "duplicate"), ("reencoded", "duplicate"), ("low_fps", "spec"),
    ("swapped", "caption"), ("faded", "exposure"), ("pillarbox", "bars"), ("missing", "decode"),
    ("garbage", "decode")])
def test_each_defect_is_found_by_its_dimension_alone(audited, name, dimension):
    _, _, records = audited
    record = records[name]
    assert _failed(record) == {dimension}, {k: v["reason"] for k, v in record["dimensions"].items()}
    assert record["verdict"] == "drop" and record["reasons"] == [dimension]
    assert record["dimensions"][dimension]["reason"]  # one line a person reads


def test_the_evidence_points_at_the_right_frames(audited):
    _, _, records = audited
    frozen = records["frozen"]["dimensions"]["frozen"]["evidence"]
    assert frozen["frames"] == [7, 8, 9, 10, 11]
    assert frozen["segments"][0]["start_s"] == pytest.approx(6 / FPS)
    assert records["black"]["dimensions"]["exposure"]["evidence"]["frames"] == [0, 1, 2]
    assert records["black"]["dimensions"]["exposure"]["evidence"]["kinds"] == ["black"]
    cuts = records["cut"]["dimensions"]["cut"]["evidence"]["cuts"]
    assert [c["frame"] for c in cuts] == [8] and cuts[0]["time_s"] == pytest.approx(1.0)
    bars = records["letterbox"]["dimensions"]["bars"]["evidence"]
    side = round(64 * (0.04 + 0.08 * 0.5))
    assert (bars["top"], bars["bottom"], bars["left"], bars["right"]) == (side, side, 0, 0)
    pillars = records["pillarbox"]["dimensions"]["bars"]["evidence"]
    assert (pillars["top"], pillars["bottom"], pillars["left"], pillars["right"]) == (0, 0, side, side)
    assert records["faded"]["dimensions"]["exposure"]["evidence"]["kinds"] == ["faded"]
    assert records["faded"]["dimensions"]["exposure"]["evidence"]["frames"] == list(range(17))
    assert records["duplicate"]["dimensions"]["duplicate"]["evidence"]["of"] == 0
    assert records["reencoded"]["dimensions"]["duplicate"]["evidence"]["of"] == 1
    assert "4 fps" in records["low_fps"]["dimensions"]["spec"]["reason"]
    assert "not found" in records["missing"]["dimensions"]["decode"]["reason"]


def test_records_state_the_thresholds_used(audited):
    out, summary, records = audited
    blur = records["blur"]["dimensions"]["blur"]
    assert blur["threshold"] == AuditConfig().blur.max_blur and blur["value"] > blur["threshold"]
    saved = json.loads((out / "audit_config.json").read_text())
    assert saved["config"]["blur"]["max_blur"] == AuditConfig().blur.max_blur
    assert summary["thresholds"]["cut"]["min_score"] == AuditConfig().cut.min_score


def test_summary_counts_and_manifests(audited, defect_folder):
    out, summary, _ = audited
    root, truth = defect_folder
    assert summary["clips"] == len(truth) and summary["kept"] == 4 and summary["dropped"] == len(truth) - 4
    assert sum(summary["drop_reasons"].values()) == len(truth) - 4
    assert summary["drop_reasons"]["decode"] == 2 and summary["drop_reasons"]["duplicate"] == 2
    clean = read_jsonl(out / "clean.jsonl")
    assert [Path(r["video"]).name for r in clean] == [f"clean{i}.mp4" for i in range(4)]
    assert all(Path(r["video"]).is_absolute() and Path(r["video"]).exists() for r in clean)
    split = read_jsonl(out / "split.jsonl")
    pieces = [r for r in split if Path(r["video"]).name == "cut.mp4"]
    assert [(p["start"], p["end"]) for p in pieces] == [(0.0, 1.0), (1.0, 17 / FPS)]


def test_the_cleaned_manifest_feeds_the_next_stage(audited):
    from reelm.data.clip_sampling import load_clips
    from reelm.data.sources import open_source

    out, _, _ = audited
    for name in ("clean.jsonl", "split.jsonl"):
        source = open_source(out / name)
        rng = np.random.default_rng(0)
        clips = [load_clips(source, source.row(i), SPEC, rng) for i in range(len(source))]
        assert all(len(c) == 1 and c[0].frames.shape == (5, 64, 64, 3) for c in clips)


def test_a_manifest_named_by_a_relative_path_gives_a_cleaned_manifest_read_from_anywhere(defect_folder, tmp_path,
                                                                                         monkeypatch):
    from reelm.data.sources import open_source

    root, truth = defect_folder
    monkeypatch.chdir(root.parent)  # "DIR/manifest.jsonl", its videos relative to DIR, the audit run from above it
    out = tmp_path / "audit"
    audit_dataset(Path(root.name) / "manifest.jsonl", out, AuditConfig(clip=SPEC), progress=False)
    monkeypatch.chdir(tmp_path)
    source = open_source(out / "clean.jsonl")
    assert len(source) and all(Path(source.row(i).video).is_file() for i in range(len(source)))


def test_the_cleaned_manifest_trains_a_tokenizer_and_is_evaluated(audited, tmp_path, single_thread_isolated):
    """``reelm tokenizer train`` and ``reelm eval reconstruct`` take the audit's manifest as it is."""
    from reelm.cli import main

    out, _, _ = audited
    manifest = str(out / "clean.jsonl")
    assert main(["tokenizer", "train", "--preset", "tiny", "--data", manifest, "--size", "64", "--num-frames", "5",
                 "--steps", "2", "--batch-size", "2", "--out", str(tmp_path / "tok"), "--no-progress"]) == 0
    assert main(["eval", "reconstruct", "--tokenizer", str(tmp_path / "tok"), "--data", manifest, "--num-frames",
                 "5", "--size", "64", "--out", str(tmp_path / "eval"), "--no-progress"]) == 0
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["clips"] == 4 and summary["skipped"] == 0


def test_report_shows_each_failing_dimension(audited):
    out, summary, _ = audited
    page = (out / "report.html").read_text()
    for title in ("Frozen segments", "Scene cuts inside a clip", "Near-duplicates", "Letterbox and pillarbox bars",
                  "Caption-clip agreement", "Decode problems"):
        assert title in page
    pictures = list((out / "report_files").glob("*.png"))
    assert any(p.name.startswith("hist_blur") for p in pictures)
    assert any(p.name.startswith("cut_") for p in pictures) and any(p.name.startswith("duplicate_") for p in pictures)


def test_resume_scores_only_what_a_kill_left_undone(defect_folder, tmp_path, monkeypatch):
    import reelm.eval.audit.audit_run as run

    root, truth = defect_folder
    cfg = AuditConfig(clip=SPEC)
    fresh = tmp_path / "fresh"
    audit_dataset(root / "manifest.jsonl", fresh, cfg, progress=False)
    killed = tmp_path / "killed"
    audit_dataset(root / "manifest.jsonl", killed, cfg, progress=False)
    part = next((killed / "parts").glob("part-*.jsonl"))
    lines = part.read_text().splitlines(keepends=True)
    part.write_text("".join(lines[:5]) + lines[5][: len(lines[5]) // 2])  # killed while writing the sixth
    for name in ("audit.jsonl", "summary.json"):
        (killed / name).unlink()
    calls = []
    real = run.audit_clip
    monkeypatch.setattr(run, "audit_clip", lambda source, row, *a, **k: calls.append(row.index) or real(source, row, *a, **k))
    summary = audit_dataset(root / "manifest.jsonl", killed, cfg, progress=False)
    assert calls == list(range(5, len(truth)))
    assert summary["resumed"] and summary["clips_per_second"] is None and summary["clip_seconds"] > 0
    assert (killed / "audit.jsonl").read_text() == (fresh / "audit.jsonl").read_text()
    assert (killed / "clean.jsonl").read_text() == (fresh / "clean.jsonl").read_text()


def test_resume_with_other_thresholds_is_refused(defect_folder, tmp_path):
    root, _ = defect_folder
    audit_dataset(root / "manifest.jsonl", tmp_path, AuditConfig(clip=SPEC), progress=False)
    other = AuditConfig(clip=SPEC)
    other.blur.max_blur = 0.3
    with pytest.raises(AuditError, match="other settings"):
        audit_dataset(root / "manifest.jsonl", tmp_path, other, progress=False)


def test_signals_stay_bounded_over_a_long_stream():
    signals = FrameSignals(fps=30.0, bar_level=24.0)
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (36, 64, 3), dtype=np.uint8)
    for t in range(3000):
        signals.add(np.roll(frame, t, axis=1))
    assert len(signals.hashes) <= MAX_HASHES and signals.count == 3000
    assert len(signals.sampled_hashes(5)) == 5


def _pixel_verdicts(frames: np.ndarray) -> dict:
    from reelm.eval.audit.dimensions import pixel_dimensions

    signals = FrameSignals(fps=FPS, bar_level=24.0)
    for frame in frames:
        signals.add(frame)
    return pixel_dimensions(AuditConfig(clip=SPEC), signals)


def test_a_freeze_ending_is_no_cut_and_a_still_shot_after_a_cut_no_freeze():
    clips = list(_world_clips(2, skip_black=True))
    stalled = clips[0].frames.copy()
    stalled[2:13] = stalled[2]  # frozen from frame 2; at frame 13 the object jumps to where it had moved
    verdicts = _pixel_verdicts(stalled)
    assert verdicts["frozen"]["verdict"] == "fail" and verdicts["frozen"]["evidence"]["segments"][0]["frames"] == [2, 12]
    assert verdicts["cut"]["verdict"] == "pass"  # same scene, same colours: the freeze's finding only

    cut_to_still = clips[0].frames.copy()
    cut_to_still[6:] = clips[1].frames[6]  # a cut at frame 6 to a shot that holds still
    verdicts = _pixel_verdicts(cut_to_still)
    assert verdicts["cut"]["evidence"]["frames"] == [6]
    assert verdicts["frozen"]["verdict"] == "pass" and verdicts["frozen"]["evidence"]["still_shots"] == [[6, 16]]

    cut_after_freeze = clips[0].frames.copy()
    cut_after_freeze[2:10] = cut_after_freeze[2]
    cut_after_freeze[10:] = clips[1].frames[10:]  # frozen, then a cut to another scene: both found
    verdicts = _pixel_verdicts(cut_after_freeze)
    assert verdicts["cut"]["evidence"]["frames"] == [10] and verdicts["frozen"]["verdict"] == "fail"


def test_a_still_clip_whose_first_frame_pair_settles_is_still_not_frozen():
    clip = next(_world_clips(1, skip_black=True)).frames
    still = np.repeat(clip[:1], 9, axis=0).astype(np.int16)
    still[0] += 4  # the first P-frame re-quantizing the keyframe: a few levels everywhere at once
    verdicts = _pixel_verdicts(np.clip(still, 0, 255).astype(np.uint8))
    assert verdicts["static"]["verdict"] == "fail" and verdicts["frozen"]["verdict"] == "n/a"
    moving = clip[:9].copy()
    moving[1:] = moving[1]  # a real first move of a moving edge, then a stall: frozen
    assert _pixel_verdicts(moving)["frozen"]["verdict"] == "fail"


def test_defect_set_ground_truth_is_consistent(tmp_path):
    cfg = defects.DefectSetConfig(num_clips=30, share=0.8, seed=2)
    summary = defects.render_defect_set(tmp_path, cfg, WORLD)
    rows = read_jsonl(tmp_path / "manifest.jsonl")
    assert len(rows) == 30 and sum(summary["counts"].values()) == 30
    for row in rows:
        assert (tmp_path / row["video"]).exists()
        for d in row["defects"]:
            assert d["kind"] in defects.DEFECTS and 0.2 <= d["strength"] <= 1.0
            if d["kind"] in ("duplicate", "reencoded_duplicate"):
                assert d["duplicate_of"] < row["index"]
            if d["kind"] == "duplicate":
                assert (tmp_path / row["video"]).read_bytes() == (tmp_path / rows[d["duplicate_of"]]["video"]).read_bytes()
    result = precision_recall([{"index": r["index"], "reasons": [], "dimensions": {}} for r in rows], rows)
    assert all(t["tp"] == 0 for t in result["dimensions"].values())  # an audit that finds nothing recalls nothing


def test_torchrun_splits_the_audit_and_merges_it(defect_folder, tmp_path):
    root, truth = defect_folder
    single = tmp_path / "one"
    audit_dataset(root / "manifest.jsonl", single, AuditConfig(clip=SPEC), progress=False)
    two = tmp_path / "two"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                           free_port(), "-m", "reelm.cli", "data", "audit", str(root / "manifest.jsonl"), "--out", str(two),
                           "--num-frames", "5", "--no-progress"], env=child_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(list((two / "parts").glob("part-*-of-00002.jsonl"))) == 2
    assert (two / "audit.jsonl").read_text() == (single / "audit.jsonl").read_text()


def test_real_media_audits_without_a_crash(real_media, tmp_path):
    summary = audit_dataset(real_media, tmp_path, AuditConfig(), progress=False)
    records = read_jsonl(tmp_path / "audit.jsonl")
    assert summary["clips"] == len(records) >= 1
    long = [r for r in records if r["info"] and r["info"]["seconds"] and r["info"]["seconds"] > 30]
    for record in long:  # the 40-second 360p clip: read at the analysis size, every frame
        assert record["info"]["analysed"][0] <= AuditConfig().analysis_size
        assert record["dimensions"]["decode"]["verdict"] == "pass"


def test_clip_weights_give_the_caption_check(defect_folder, tmp_path):
    """With local CLIP weights the caption check is CLIP's: the recorded value is the mean cosine of the caption
    to the sampled frames, and the verdict follows the threshold."""
    import torch

    from eval_weights import write_clip
    from reelm.eval.clip_score import ClipScorer

    root, _ = defect_folder
    clip_dir = write_clip(tmp_path / "clip")
    one = tmp_path / "one"
    one.mkdir()
    (one / "a.mp4").write_bytes((root / "clips" / "clean0.mp4").read_bytes())
    (one / "a.txt").write_text("a red circle moves to the left")
    cfg = AuditConfig(clip=SPEC)
    audit_dataset(one, tmp_path / "out", cfg, clip_model=clip_dir, progress=False)
    caption = read_jsonl(tmp_path / "out" / "audit.jsonl")[0]["dimensions"]["caption"]
    assert caption["evidence"]["method"] == "clip"
    from reelm.data.video_read import read_video

    frames = read_video(one / "a.mp4")[caption["evidence"]["frames"]]
    scorer = ClipScorer(clip_dir)
    with torch.no_grad():
        expected = float((scorer.image_embeddings(frames) @ scorer.text_embeddings(["a red circle moves to the left"])[0]).mean())
    assert caption["value"] == pytest.approx(expected, abs=1e-4)
    strict = AuditConfig(clip=SPEC)
    strict.caption.min_clip_similarity = expected + 0.01
    audit_dataset(one, tmp_path / "strict", strict, clip_model=clip_dir, progress=False)
    assert read_jsonl(tmp_path / "strict" / "audit.jsonl")[0]["reasons"] == ["caption"]
    assert caption["verdict"] == ("fail" if expected < cfg.caption.min_clip_similarity else "pass")
