"""The adherence measurement script runs end to end on a few clips (not a timing test)."""

import numpy as np

from conftest import load_bench_script

bench_adherence = load_bench_script("bench_adherence")


def test_measure_reports_accuracy_per_attribute(tmp_path):
    result = bench_adherence.measure("64x9-plain-1", "h264", clips=3, seed=0, failures=2, folder=tmp_path)
    assert result["clips"] == 3 and result["objects_found"] == "3/3"
    assert set(result["per_attribute"]) == {"shape", "color", "size", "motion", "speed"}
    assert 0.0 <= result["accuracy"] <= 1.0 and result["clips_per_s_cpu"] > 0


def test_degradations_keep_shape_and_dtype(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    for codec in bench_adherence.CODECS:
        out = bench_adherence.degrade(frames, codec, np.random.default_rng(0), tmp_path)
        assert out.shape == frames.shape and out.dtype == np.uint8, codec
    assert np.array_equal(bench_adherence.degrade(frames, "rendered", np.random.default_rng(0), tmp_path), frames)
