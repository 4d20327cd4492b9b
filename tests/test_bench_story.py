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


def test_the_ceiling_scores_the_worlds_own_stories_perfectly(capsys, tmp_path):
    """The rendered ground truth keeps every boundary and reads every segment right: the eval's rules are the
    bar the model is held to, not a source of misses (the random tokenizer's round trip is only reported)."""
    ceiling = load_bench_script("bench_story_ceiling")
    model = make_model_folder(tmp_path)
    capsys.readouterr()
    ceiling.main(["--model", str(model), "--num-stories", "6"])
    report = json.loads(capsys.readouterr().out)
    rendered = report["rendered"]
    assert report["stories"] == 6 and rendered["continuity"]["total"] == report["boundaries"] >= 6
    assert rendered["continuity"]["share"] == 1.0 and rendered["broken"] == {}
    assert set(rendered["segments"]) >= {"color", "shape", "motion"} and min(rendered["segments"].values()) == 1.0
    assert report["through_tokenizer"]["continuity"]["total"] == report["boundaries"]
