"""Story clips of the synthetic world (their ground truth) and the story eval's continuity rules on hand-made
clips; the eval end to end at tiny settings."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from conftest import make_model_folder
from reelm.cli import main
from reelm.data.synthetic.render import render_frames
from reelm.data.synthetic.scene import MOTIONS, SPEEDS
from reelm.data.synthetic.stories import story_clip
from reelm.data.synthetic.world import WorldConfig
from reelm.eval.adherence import read_clip, score_against
from reelm.eval.story_eval import (StoryEvalConfig, continuity_at, evaluate_stories, inside_boundary, max_jump_for,
                                   score_story, story_summary)

WORLD = WorldConfig(num_frames=9, fps=8.0, max_objects=1, textured_backgrounds=False, shapes=("circle", "square", "triangle"),
                    sizes=("large",), motions=("left", "right", "up", "down", "static"), speeds=("slow",),
                    start_positions="independent", split="val", seed=0)
KEYS = ("shape", "color", "motion")


def test_story_clips_change_at_known_frames_and_stay_one_shot():
    step = SPEEDS["slow"] * 64 / 8.0
    for index in range(12):
        clip = story_clip(WORLD, index, color_changes=True)
        segments = clip.segments
        assert 2 <= len(segments) <= 4 and len(clip.frames) == 9 + 8 * (len(segments) - 1)
        assert [s["start"] for s in segments] == [0] + [s["end"] for s in segments[:-1]]
        assert clip.changes == [s["start"] for s in segments[1:]]
        for before, after in zip(segments, segments[1:]):
            b, a = before["attributes"]["objects"][0], after["attributes"]["objects"][0]
            assert a["motion"] != b["motion"] and a["shape"] == b["shape"]  # the motion always changes, the shape never
            assert after["change"].get("motion") == a["motion"] and after["change"].get("color", b["color"]) == a["color"]
            assert np.hypot(*np.subtract(after["track"][0], before["track"][-1])) <= step + 1e-6  # no jump
        assert clip.caption.count("then") == len(segments) - 1
        for s in segments:  # what the reader reads in each segment is what the ground truth says
            score = score_against(read_clip(clip.frames[s["start"]:s["end"]], 8.0, 1), s["attributes"])
            assert all(score["attributes"][k]["accuracy"] == 1.0 for k in KEYS), (index, s["prompt"], score)
    again = story_clip(WORLD, 3, color_changes=True)
    np.testing.assert_array_equal(again.frames, story_clip(WORLD, 3, color_changes=True).frames)


def _two_segments():
    clip = story_clip(WORLD, 1, segments=2)
    return clip, clip.segments[1]["start"]


def _rerender(clip, *, shift=(0.0, 0.0), **changes):
    """The story's second segment drawn again with the object changed (``changes``) or moved by ``shift`` pixels."""
    segment = clip.segments[1]
    obj = {**copy.deepcopy(segment["attributes"]["objects"][0]), "radius": clip.attributes["objects"][0]["radius"]}
    obj.update(changes)
    obj["track"] = {"center": [[x + shift[0], y + shift[1]] for x, y in segment["track"]]}
    frames = render_frames({**clip.attributes, "num_frames": segment["end"] - segment["start"], "objects": [obj]})
    return np.concatenate([clip.frames[:segment["start"]], frames])


def test_continuity_rules_on_hand_made_clips():
    clip, boundary = _two_segments()
    jump = max_jump_for(WORLD, 64, 64)
    color = clip.segments[0]["attributes"]["objects"][0]["color"]
    other_color = next(c for c in ("red", "green", "blue") if c != color)
    shape = clip.segments[0]["attributes"]["objects"][0]["shape"]
    other_shape = next(s for s in ("circle", "square", "triangle") if s != shape)

    kept = continuity_at(clip.frames, boundary, 8.0, changed_color=None, max_jump=jump)
    assert kept["kept"] and kept["jump"] <= jump and kept["psnr"] > 20
    moved = continuity_at(_rerender(clip, shift=(12.0, 0.0)), boundary, 8.0, changed_color=None, max_jump=jump)
    assert not moved["kept"] and moved["reason"].startswith("jumped") and moved["jump"] > jump
    reshaped = continuity_at(_rerender(clip, shape=other_shape), boundary, 8.0, changed_color=None, max_jump=jump)
    assert not reshaped["kept"] and reshaped["reason"] == "shape changed"
    recolored = _rerender(clip, color=other_color)
    assert continuity_at(recolored, boundary, 8.0, changed_color=None, max_jump=jump)["reason"] == "color changed"
    assert continuity_at(recolored, boundary, 8.0, changed_color=other_color, max_jump=jump)["kept"]  # as told
    gone = clip.frames.copy()
    gone[boundary:] = gone[boundary:, :1, :1]  # the object vanishes: the background alone
    assert continuity_at(gone, boundary, 8.0, changed_color=None, max_jump=jump)["reason"].startswith("no object read")


