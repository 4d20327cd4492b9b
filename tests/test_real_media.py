"""Reading real clips from the REELM_TEST_MEDIA folder (skipped without it)."""

from __future__ import annotations

import numpy as np
import pytest

from reelm.data.video_read import iter_frames, probe, read_video


@pytest.fixture
def clip(real_media, request):
    path = real_media / request.param
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    return path


@pytest.mark.parametrize("clip", ["milk.mkv", "thanks.mkv"], indirect=True)
def test_mkv_without_duration_reads_every_frame(clip):
    frames = read_video(clip)
    assert frames.shape == (51, 480, 640, 3)
    assert frames.dtype == np.uint8
    assert frames.std() > 5  # real picture content, not a blank decode
    info = probe(clip)
    assert (info.width, info.height, info.codec) == (640, 480, "h264")
    assert info.fps == pytest.approx(30.0)


@pytest.mark.parametrize("clip", ["cricket.gif"], indirect=True)
def test_gif_reads_every_frame(clip):
    frames = read_video(clip)
    assert frames.shape == (79, 224, 224, 3)
    assert np.abs(np.diff(frames.astype(np.int16), axis=0)).mean() > 0.5  # the frames differ


@pytest.mark.parametrize("clip", ["milk.mkv"], indirect=True)
def test_resample_to_10_fps_picks_every_third_frame(clip):
    native = read_video(clip)
    resampled = read_video(clip, fps=10)
    assert resampled.shape == (17, 480, 640, 3)
    np.testing.assert_array_equal(resampled, native[::3])


@pytest.mark.parametrize("clip", ["milk.mkv", "cricket.gif"], indirect=True)
def test_resize_and_crop_to_128(clip):
    frames = list(iter_frames(clip, size=128, crop=128, num_frames=8))
    assert len(frames) == 8
    assert all(frame.shape == (128, 128, 3) and frame.dtype == np.uint8 for frame in frames)
    full = read_video(clip, num_frames=1)[0].astype(np.float64)  # (H, W, 3)
    side = min(full.shape[:2])
    top, left = (full.shape[0] - side) // 2, (full.shape[1] - side) // 2
    center = full[top : top + side, left : left + side]  # (side, side, 3)
    assert np.abs(frames[0].mean(axis=(0, 1)) - center.mean(axis=(0, 1))).max() < 2  # same picture, smaller


@pytest.mark.slow
def test_the_real_clips_walkthrough_runs_every_stage_and_says_what_each_score_is_against(real_media, tmp_path,
                                                                                        capsys,
                                                                                        single_thread_isolated):
    import json

    from conftest import load_bench_script

    walkthrough = load_bench_script("real_clips_walkthrough")
    assert walkthrough.main(["--media", str(real_media), "--work", str(tmp_path / "walk"), "--tokenizer-steps", "2",
                             "--lm-steps", "2", "--finetune-steps", "2", "--clips-per-video", "2",
                             "--lm-set", "compile=false"]) == 0
    record = json.loads(capsys.readouterr().out)
    stages = record["stages"]
    assert list(stages) == ["tokenizer_train", "tokenizer_eval_heldout", "data_tokenize", "lm_pretrain", "lm_finetune",
                            "lm_lora", "export", "export_lora_merged", "generate", "generate_again_one_by_one",
                            "eval_generate"]
    held = stages["tokenizer_eval_heldout"]["result"]
    assert held["clips"] == 8 and held["psnr"]["mean"] > 0
    assert stages["data_tokenize"]["result"]["clips"] >= 8 and stages["lm_lora"]["result"]["lora"] == 8
    assert stages["lm_lora"]["result"]["checkpoint_mb"] < stages["lm_finetune"]["result"]["checkpoint_mb"]
    assert all(stages["generate"]["result"]["same_frames_when_made_again"])
    fvd = stages["eval_generate"]["result"]["distribution"]["fvd"]
    assert fvd["computed"] is False and "no weights" in fvd["reason"]  # never silently against the synthetic world
    assert json.loads((tmp_path / "walk" / "train.jsonl").read_text().splitlines()[0])["video"].startswith("/")
