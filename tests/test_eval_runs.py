"""``reelm eval reconstruct`` and ``reelm eval generate`` end to end: scores that match the references,
per-sample results, the protocol, reports with pictures, runs that reproduce, and scale-out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import child_env, free_port, make_model_folder
from reelm.cli import main
from reelm.data.synthetic.world import SyntheticWorld, WorldConfig
from reelm.data.video_read import frames_to_tensor, read_video, tensor_to_frames
from reelm.data.video_write import write_mp4
from reelm.tokenizer.tokenizer_checkpoint import load_tokenizer

skimage_metrics = pytest.importorskip("skimage.metrics")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_model_folder(tmp_path_factory.mktemp("evalmodel"))


def _without_timings(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in ("timings", "seconds", "clips_per_s", "report")}


def test_reconstruct_scores_equal_scikit_image_on_the_same_frames(folder, tmp_path, capsys):
    clip = SyntheticWorld(WorldConfig(height=40, width=48, num_frames=20, seed=2)).clip(0)
    video = write_mp4(tmp_path / "clip.mp4", clip.frames, fps=8)
    out = tmp_path / "eval"
    assert main(["eval", "reconstruct", "--tokenizer", str(folder.parent / "tok"), "--data", str(video), "--out",
                 str(out), "--num-frames", "9", "--size", "32", "--no-progress"]) == 0
    record = json.loads((out / "clips.jsonl").read_text().splitlines()[0])
    original = read_video(video, fps=8, start=record["start"], num_frames=9, size=32, crop=32)  # what it compared
    model = load_tokenizer(folder.parent / "tok")
    with torch.no_grad():
        recon = tensor_to_frames(model(frames_to_tensor(original)[None])[0][0])
    assert record["psnr"] == pytest.approx(skimage_metrics.peak_signal_noise_ratio(original, recon, data_range=255),
                                           abs=1e-3)
    expected_ssim = np.mean([skimage_metrics.structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1)
        for a, b in zip(original, recon)])
    assert record["ssim"] == pytest.approx(expected_ssim, abs=1e-3)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["clips"] == 1 and summary["protocol"]["source"] == str(video)
    assert summary["lpips"]["computed"] is False and summary["rfvd"]["computed"] is False
    assert "reelm eval reconstruct: 1 clips" in capsys.readouterr().out


def test_reconstruct_on_synthetic_clips_reads_attributes_back_and_reproduces(folder, tmp_path):
    args = ["eval", "reconstruct", "--tokenizer", str(folder.parent / "tok"), "--num-clips", "6", "--num-frames",
            "9", "--size", "32", "--max-objects", "1", "--plain-backgrounds", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    a, b = (json.loads((tmp_path / d / "summary.json").read_text()) for d in "ab")
    assert _without_timings(a) == _without_timings(b)
    assert (tmp_path / "a" / "clips.jsonl").read_text() == (tmp_path / "b" / "clips.jsonl").read_text()
    assert a["adherence"]["clips"] == 6 and set(a["adherence"]["attributes"]) >= {"color", "shape", "motion"}
    assert 0 < a["codebook"]["used"] <= a["codebook"]["size"] and a["codebook"]["perplexity"] >= 1
    assert len(a["psnr_by_frame"]) == 9
    records = [json.loads(line) for line in (tmp_path / "a" / "clips.jsonl").read_text().splitlines()]
    assert len(records) == 6 and all("adherence" in r and "psnr" in r for r in records)
    page = (tmp_path / "a" / "report.html").read_text()
    images = [f for f in (tmp_path / "a" / "report_files").iterdir()]
    assert "Worst and best clips" in page and len(images) >= 4
    assert all(f'report_files/{f.name}' in page for f in images)


@pytest.fixture(scope="module")
def generated(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("evalgen") / "one"
    args = ["eval", "generate", "--model", str(folder), "--num-prompts", "3", "--num-samples", "2",
            "--image-to-video", "2", "--continuation", "2", "--captions", "3", "--batch-size", "2", "--no-progress"]
    assert main([*args, "--out", str(out)]) == 0
    return out, args


def test_generate_eval_writes_per_sample_scores_protocol_and_a_report(generated):
    out, _ = generated
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["adherence"]) == {"seen", "held-out"}
    for group in summary["adherence"].values():
        assert group["clips"] == 6 and {"color", "shape", "motion"} <= set(group["attributes"])
        assert group["attributes"]["size"]["total"] == 0  # typed prompts leave size out: not scored
    assert summary["i2v"]["samples"] == 2 and summary["v2v"]["samples"] == 2
    assert summary["v2t"]["clips"] == summary["v2t_held_out"]["clips"] == 3  # captions of each group
    assert summary["distribution"]["fvd"] == {"computed": False,
                                              "reason": "no weights given (--i3d, --inception, --clip)"}
    protocol = summary["protocol"]
    assert protocol["model"]["video_tokenizer"]["fingerprint"] and protocol["reelm_version"]
    assert protocol["settings"]["seed"] == 0 and protocol["settings"]["num_samples"] == 2
    records = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    kinds = [r["kind"] for r in records]
    assert kinds.count("t2v") == 12 and kinds.count("i2v") == 2 and kinds.count("v2v") == 2 and kinds.count("v2t") == 6
    assert sorted(r["group"] for r in records if r["kind"] == "v2t") == ["held-out"] * 3 + ["seen"] * 3
    for record in records:
        if record["kind"] in ("t2v", "i2v", "v2v"):
            assert read_video(out / "samples" / record["file"]).shape[1:] == (32, 32, 3)
        if record["kind"] == "t2v":
            assert "score" in record and "flicker" in record and record["prompt"]
    page = (out / "report.html").read_text()
    for heading in ("Summary", "Prompt adherence", "Image-to-video and continuation", "Video-to-text",
                    "Temporal quality", "Distribution metrics"):
        assert f"<h2>{heading}</h2>" in page
    assert len(list((out / "report_files").glob("*.png"))) >= 6


def test_generate_eval_reproduces(generated, tmp_path):
    out, args = generated
    assert main([*args, "--out", str(tmp_path / "again")]) == 0
    a, b = (json.loads((d / "summary.json").read_text()) for d in (out, tmp_path / "again"))
    assert _without_timings(a) == _without_timings(b)
    assert (out / "samples.jsonl").read_text() == (tmp_path / "again" / "samples.jsonl").read_text()


@pytest.mark.slow
def test_generate_eval_under_torchrun_equals_one_process(generated, tmp_path):
    out, args = generated
    torchrun = str(Path(sys.executable).parent / "torchrun")
    reelm = str(Path(sys.executable).parent / "reelm")
    done = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", free_port(), reelm, *args,
                           "--out", str(tmp_path / "two")], env=child_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = (json.loads((d / "summary.json").read_text()) for d in (out, tmp_path / "two"))
    assert _without_timings(a) == _without_timings(b)
    assert (out / "samples.jsonl").read_text() == (tmp_path / "two" / "samples.jsonl").read_text()


def test_generate_eval_split_across_local_processes_equals_one_process(generated, tmp_path):
    """What the demo runs: the eval in one process a core (reelm.core.distributed.run_local_ranks)."""
    import functools

    from reelm.core.distributed import run_local_ranks
    from reelm.eval.generation_eval import GenerationEvalConfig, evaluate_generation

    out, _ = generated
    folder = json.loads((out / "summary.json").read_text())["protocol"]["model"]["model"]
    cfg = GenerationEvalConfig(num_prompts=3, num_samples=2, image_to_video=2, continuation=2, captions=3,
                               batch_size=2)
    evaluate = functools.partial(evaluate_generation, device="cpu", progress=False)
    summary = run_local_ranks(evaluate, 2, folder, tmp_path / "two", cfg)
    assert summary["report"] == str(tmp_path / "two" / "report.html")  # rank 0's summary comes back
    a, b = (json.loads((d / "summary.json").read_text()) for d in (out, tmp_path / "two"))
    assert _without_timings(a) == _without_timings(b)
    assert (out / "samples.jsonl").read_text() == (tmp_path / "two" / "samples.jsonl").read_text()


def test_local_ranks_join_one_group_and_a_failing_rank_is_one_line():
    from reelm.core.distributed import DistInfo, init_distributed, run_local_ranks
    from reelm.core.errors import ReelmError

    info = run_local_ranks(init_distributed, 2, "cpu")
    assert info == DistInfo(rank=0, world_size=2, local_rank=0, device=torch.device("cpu"))
    with pytest.raises(ReelmError, match=r"^rank \d of 2: ValueError: invalid literal for int\(\) with base 10: 'x'$"):
        run_local_ranks(int, 2, "x")
    assert run_local_ranks(int, 1, "7") == 7  # one process: called here