def test_score_story_reads_every_segment_and_boundary():
    clip = story_clip(WORLD, 5, segments=3)
    segments = [{"start": s["start"], "end": s["end"], "expected": s["attributes"], "change": s["change"]}
                for s in clip.segments]
    scores = score_story(clip.frames, 8.0, segments, keys=KEYS, max_jump=max_jump_for(WORLD, 64, 64))
    assert [s["score"]["accuracy"] for s in scores["segments"]] == [1.0, 1.0, 1.0]
    assert [b["kept"] for b in scores["boundaries"]] == [True, True] and scores["inside_psnr"] > 20


def test_inside_boundary_is_where_a_continuation_starts():
    assert inside_boundary(3, 4) == 5  # a 9-frame clip: the continuation keeps 2 latent frames (frames 0-4)
    assert inside_boundary(5, 4) == 9 and inside_boundary(2, 4) == 1 and inside_boundary(3, 2) == 3
    clip = story_clip(WORLD, 2, segments=2)
    one = clip.frames[:clip.segments[1]["start"]]  # the first segment alone: one prompt, nothing changes
    assert len(one) == 9
    assert continuity_at(one, inside_boundary(3, 4), 8.0, changed_color=None, max_jump=max_jump_for(WORLD, 64, 64))["kept"]


def test_story_summary_sets_continuity_beside_the_same_rule_inside_single_clips():
    score = score_against([{"shape": "circle"}], {"objects": [{"shape": "circle"}]})

    def record(kept: bool, inside: list[bool]) -> dict:
        return {"segments": [{"score": score}, {}], "inside_psnr": 30.0, "seconds": 1.0, "baseline": [score],
                "boundaries": [{"kept": kept, "psnr": 30.0, **({} if kept else {"reason": "shape changed"})}],
                "baseline_inside": [{"kept": k, **({} if k else {"reason": "shape changed"})} for k in inside]}

    summary = story_summary([record(True, [True, False]), record(False, [True, True])], StoryEvalConfig(), ("shape",))
    assert summary["continuity"]["kept"] == 1 and summary["continuity_alone"]["kept"] == 3
    assert summary["continuity_alone"]["total"] == 4 and summary["continuity_alone"]["broken"] == {"shape": 1}
    assert summary["ratio"]["continuity"] == round(0.5 / 0.75, 4)
    assert "continuity_alone" not in story_summary([record(True, [])], StoryEvalConfig(), ("shape",))
    longer = record(True, [])
    longer["boundaries"] = longer["boundaries"] + [{"kept": False, "psnr": 20.0, "reason": "color changed"}]
    by = story_summary([record(False, []), longer], StoryEvalConfig(), ("shape",))["by_boundary"]
    assert {i: (v["kept"], v["total"]) for i, v in by.items()} == {"1": (1, 2), "2": (0, 1)}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_model_folder(tmp_path_factory.mktemp("story_eval"))


def test_story_eval_end_to_end(model, tmp_path):
    cfg = StoryEvalConfig(num_stories=2, min_segments=2, max_segments=3, segment_frames=4, seed=0)
    summary = evaluate_stories(model, tmp_path, cfg, device="cpu", progress=False)
    records = [json.loads(line) for line in (tmp_path / "stories.jsonl").read_text().splitlines()]
    assert summary["stories"] == 2 == len(records) and summary["continuity"]["total"] == sum(
        len(r["segments"]) - 1 for r in records)
    assert all(r["segments"][0]["start"] == 0 and "score" in r["segments"][0] for r in records)
    assert len(records[0]["baseline"]) == len(records[0]["segments"]) == len(records[0]["baseline_inside"])
    assert summary["continuity_alone"]["total"] == sum(len(r["segments"]) for r in records)
    assert {b["frame"] for r in records for b in r["baseline_inside"]} == {5}  # the tiny model makes 9-frame clips
    assert (tmp_path / "report.html").is_file() and (tmp_path / "stories" / "story-000.mp4").is_file()


def test_eval_generate_stories_from_a_file(model, tmp_path, capsys):
    story = tmp_path / "story.txt"
    story.write_text("9f: a red circle moves to the right\n4f: a red circle moves up\n")
    assert main(["eval", "generate", "--model", str(model), "--stories", str(story), "--out", str(tmp_path / "e"),
                 "--no-progress", "--no-baseline"]) == 0
    summary = json.loads((tmp_path / "e" / "summary.json").read_text())
    assert summary["stories"] == 1 and summary["continuity"]["total"] == 1 and "baseline" not in summary
    assert "--stories" in capsys.readouterr().out
    assert main(["eval", "generate", "--model", str(model), "--stories", str(story), "--out", str(tmp_path / "best"),
                 "--no-progress", "--no-baseline", "--candidates", "2", "--choose", "outline"]) == 0
    summary = json.loads((tmp_path / "best" / "summary.json").read_text())
    assert (summary["config"]["candidates"], summary["config"]["choose"]) == (2, "outline")
    record = json.loads((tmp_path / "best" / "stories.jsonl").read_text())
    assert summary["continuity"]["total"] == 1 and len(record["segments"]) == 2
