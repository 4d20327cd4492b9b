"""Every case of the bad-media corpus through every entry point that takes media.

Each entry point either uses an awkward-but-valid file or refuses a bad one with one line
naming the file and the reason, leaving nothing behind; batch jobs finish and record every
file they skip. A few cases also go through the real ``reelm`` command in a subprocess, to
show no traceback reaches the user and the command ends in bounded time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bad_media import AWKWARD, CASES, HUGE, VFR_PTS_MS
from entry_points import BATCH, PER_FILE, expected

from reelm.data import video_read
from reelm.data.video_read import read_video

REASONS = (video_read.NOT_FOUND, video_read.NOT_MEDIA, video_read.NO_VIDEO_STREAM, video_read.CORRUPT,
           video_read.NO_FRAMES, video_read.UNREADABLE)


@pytest.fixture(scope="module", autouse=True)
def _one_thread(single_thread_isolated):
    yield


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("entry", list(PER_FILE))
def test_each_entry_point_uses_or_refuses_each_case_in_one_line(entry, case, bad_media, media_env):
    path = bad_media[case]
    outcome = PER_FILE[entry](path, media_env)
    want = expected(entry, case)
    assert outcome.kind == want, f"{entry} on {case}: {outcome.kind}: {outcome.message}"
    if want == "refused":
        assert outcome.error_lines == 1, outcome.message
        assert str(path) in outcome.message and any(reason in outcome.message for reason in REASONS), outcome.message
        if entry == "video reader":
            assert CASES[case].expect in outcome.message
        assert outcome.leftovers == [], f"a refused {entry} left {outcome.leftovers}"


@pytest.fixture(scope="module")
def batch_outcomes(bad_media, media_env):
    return {entry: run(bad_media, media_env) for entry, run in BATCH.items() if entry != "eval reconstruct (manifest)"}


@pytest.mark.parametrize("entry", [e for e in BATCH if e != "eval reconstruct (manifest)"])
def test_batch_jobs_finish_use_the_awkward_files_and_record_every_skipped_one(entry, batch_outcomes):
    outcomes = batch_outcomes[entry]
    wrong = {case: (o.kind, o.message) for case, o in outcomes.items() if o.kind not in expected(entry, case).split(" or ")}
    assert not wrong, wrong
    for case, outcome in outcomes.items():
        if outcome.kind == "skipped":
            assert outcome.message.split(":")[0] in ("unreadable video", "missing file"), outcome.message


def test_eval_reconstruct_over_the_corpus(bad_media, media_env):
    pytest.importorskip("reelm.eval.adherence", reason="reelm eval reconstruct needs reelm.eval.adherence")
    entry = "eval reconstruct (manifest)"
    outcomes = BATCH[entry](bad_media, media_env)
    wrong = {case: (o.kind, o.message) for case, o in outcomes.items() if o.kind != expected(entry, case)}
    assert not wrong, wrong


def test_one_frame_videos_are_used_as_images(batch_outcomes, media_env):
    from reelm.data.shards import load_shards

    shards = load_shards(media_env.root / "out" / "shards").dataset
    by_source = {os.path.basename(row["source"]): row for row in shards}
    assert by_source["one_frame.mp4"]["is_image"] and by_source["one_frame.mp4"]["grid"][0] == 1
    assert not by_source["vfr.mp4"]["is_image"]


def test_awkward_files_read_as_a_player_shows_them(bad_media):
    rotated = read_video(bad_media["rotated"])  # stored 48 wide x 32 high, displayed turned 90 degrees
    assert rotated.shape == (9, 48, 32, 3)
    assert rotated[:, -8:, :8].min() > 200 and rotated[:, :-8].max() < 60  # the white corner now bottom left
    from bad_media import _gradient

    for case in ("ten_bit", "alpha", "unicode_name"):
        frames = read_video(bad_media[case])
        assert np.abs(frames.astype(int) - _gradient(9, 48, 64)).mean() < 6, case
    assert read_video(bad_media["odd_33x17"]).shape == (9, 17, 33, 3)
    assert read_video(bad_media["tiny_1x1"]).shape == (9, 1, 1, 3)
    vfr = read_video(bad_media["variable_frame_rate"], fps=10)  # irregular frames, resampled by their timestamps
    source = _gradient(len(VFR_PTS_MS), 48, 64).astype(int)
    shown = [int(np.abs(source - frame.astype(int)).mean(axis=(1, 2, 3)).argmin()) for frame in vfr]
    assert shown[:17] == [max(j for j, t in enumerate(VFR_PTS_MS) if t <= 100 * k) for k in range(17)]
    huge = read_video(bad_media["huge_resolution"], size=64)
    assert huge.shape[1:] == (64, round(64 * HUGE[1] / HUGE[0]), 3)


def test_native_size_frames_outside_the_tokenizers_range_are_resized_and_said(bad_media, media_env):
    from entry_points import tokenizer_encode

    small = tokenizer_encode(bad_media["tiny_1x1"], media_env)
    assert small.kind == "used" and "8x8 (resized: shorter side 8 px" in small.message
    large = tokenizer_encode(bad_media["huge_resolution"], media_env)
    assert large.kind == "used" and "(resized: shorter side" in large.message


@pytest.mark.parametrize("case, command", [
    ("corrupt_middle", "tokenizer encode"),
    ("truncated_mkv", "generate --video"),
    ("random_bytes", "caption"),
])
def test_the_reelm_command_prints_one_line_and_no_traceback(case, command, bad_media, media_env):
    path = str(bad_media[case])
    out = media_env.root / "out" / "subprocess"
    out.mkdir(parents=True, exist_ok=True)
    argv = {
        "tokenizer encode": ["tokenizer", "encode", path, "--tokenizer", str(media_env.tokenizer), "-o",
                             str(out / "c.npz")],
        "generate --video": ["generate", "--video", path, "--model", str(media_env.model), "-o", str(out / "g.mp4")],
        "caption": ["caption", path, "--model", str(media_env.model)],
    }[command]
    done = subprocess.run([sys.executable, "-m", "reelm.cli", *argv, "--no-progress"], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("reelm: error: ") and path in lines[0], done.stderr
    assert "Traceback" not in done.stderr and list(out.iterdir()) == []


def test_the_corpus_covers_the_issue(bad_media):
    """Every case the issue lists is made here (the installed FFmpeg can make them all)."""
    assert set(bad_media) == set(CASES)
    assert {"tiny_1x1", "thin_16x512", "odd_33x17", "one_frame", "variable_frame_rate", "rotated", "ten_bit",
            "alpha", "unicode_name", "huge_resolution"} == set(AWKWARD)
    info = {case: video_read.probe(bad_media[case]) for case in ("ten_bit", "alpha", "huge_resolution")}
    assert info["huge_resolution"].width == HUGE[1] and info["alpha"].codec == "png"
    import av

    with av.open(str(bad_media["ten_bit"])) as container:
        assert container.streams.video[0].codec_context.pix_fmt == "yuv420p10le"
    with av.open(str(bad_media["alpha"])) as container:
        assert container.streams.video[0].codec_context.pix_fmt == "rgba"
    assert json.dumps(str(bad_media["unicode_name"]), ensure_ascii=False).count("日本語") == 1


def test_an_unforeseen_error_on_one_file_is_recorded_and_the_job_goes_on(bad_media, media_env, tmp_path, monkeypatch):
    from bad_media import write_manifest
    from entry_points import run_cli

    original = video_read.read_video

    def read_video_with_a_bug(path, **kwargs):
        if "odd_33x17" in str(path):
            raise RuntimeError("a decoder bug")
        return original(path, **kwargs)

    monkeypatch.setattr(video_read, "read_video", read_video_with_a_bug)
    cases = {name: bad_media[name] for name in ("odd_33x17", "ten_bit", "zero_byte")}
    manifest = write_manifest(cases, tmp_path)
    outcome = run_cli(["data", "tokenize", "--video-tokenizer", str(media_env.tokenizer), "--data", str(manifest),
                       "--out", str(tmp_path / "shards"), "--num-frames", "5", "--size", "32", "--text-vocab-size",
                       "300", "--no-progress"])
    assert outcome.kind == "used" and "used 1, skipped 2" in outcome.message and "unexpected error: 1" in outcome.message
    errors = {json.loads(line)["reason"]: json.loads(line) for line in
              (tmp_path / "shards" / "errors.jsonl").read_text().splitlines()}
    assert "RuntimeError: a decoder bug" in errors["unexpected error"]["detail"]
