"""The eval benchmark runs end to end at a tiny size and reports both I3D formats (not a timing test)."""

import json

from conftest import load_bench_script

bench_eval = load_bench_script("bench_eval")


def test_i3d_section_reports_both_formats(capsys, single_thread_isolated):
    report = bench_eval.main(["--size", "16", "--batch", "1", "--warmup", "1", "--repeats", "1"])
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(report))
    for name in ("state_dict", "torchscript"):
        assert report["i3d"][name]["clips_per_s"] > 0
    assert "16 x 16 x 16" in report["i3d"]["input"] and report["machine"]["torch_threads"] == 1
