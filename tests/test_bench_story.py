"""The story benchmark runs end to end and its line goes through its medians (tiny model, not timed)."""

import json

from conftest import load_bench_script, make_model_folder

bench_story = load_bench_script("bench_story")


def test_bench_times_stories_of_each_length(capsys, tmp_path):
    model = make_model_folder(tmp_path)
    capsys.readouterr()  # what making the folder printed
    bench_story.main(["--model", str(model), "--segments", "1,2,3", "--segment-frames", "4", "--repeats", "1"])
    report = json.loads(capsys.readouterr().out)
    assert [report["runs"][n]["frames"] for n in ("1", "2", "3")] == [9, 13, 17]
    assert report["line"]["seconds_per_segment"] > 0 and report["peak_rss_mb"] > 0
