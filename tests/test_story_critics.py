"""The shipped story critic keeps the candidate whose object keeps its outline; the CLI's --candidates / --choose."""

import json

import numpy as np
import pytest

from reelm.cli import main
from reelm.generation.pipeline import PipelineInputError
from reelm.generation.story_critics import STORY_CRITICS, centered_iou, foreground, outline, shifted_iou
from reelm.generation.story_generation import WindowCandidates

from conftest import make_model_folder


def _frame(shape: str, cy: int, cx: int, r: int = 8) -> np.ndarray:
    frame = np.full((64, 64, 3), (40, 40, 60), dtype=np.uint8)
    y, x = np.mgrid[:64, :64]
    mask = (np.abs(y - cy) <= r) & (np.abs(x - cx) <= r) if shape == "square" else (y - cy) ** 2 + (x - cx) ** 2 <= r * r
    frame[mask] = (220, 40, 40)
    return frame


def test_the_outline_measures_see_a_kept_outline_wherever_it_moved():
    def masks(*frames):
        return [foreground(f) for f in frames]

    before = _frame("square", 30, 30)
    assert foreground(before).sum() == 17 * 17
    assert shifted_iou(*masks(before, _frame("square", 33, 28)), shift=6) == 1.0  # moved within the search
    assert shifted_iou(*masks(before, _frame("square", 40, 30)), shift=6) < 0.7  # moved beyond it
    assert shifted_iou(*masks(before, _frame("circle", 32, 30)), shift=6) < 0.9
    assert centered_iou(*masks(before, _frame("square", 50, 12))) == 1.0  # any distance: the centroids are aligned
    assert centered_iou(*masks(before, _frame("circle", 50, 12))) < 0.9
    assert centered_iou(*masks(_frame("square", 30, 30), _frame("square", 30, 60))) < 1.0  # cut by the edge
    empty = np.full((64, 64, 3), 40, dtype=np.uint8)
    assert shifted_iou(*masks(before, empty), shift=6) == centered_iou(*masks(empty, before)) == 0.0


def test_outline_keeps_the_candidate_that_keeps_the_story_s_object():
    first = _frame("square", 20, 20)
    before = np.stack([_frame("square", 30, 20 + t) for t in range(5)])
    moving = lambda shape: np.stack([_frame(shape, 30, 25 + t) for t in range(4)])  # noqa: E731
    smeared = moving("square").copy()
    smeared[1, 20:40, 10:50] = (220, 40, 40)  # one frame torn across
    window = WindowCandidates("a red square moves right", before, [moving("circle"), smeared, moving("square")],
                              [np.zeros((3, 8, 8), dtype=np.int64)] * 3, 2, first)
    assert outline(window) == 2 and STORY_CRITICS["outline"] is outline


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_model_folder(tmp_path_factory.mktemp("critics"))


def test_a_story_takes_a_critic_by_name_and_the_cli_records_it(model, tmp_path, capsys):
    from reelm.generation import VideoPipeline

    pipe = VideoPipeline.from_pretrained(model, device="cpu")
    steps = [("9f", "a red circle moves to the right"), ("8f", "a red circle moves up")]
    story = tmp_path / "story.txt"
    story.write_text("".join(f"{d}: {p}\n" for d, p in steps))
    made = pipe.story(str(story), seed=2, candidates=2, choose="outline")
    assert made.info["candidates"] == 2 and made.info["choose"] == "outline"
    with pytest.raises(PipelineInputError, match="choose 'best': give a function, or one of outline"):
        pipe.story(str(story), candidates=2, choose="best")
    out = tmp_path / "story.mp4"
    assert main(["generate", "--story", str(story), "--model", str(model), "-o", str(out), "--seed", "2",
                 "--candidates", "2", "--choose", "outline", "--no-progress"]) == 0
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["candidates"] == 2 and sidecar["choose"] == "outline"
    assert [w["context"]["candidate"][1] for s in sidecar["segments"][1:] for w in s["windows"]] == [2, 2]
    def refused(argv, message):
        assert main([*argv, "--no-progress"]) != 0
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1

    capsys.readouterr()  # what the run above printed
    story_args = ["generate", "--story", str(story), "--model", str(model), "-o", str(tmp_path / "x.mp4")]
    refused([*story_args, "--candidates", "2"], "go together")
    refused([*story_args, "--choose", "outline"], "go together")
    refused([*story_args, "--candidates", "0"], "--candidates 0: expected a positive number")
    refused(["generate", "a red circle", "--model", str(model), "-o", str(tmp_path / "x.mp4"), "--candidates", "2",
             "--choose", "outline"], "--candidates and --choose are for stories: give --story FILE")
    refused(["eval", "generate", "--model", str(model), "--out", str(tmp_path / "e"), "--candidates", "2",
             "--choose", "outline"], "--candidates and --choose are for stories: give --stories FILE|synthetic")
    assert not (tmp_path / "x.mp4").exists()
