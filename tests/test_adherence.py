"""Prompt adherence: reading synthetic-world clips back from pixels, and scoring prompts and captions."""

from __future__ import annotations

import numpy as np
import pytest

from reelm.data.synthetic.captions import caption_for, parse_caption
from reelm.data.synthetic.world import SyntheticWorld, WorldConfig
from reelm.data.synthetic.render import render_frames
from reelm.data.synthetic.scene import MOTIONS, SIZES, SPEEDS, bounce
from reelm.data.synthetic.shapes import EXTENTS
from reelm.data.video_read import read_video
from reelm.data.video_write import write_mp4
from reelm.eval.adherence import (
    ATTRIBUTES,
    AdherenceError,
    ClipReadError,
    ObjectReading,
    aggregate,
    caption_accuracy,
    read_clip,
    score_against,
)

FPS = 8.0


def h264(frames: np.ndarray, tmp_path) -> np.ndarray:
    path = write_mp4(tmp_path / "clip.mp4", frames, FPS)
    return read_video(path)


# A fast subset of the measured settings (the full measurement uses 200-300 clips each).
SUBSETS = {
    "64x9-plain-1": (dict(num_frames=9, max_objects=1, textured_backgrounds=False), 12),
    "64x17-textured-1": (dict(num_frames=17, max_objects=1, textured_backgrounds=True), 8),
    "64x17-textured-2": (dict(num_frames=17, max_objects=2, textured_backgrounds=True), 5),
}


@pytest.mark.parametrize("codec", ["rendered", "h264"])
@pytest.mark.parametrize("setting", list(SUBSETS))
def test_reads_every_attribute_of_world_clips(setting, codec, tmp_path):
    overrides, count = SUBSETS[setting]
    world = SyntheticWorld(WorldConfig(seed=11, height=64, width=64, fps=FPS, **overrides))
    scores = []
    for index in range(count):
        clip = world.clip(index)
        frames = h264(clip.frames, tmp_path) if codec == "h264" else clip.frames
        scores.append(score_against(read_clip(frames, FPS, max_objects=overrides["max_objects"]), clip.attributes))
    summary = aggregate(scores)
    assert summary["found"] == summary["expected_objects"] and summary["extra"] == 0
    for key in ATTRIBUTES:
        assert summary["attributes"][key]["accuracy"] >= 0.99, (key, summary["attributes"][key])


def test_readings_carry_their_evidence():
    clip = SyntheticWorld(WorldConfig(seed=2, num_frames=9, max_objects=1)).clip(0)
    (reading,) = read_clip(clip.frames, FPS)
    truth = clip.attributes["objects"][0]
    assert reading.attributes() == {key: truth[key] for key in ATTRIBUTES}
    assert len(reading.track) == 9 and reading.frames_seen == 9
    assert np.allclose(reading.track, truth["track"]["center"], atol=0.5)
    assert reading.radius == pytest.approx(SIZES[truth["size"]], rel=0.08)
    assert max(reading.shape_scores, key=reading.shape_scores.get) == truth["shape"]
    x, y = (int(v) for v in truth["track"]["center"][0])
    assert np.abs(np.subtract(reading.rgb, clip.frames[0, y, x])).max() < 30


def _scene(shape, color, size, motion, speed, start, *, frames=9, side=64, background=(42, 42, 46)):
    """Attributes of a one-object scene starting at ``start`` (pixels), with the world's physics."""
    radius = SIZES[size] * side
    x0, x1, y0, y1 = (e * radius for e in EXTENTS[shape])
    step = SPEEDS[speed] * side / FPS if speed else 0.0
    t = np.arange(frames)
    cx = bounce(start[0] + MOTIONS[motion][0] * step * t, -x0, side - x1)
    cy = bounce(start[1] + MOTIONS[motion][1] * step * t, -y0, side - y1)
    obj = {"shape": shape, "color": color, "size": size, "motion": motion, "speed": speed, "radius": radius,
           "track": {"center": np.stack([cx, cy], 1).tolist(), "visible": [True] * frames}}
    return {"height": side, "width": side, "num_frames": frames, "objects": [obj],
            "background": {"kind": "plain", "tone": "charcoal", "rgb": [list(background)]}}


@pytest.mark.parametrize(
    "motion, start_offset",
    [
        ("right", 0.0),  # starts touching the left wall, moving away from it
        ("left", 1.0),  # starts 1 px from the left wall and bounces off it in the first frame
        ("up-left", 1.5),  # bounces off the top wall in the first frame while moving left
    ],
)
def test_direction_is_the_initial_one_when_starting_at_a_wall(motion, start_offset):
    radius = SIZES["medium"] * 64
    start = (radius + start_offset, 32.0) if motion != "up-left" else (40.0, radius + start_offset)
    attributes = _scene("circle", "red", "medium", motion, "fast", start)
    (reading,) = read_clip(render_frames(attributes), FPS)
    assert (reading.motion, reading.speed) == (motion, "fast")


