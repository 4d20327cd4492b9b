"""The LM training benchmark runs end to end and reports self-consistent figures (tiny settings; not a timing test)."""

import json
import os

import pytest
import torch

from conftest import load_bench_script

bench_lm = load_bench_script("bench_lm")


@pytest.fixture(scope="module", autouse=True)
def _isolated(single_thread_isolated):
    """Every test here (and its module fixtures) on one thread, with the environment restored."""
    yield


def test_bench_prints_both_paths_against_a_measured_peak(capsys):
    bench_lm.main(["--presets", "tiny", "--block-size", "64", "--micro-batch", "2", "--vocab-size", "512",
                   "--steps", "2", "--warmup", "1", "--peak-size", "256", "--peak-repeats", "3"])
    report = json.loads(capsys.readouterr().out)
    tiny = report["presets"]["tiny"]
    assert report["peak_fp32_flops"] > 0 and tiny["vocab_size"] == 512
    assert report["settings"]["malloc"].startswith(("caching", "glibc defaults"))
    for path in ("deepspeed", "bare"):
        figures = tiny[path]
        assert len(figures["step_s_all"]) == 2 and figures["tokens_per_s"] > 0
        assert len(figures["page_faults_per_step"]) == 3  # warm-up step included
        assert figures["achieved_flops"] == pytest.approx(tiny["flops_per_token"] * figures["tokens_per_s"], rel=1e-3)
        assert figures["fraction_of_peak"] == pytest.approx(figures["achieved_flops"] / report["peak_fp32_flops"],
                                                            rel=1e-3)
    assert tiny["deepspeed_over_bare"] == pytest.approx(
        tiny["deepspeed"]["tokens_per_s"] / tiny["bare"]["tokens_per_s"], rel=1e-3, abs=5e-5)


def test_bench_compares_compiled_and_eager_paths_in_one_run(capsys):
    bench_lm.main(["--presets", "tiny", "--block-size", "32", "--micro-batch", "1", "--vocab-size", "512",
                   "--steps", "1", "--warmup", "1", "--peak-size", "128", "--peak-repeats", "2", "--compile", "both"])
    tiny = json.loads(capsys.readouterr().out)["presets"]["tiny"]
    paths = ("deepspeed", "bare", "deepspeed_compiled", "bare_compiled")
    assert all(tiny[path]["tokens_per_s"] > 0 and len(tiny[path]["step_s_all"]) == 1 for path in paths)
    assert tiny["compiled_over_eager"]["bare"] == pytest.approx(
        tiny["bare_compiled"]["tokens_per_s"] / tiny["bare"]["tokens_per_s"], rel=1e-3, abs=5e-5)
    assert tiny["deepspeed_compiled_over_bare_compiled"] == pytest.approx(
        tiny["deepspeed_compiled"]["tokens_per_s"] / tiny["bare_compiled"]["tokens_per_s"], rel=1e-3)


def test_bench_compares_bf16_and_fp32_paths_each_against_its_own_peak(capsys):
    bench_lm.main(["--presets", "tiny", "--block-size", "32", "--micro-batch", "1", "--vocab-size", "512",
                   "--steps", "1", "--warmup", "1", "--peak-size", "128", "--peak-repeats", "2", "--compile", "off",
                   "--precision", "both"])
    report = json.loads(capsys.readouterr().out)
    tiny = report["presets"]["tiny"]
    assert report["peak_bf16_flops"] > 0 and report["settings"]["precision"] == "both"
    for path, peak in (("deepspeed", "peak_fp32_flops"), ("deepspeed_bf16", "peak_bf16_flops"),
                       ("bare_bf16", "peak_bf16_flops")):
        assert tiny[path]["fraction_of_peak"] == pytest.approx(tiny[path]["achieved_flops"] / report[peak], rel=1e-3, abs=5e-5)
    assert tiny["bf16_over_fp32"]["bare"] == pytest.approx(
        tiny["bare_bf16"]["tokens_per_s"] / tiny["bare"]["tokens_per_s"], rel=1e-3, abs=5e-5)


def test_interleaving_reverses_the_order_and_times_only_the_steps_after_warm_up():
    calls = []
    measured = bench_lm.time_interleaved({"a": lambda b: calls.append(("a", b)), "b": lambda b: calls.append(("b", b))},
                                         batches=[0, 1, 2], warmup=1)
    assert calls == [("a", 0), ("b", 0), ("b", 1), ("a", 1), ("a", 2), ("b", 2)]
    for name in ("a", "b"):
        timings, faults = measured[name]
        assert len(timings) == 2 and len(faults) == 3


def test_bench_feeds_shards_packed_and_split_under_both_attentions(capsys, tmp_path):
    from test_lm_train import make_shards

    make_shards(tmp_path / "shards", num_clips=24)
    bench_lm.main(["--presets", "tiny", "--data", str(tmp_path / "shards"), "--video-positions", "--block-size", "128",
                   "--micro-batch", "2", "--steps", "1", "--warmup", "1", "--peak-size", "128", "--peak-repeats", "2",
                   "--compile", "off", "--precision", "bf16", "--split", "both", "--attention", "both"])
    report = json.loads(capsys.readouterr().out)
    tiny = report["presets"]["tiny"]
    assert report["settings"]["data"].endswith("shards") and report["settings"]["video_positions"]
    paths = [f"{p}_bf16{v}" for p in ("deepspeed", "bare") for v in ("", "_split", "_trainattn", "_split_trainattn")]
    assert all(tiny[path]["tokens_per_s"] > 0 for path in paths)
    assert tiny["split_trainattn_over_packed_sdpa_bf16"]["bare"] == pytest.approx(
        tiny["bare_bf16_split_trainattn"]["tokens_per_s"] / tiny["bare_bf16"]["tokens_per_s"], rel=1e-3)
    # split rows are fewer tokens than the blocks (the padding tails dropped): fewer model FLOPs a step
    packed_flops = tiny["bare_bf16"]["achieved_flops"] * tiny["bare_bf16"]["step_s_median"]
    split_flops = tiny["bare_bf16_split"]["achieved_flops"] * tiny["bare_bf16_split"]["step_s_median"]
    assert split_flops < packed_flops
    assert tiny["bare_bf16_split"]["fraction_of_peak"] == pytest.approx(
        tiny["bare_bf16_split"]["achieved_flops"] / report["peak_bf16_flops"], rel=1e-3)
