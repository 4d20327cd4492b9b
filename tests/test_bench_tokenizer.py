"""The tokenizer benchmark's own side runs end to end (tiny settings, no peer venv; not a timing test)."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from conftest import load_bench_script

bench_tokenizer = load_bench_script("bench_tokenizer")
from reelm.data.video_read import frames_to_tensor


def test_clip_pool_cycles_in_order_and_converts_like_frames_to_tensor():
    clips = np.random.default_rng(0).integers(0, 256, (3, 5, 8, 8, 3), dtype=np.uint8)
    pool = bench_tokenizer.ClipPool(clips, batch=2)
    first, second = pool.next_batch(), pool.next_batch()
    assert first.shape == (2, 3, 5, 8, 8)
    torch.testing.assert_close(first, frames_to_tensor(clips[[0, 1]]), rtol=0, atol=0)
    torch.testing.assert_close(second, frames_to_tensor(clips[[2, 0]]), rtol=0, atol=0)


class FakePeer(nn.Module):
    """Parameters grow with init_dim and max_dim, like magvit2-pytorch's VideoTokenizer."""

    def __init__(self, *, init_dim, max_dim, **_):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(init_dim * 1000 + max_dim * max_dim))


def test_peer_widths_are_the_cheapest_within_tolerance():
    init_dim, max_dim, params = bench_tokenizer.pick_peer_widths(FakePeer, 100_000, 1024, 64)
    assert params == 8 * 1000 + max_dim * max_dim and abs(params / 100_000 - 1) <= bench_tokenizer.PARAM_TOLERANCE
    assert init_dim == 8 and max_dim % 8 == 0


@pytest.mark.slow
def test_own_side_and_memory_report(capsys):
    bench_tokenizer.main(["--skip-peer", "--budget-seconds", "1", "--warmup-steps", "0", "--train-clips", "4",
                          "--val-clips", "2", "--encode-repeats", "1", "--memory-size", "64", "--memory-fps", "8",
                          "--short-seconds", "1", "--long-seconds", "3"])
    report = json.loads(capsys.readouterr().out)
    ours = report["reelm"]
    assert report["preset"] == "tiny" and "peer" not in report
    assert ours["train_steps_per_s"] > 0 and ours["encode_clips_per_s"] > 0 and ours["codebook_size"] == 1024
    assert ours["compression"] == {"space": 8, "time": 4} and len(ours["quality"]["psnr_per_clip"]) == 2
    memory = report["memory"]
    assert memory["1s"]["frames"] == 5 and memory["3s"]["frames"] == 21
    assert memory["long_over_short"] == pytest.approx(memory["3s"]["peak_rss_mib"] / memory["1s"]["peak_rss_mib"],
                                                      rel=1e-3)


def test_comparison_is_consistent():
    ours = {"parameters": 100, "train_steps_per_s": 4.0, "encode_clips_per_s": 10.0,
            "quality": {"psnr": 25.0, "ssim": 0.8}}
    peer = {"parameters": 105, "train_steps_per_s": 1.0, "encode_clips_per_s": 4.0,
            "quality": {"psnr": 24.0, "ssim": 0.7}}
    figures = bench_tokenizer.compare(ours, peer)
    assert figures["train_speedup"] == 4.0 and figures["encode_speedup"] == 2.5 and figures["target_met"]
    assert not bench_tokenizer.compare(ours, {**peer, "quality": {"psnr": 26.0, "ssim": 0.9}})["target_met"]


def test_the_data_benchmark_times_every_side_on_a_folder_of_videos(tmp_path, capsys):
    from reelm.data.synthetic.world import SyntheticWorld, WorldConfig
    from reelm.data.video_write import write_mp4

    bench = load_bench_script("bench_tokenizer_data")
    world = SyntheticWorld(WorldConfig(height=40, width=48, num_frames=12, seed=2))
    for i in range(3):
        write_mp4(tmp_path / f"v{i}.mp4", world.clip(i).frames, fps=8)
    assert bench.main(["--data", str(tmp_path), "--size", "32", "--num-frames", "5", "--batch-size", "2",
                       "--blocks", "1", "--block-steps", "3", "--skip", "1", "--threads", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["seconds_per_step"]) == {"decoded", "workers", "in_process"}
    assert all(v > 0 for v in result["seconds_per_step"].values()) and result["steps_timed_per_side"] == 2
    assert set(result["ratio_vs_decoded"]) == {"workers", "in_process"} and result["videos"] == 3
    assert bench.main(["--data", str(tmp_path / "missing")]) == 2
