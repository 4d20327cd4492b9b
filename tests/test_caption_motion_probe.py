"""scripts/bench/caption_motion_probe.py: teacher-forced mass on static and moving phrases after the caption's start."""

import json

import numpy as np

from conftest import load_bench_script, make_model_folder


def test_probe_scores_static_and_moving_clips_with_disjoint_phrase_masses(tmp_path, capsys):
    folder = make_model_folder(tmp_path)
    probe = load_bench_script("caption_motion_probe")
    capsys.readouterr()  # what making the folder printed (DeepSpeed's import log) is not the report
    assert probe.main(["--model", str(folder), "--clips", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    kinds = [c["kind"] for c in report["clips"]]
    assert sorted(kinds) == ["moving", "moving", "static", "static"]
    assert all((c["motion"] == "static") == (c["kind"] == "static") for c in report["clips"])
    for clip in report["clips"]:  # different continuations of one prefix: their probabilities sum to at most 1
        assert np.isfinite(clip["logp_static"]) and np.logaddexp(clip["logp_static"], clip["logp_moving"]) <= 1e-6
    for kind, means in report["means"].items():
        assert means["logp_static"] == np.mean([c["logp_static"] for c in report["clips"] if c["kind"] == kind])