def test_static_object_has_no_speed():
    attributes = _scene("star", "cyan", "small", "static", None, (20.0, 30.0))
    (reading,) = read_clip(render_frames(attributes), FPS)
    expected = {"shape": "star", "color": "cyan", "size": "small", "motion": "static", "speed": None}
    assert reading.attributes() == expected
    assert reading.speed_value < 0.01


def test_blurred_and_dimmed_clips_still_read():
    from scipy import ndimage

    clip = SyntheticWorld(WorldConfig(seed=4, num_frames=9, max_objects=1)).clip(1)
    blurred = ndimage.gaussian_filter(clip.frames.astype(np.float32), (0, 1.0, 1.0, 0)) * 0.8
    (reading,) = read_clip(np.clip(np.rint(blurred), 0, 255).astype(np.uint8), FPS)
    truth = clip.attributes["objects"][0]
    assert reading.attributes() == {key: truth[key] for key in ATTRIBUTES}


def test_garbage_frames_read_as_no_objects_or_wrong_ones_never_an_error():
    rng = np.random.default_rng(0)
    expected = SyntheticWorld(WorldConfig(seed=0, num_frames=9)).attributes(0)
    garbage = {
        "grey": np.full((9, 64, 64, 3), 128, np.uint8),
        "noise": rng.integers(0, 256, (9, 64, 64, 3), dtype=np.uint8),
        "blocks": np.repeat(np.repeat(rng.integers(0, 256, (9, 8, 8, 3), dtype=np.uint8), 8, 1), 8, 2),
        "one frame": rng.integers(0, 256, (1, 32, 32, 3), dtype=np.uint8),
        "tiny": rng.integers(0, 256, (2, 3, 5, 3), dtype=np.uint8),
    }
    for name, frames in garbage.items():
        readings = read_clip(frames, FPS)
        score = score_against(readings, expected)
        assert score["total"] > 0 and 0.0 <= score["accuracy"] <= 1.0, name
    assert read_clip(garbage["grey"], FPS) == []
    assert read_clip(garbage["noise"], FPS) == []
    assert score_against([], expected)["accuracy"] == 0.0


def test_bad_frames_or_fps_are_one_line_errors():
    frames = np.zeros((2, 16, 16, 3), np.uint8)
    for bad in (frames.astype(np.float32), frames[..., :2], frames[0]):
        with pytest.raises(ClipReadError, match="frames must be"):
            read_clip(bad, FPS)
    for fps in (0, -1.0, float("nan"), "8"):
        with pytest.raises(ClipReadError, match="fps"):
            read_clip(frames, fps)
    with pytest.raises(ClipReadError, match="max_objects"):
        read_clip(frames, FPS, max_objects=0)


def _reading(**attributes) -> ObjectReading:
    return ObjectReading(**{key: attributes.get(key) for key in ATTRIBUTES})


def test_partial_prompt_scores_only_what_it_names():
    expected = parse_caption("a red circle moves to the left")
    right = [_reading(shape="circle", color="red", size="large", motion="left", speed="fast")]
    score = score_against(right, expected)
    assert score["accuracy"] == 1.0 and score["total"] == 3
    assert score["attributes"]["size"]["total"] == 0 and score["attributes"]["speed"]["total"] == 0
    wrong_shape = [_reading(shape="square", color="red", size="small", motion="left", speed="slow")]
    assert score_against(wrong_shape, expected)["accuracy"] == pytest.approx(2 / 3)


def test_matching_pairs_by_color_first_and_counts_missing_and_extra_objects():
    expected = {"objects": [
        {"shape": "circle", "color": "red", "size": None, "motion": "up", "speed": None},
        {"shape": "square", "color": "blue", "size": None, "motion": "static", "speed": None},
    ]}
    swapped = [
        _reading(shape="square", color="red", motion="up"),
        _reading(shape="circle", color="blue", motion="static"),
    ]
    score = score_against(swapped, expected)
    assert [o["read"] for o in score["objects"]] == [0, 1]
    assert score["attributes"]["color"]["accuracy"] == 1.0 and score["attributes"]["shape"]["accuracy"] == 0.0
    missing = score_against([_reading(shape="square", color="blue", motion="static")], expected)
    assert missing["found"] == 1 and missing["objects"][0]["read"] is None
    assert missing["correct"] == 3 and missing["total"] == 6
    extra = score_against(swapped + [_reading(shape="star", color="green", motion="left")], expected)
    assert extra["extra"] == 1 and extra["found"] == 2
    as_dicts = [{"shape": "circle", "color": "red", "motion": "up"}]
    dicts = score_against(as_dicts, parse_caption("a red circle drifts up"))
    assert dicts["accuracy"] == 1.0


