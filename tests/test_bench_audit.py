"""The audit benchmark runs end to end and its precision and recall add up (tiny settings, not timed)."""

import json

from conftest import load_bench_script

bench_audit = load_bench_script("bench_audit")


def test_bench_scores_the_audit_against_the_defects_it_rendered(capsys, tmp_path, real_media):
    media = next(p for p in sorted(real_media.iterdir()) if p.suffix == ".mkv")
    bench_audit.main(["--clips", "26", "--share", "1.0", "--frames", "17", "--media", str(media), "--repeats", "1"])
    report = json.loads(capsys.readouterr().out)
    dims = report["scores"]["dimensions"]
    assert sum(report["counts"].values()) == 26 and report["scores"]["clean"] == 0
    assert sum(d["tp"] + d["fn"] for d in dims.values()) == sum(v["total"] for v in report["scores"]["defects"].values())
    for d in dims.values():
        if d["recall"]["n"]:
            assert d["recall"]["value"] == d["tp"] / (d["tp"] + d["fn"])
            assert d["recall"]["interval"][0] <= d["recall"]["value"] <= d["recall"]["interval"][1]
    assert report["clips_per_second"] > 0 and report["media"]["seconds_per_minute_of_video"] > 0


def test_bench_without_media(capsys):
    bench_audit.main(["--clips", "12", "--share", "0.5"])
    report = json.loads(capsys.readouterr().out)
    assert report["scores"]["clean"] == 6 and "media" not in report