def test_scores_fall_when_frames_do_not_match_the_prompt():
    world = SyntheticWorld(WorldConfig(seed=5, num_frames=9, max_objects=1))
    clips = [world.clip(i) for i in range(6)]
    matched = aggregate(score_against(read_clip(c.frames, FPS), c.attributes) for c in clips)
    others = clips[1:] + clips[:1]
    shuffled = aggregate(score_against(read_clip(c.frames, FPS), d.attributes) for c, d in zip(clips, others))
    assert matched["accuracy"] == 1.0
    assert shuffled["accuracy"] < 0.6


def test_caption_accuracy_counts_what_the_caption_names_correctly():
    world = SyntheticWorld(WorldConfig(seed=3, num_frames=9, max_objects=2))
    for index in range(8):
        clip = world.clip(index)
        for caption in (clip.caption, caption_for(clip.attributes, np.random.default_rng(index))):
            # World captions name color, shape and motion always, size and speed sometimes: every attribute
            # they name is right, and the ones they leave out count as not named.
            named = sum(value is not None for obj in parse_caption(caption)["objects"] for value in obj.values())
            score = caption_accuracy(caption, clip.attributes)
            assert score["correct"] == named and score["found"] == len(clip.attributes["objects"])
    truth = {"objects": [{"shape": "circle", "color": "red", "size": "small", "motion": "left", "speed": "slow"},
                         {"shape": "star", "color": "blue", "size": "large", "motion": "static", "speed": None}]}
    score = caption_accuracy("a red circle moves to the left", truth)
    assert score["total"] == 9 and score["correct"] == 3  # blue star unnamed; size, speed left out
    assert score["attributes"]["speed"]["total"] == 1  # the static star's speed is not scored
    wrong = caption_accuracy("a small green circle moves to the left slowly and a large blue star stays still", truth)
    assert wrong["attributes"]["color"] == {"correct": 1, "total": 2, "accuracy": 0.5}
    assert wrong["correct"] == 8
    assert caption_accuracy("", truth)["accuracy"] == 0.0


def test_aggregate_pools_attributes_and_clips():
    truth = {"objects": [{"shape": "circle", "color": "red", "size": "small", "motion": "left", "speed": "slow"}]}
    good = score_against([_reading(shape="circle", color="red", size="small", motion="left", speed="slow")], truth)
    half = score_against([_reading(shape="square", color="red", size="large", motion="left", speed="slow")], truth)
    summary = aggregate([good, half])
    assert summary["clips"] == 2 and summary["correct"] == 8 and summary["total"] == 10
    assert summary["attributes"]["shape"]["accuracy"] == 0.5 and summary["attributes"]["color"]["accuracy"] == 1.0
    assert summary["clip_accuracy"] == pytest.approx(0.8)
    assert aggregate([])["accuracy"] is None


def test_bad_expected_attributes_are_one_line_errors():
    with pytest.raises(AdherenceError, match="'objects' list"):
        score_against([], {"shape": "circle"})
    with pytest.raises(AdherenceError, match="must be a dict"):
        score_against([], {"objects": ["red circle"]})
    with pytest.raises(AdherenceError, match="caption must be a string"):
        caption_accuracy(None, {"objects": []})


def test_caption_accuracy_scores_only_the_attributes_asked_for():
    from reelm.eval.adherence import AdherenceError, caption_accuracy

    truth = {"objects": [{"shape": "circle", "color": "red", "size": "large", "motion": "left", "speed": "slow"}]}
    full = caption_accuracy("a red circle moves to the left", truth)
    assert (full["correct"], full["total"]) == (3, 5)  # size and speed not named: wrong
    varied = caption_accuracy("a red circle moves to the left", truth, keys=("shape", "color", "motion"))
    assert (varied["correct"], varied["total"]) == (3, 3) and varied["attributes"]["size"]["total"] == 0
    assert caption_accuracy("a red square moves up", truth, keys=("shape", "color", "motion"))["correct"] == 1
    with pytest.raises(AdherenceError, match="unknown attributes"):
        caption_accuracy("a red circle", truth, keys=("hue",))
