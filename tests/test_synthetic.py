"""The synthetic captioned video world: determinism, ground truth vs pixels and captions, splits, writing."""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time

import numpy as np
import pytest

from reelm.core.config import ConfigError
from reelm.data.synthetic import scene as synthetic_scene
from reelm.data.synthetic.captions import caption_for, parse_caption
from reelm.data.synthetic.world import (
    HELD_OUT,
    SPLITS,
    SyntheticWorld,
    WorldConfig,
    is_held_out,
    render_dataset,
)
from reelm.data.synthetic.render import render_background, render_frames
from reelm.data.synthetic.scene import COLORS, MOTIONS, OBJECT_KEYS, SPEEDS, bounce
from reelm.core.errors import ReelmError


def world(**overrides) -> SyntheticWorld:
    return SyntheticWorld(WorldConfig(**overrides))


def test_same_seed_gives_identical_clips_and_different_seeds_differ():
    a, b = world(seed=7).clip(3), world(seed=7).clip(3)
    assert np.array_equal(a.frames, b.frames)
    assert a.caption == b.caption
    assert a.attributes == b.attributes
    others = [world(seed=8).clip(3), world(seed=7).clip(4), world(seed=7, split="val").clip(3)]
    for other in others:
        assert not np.array_equal(a.frames, other.frames)
        assert a.attributes["objects"] != other.attributes["objects"]


def test_random_access_matches_iteration():
    w = world(seed=2)
    late = w.clip(5)
    for index, clip in enumerate(itertools.islice(w, 6)):
        assert clip.index == index
        assert np.array_equal(clip.frames, w[index].frames)
    assert np.array_equal(clip.frames, late.frames)
    assert w.attributes(5) == late.attributes
    assert w.caption(5) == late.caption


def test_clip_has_requested_shape_and_serialisable_ground_truth():
    clip = world(height=48, width=80, num_frames=9, fps=12.0).clip(0)
    assert clip.frames.shape == (9, 48, 80, 3) and clip.frames.dtype == np.uint8
    attributes = json.loads(json.dumps(clip.attributes))
    assert attributes == clip.attributes
    assert np.array_equal(render_frames(attributes), clip.frames)
    for obj in attributes["objects"]:
        track = obj["track"]
        assert len(track["center"]) == len(track["bbox"]) == len(track["visible"]) == 9


@pytest.mark.parametrize("split", SPLITS)
def test_captions_parse_back_to_the_attributes(split):
    w = world(split=split, seed=1, max_objects=3)
    mentioned_backgrounds = 0
    partial = {"size": 0, "speed": 0}
    for index in range(300):
        attributes = w.attributes(index)
        parsed = parse_caption(w.caption(index, attributes))
        assert len(parsed["objects"]) == len(attributes["objects"])
        for read, obj in zip(parsed["objects"], attributes["objects"]):
            named = {key: value for key, value in read.items() if value is not None}
            assert named == {key: obj[key] for key in named}  # every attribute named is the true one
            assert {"color", "shape", "motion"} <= set(named)  # these always are; size and speed sometimes
            partial["size"] += "size" not in named
            partial["speed"] += "speed" not in named and obj["motion"] != "static"
        if parsed["background"] is not None:
            mentioned_backgrounds += 1
            assert parsed["background"]["kind"] == attributes["background"]["kind"]
            assert parsed["background"]["tone"] == attributes["background"]["tone"]
    assert 0 < mentioned_backgrounds < 300
    assert partial["size"] > 50 and partial["speed"] > 50  # captions leave attributes out, as people do


def test_typed_prompts_name_color_shape_and_motion_and_parse_back():
    from reelm.data.synthetic.captions import typed_prompt

    assert typed_prompt({"color": "red", "shape": "circle", "motion": "left"}) == "a red circle moves to the left"
    assert typed_prompt({"color": "cyan", "shape": "cross", "motion": "static"}) == "a cyan cross stays still"
    parsed = parse_caption("a white star moves to the lower right")["objects"][0]
    assert parsed == {"shape": "star", "color": "white", "size": None, "motion": "down-right", "speed": None}


def test_captions_are_paraphrased():
    attributes = world(seed=4).attributes(0)
    captions = {caption_for(attributes, np.random.default_rng(seed)) for seed in range(200)}
    assert len(captions) >= 20
    for caption in captions:
        assert all(obj["color"] in caption for obj in attributes["objects"])


def test_example_caption_forms():
    attributes = {
        "objects": [{"shape": "circle", "color": "red", "size": "small", "motion": "left", "speed": "slow"}],
        "background": {"kind": "plain", "tone": "grey"},
    }
    captions = {caption_for(attributes, np.random.default_rng(seed)) for seed in range(20000)}
    assert any(c.startswith("a small red circle moves to the left slowly") for c in captions)
    assert any(c.startswith("a red circle, small, sliding left slowly") for c in captions)
    assert "a red circle moves to the left" in captions  # the partial form people type
    two = dict(attributes, objects=attributes["objects"] + [dict(attributes["objects"][0], color="blue")])
    for seed in range(50):
        caption = caption_for(two, np.random.default_rng(seed))
        assert any(joiner in caption for joiner in (" and ", ", while ", "; meanwhile "))


def _nearest_color(pixel: np.ndarray) -> str:
    return min(COLORS, key=lambda name: np.abs(pixel.astype(int) - COLORS[name]).sum())


@pytest.mark.parametrize("size", [(64, 64), (96, 128)])
def test_tracks_match_pixels(size):
    height, width = size
    w = world(height=height, width=width, num_frames=17, seed=3)
    checked = 0
    for index in range(30):
        clip = w.clip(index)
        background = np.rint(render_background(clip.attributes["background"], height, width)).astype(np.uint8)
        outside = np.ones((17, height, width), dtype=bool)  # (T, H, W)
        for obj in clip.attributes["objects"]:
            track = obj["track"]
            for t, ((cx, cy), (x0, y0, x1, y1), visible) in enumerate(zip(track["center"], track["bbox"], track["visible"])):
                assert 0 <= x0 and x1 <= width and 0 <= y0 and y1 <= height
                outside[t, max(0, int(y0) - 1) : int(y1) + 2, max(0, int(x0) - 1) : int(x1) + 2] = False
                if visible:
                    assert _nearest_color(clip.frames[t, int(cy), int(cx)]) == obj["color"]
                    checked += 1
        assert np.array_equal(clip.frames[outside], np.broadcast_to(background, clip.frames.shape)[outside])
    assert checked > 30 * 17


def test_single_object_pixel_centroid_follows_the_track_and_motion():
    w = world(max_objects=1, seed=5, num_frames=6)
    for index in range(40):
        clip = w.clip(index)
        obj = clip.attributes["objects"][0]
        distance = np.abs(clip.frames.astype(int) - COLORS[obj["color"]]).sum(-1)  # (T, H, W)
        centroids = []
        for t in range(2):
            ys, xs = np.nonzero(distance[t] < 60)
            centroids.append((xs.mean() + 0.5, ys.mean() + 0.5))
            assert math.dist(centroids[t], obj["track"]["center"][t]) < 1.0
        ux, uy = MOTIONS[obj["motion"]]
        (ax, ay), (bx, by) = obj["track"]["center"][:2]
        if obj["motion"] == "static":
            assert len({tuple(c) for c in obj["track"]["center"]}) == 1
            continue
        step = SPEEDS[obj["speed"]] * 64 / 8.0
        assert math.isclose(math.hypot(bx - ax, by - ay), step, abs_tol=0.01)
        moved = np.subtract(centroids[1], centroids[0])
        assert np.dot(moved, (ux, uy)) > 0.7 * step
        assert abs(moved[0] * uy - moved[1] * ux) < 0.3 * step


def test_bouncing_keeps_objects_in_frame():
    w = world(num_frames=80, fps=4.0, seed=6)
    reversals = 0
    for index in range(20):
        attributes = w.attributes(index)
        for obj in attributes["objects"]:
            bbox = np.asarray(obj["track"]["bbox"])  # (T, 4)
            assert bbox[:, :2].min() >= 0 and bbox[:, 2].max() <= 64 and bbox[:, 3].max() <= 64
            dx = np.diff(np.asarray(obj["track"]["center"])[:, 0])  # (T - 1,)
            reversals += int(np.any(dx > 1e-6) and np.any(dx < -1e-6))
    assert reversals > 0


def test_bounce_reflects_between_walls():
    positions = bounce(np.array([0.0, 5.0, 10.0, 12.0, 20.0, 23.0, 31.0]), 2.0, 10.0)
    np.testing.assert_allclose(positions, [4.0, 5.0, 10.0, 8.0, 4.0, 7.0, 5.0])


def _combo_phrase(combo: dict) -> str:
    if "shape" in combo:
        return f"{combo['color']} {combo['shape']}"
    return f"{combo['color']} moving {combo['motion']}"


def test_held_out_combinations_are_documented():
    for combo in HELD_OUT:
        assert _combo_phrase(combo) in " ".join(synthetic_scene.__doc__.split())


@pytest.mark.parametrize("split", ["train", "val"])
def test_train_and_val_never_contain_held_out_combinations(split):
    w = world(split=split, seed=11, max_objects=2)
    seen = {"shape_color": set(), "color_motion": set()}
    for index in range(2000):
        attributes = w.attributes(index)
        assert not is_held_out(attributes) and attributes["held_out"] == []
        for obj in attributes["objects"]:
            seen["shape_color"].add((obj["shape"], obj["color"]))
            seen["color_motion"].add((obj["color"], obj["motion"]))
    for combo in HELD_OUT:
        kind = "shape_color" if "shape" in combo else "color_motion"
        pairs = seen[kind]
        first, second = (combo["shape"], combo["color"]) if "shape" in combo else (combo["color"], combo["motion"])
        assert any(p[0] == first and p[1] != second for p in pairs)
        assert any(p[1] == second and p[0] != first for p in pairs)


def test_heldout_split_has_only_held_out_clips_covering_every_combination():
    w = world(split="heldout", seed=11)
    found = []
    for index in range(600):
        attributes = w.attributes(index)
        assert is_held_out(attributes)
        found.extend(json.dumps(combo, sort_keys=True) for combo in attributes["held_out"])
    assert set(found) == {json.dumps(combo, sort_keys=True) for combo in HELD_OUT}


def test_objects_in_a_scene_have_distinct_colors():
    w = world(max_objects=4, seed=9)
    counts = set()
    for index in range(300):
        colors = [obj["color"] for obj in w.attributes(index)["objects"]]
        assert len(set(colors)) == len(colors)
        counts.add(len(colors))
    assert counts == {1, 2, 3, 4}


@pytest.mark.parametrize(
    "overrides",
    [{"height": 8}, {"width": 15}, {"num_frames": 0}, {"fps": 0}, {"seed": -1}, {"max_objects": 0}, {"split": "test"}],
)
def test_bad_config_is_a_user_error(overrides):
    with pytest.raises(ReelmError):
        WorldConfig(**overrides)


def test_negative_index_is_a_user_error():
    with pytest.raises(ConfigError):
        world().clip(-1)


def test_rendering_is_fast():
    for cfg, budget in ((WorldConfig(), 0.03), (WorldConfig(height=128, width=128, num_frames=33), 0.1)):
        w = SyntheticWorld(cfg)
        w.clip(0)
        began = time.perf_counter()
        for index in range(10):
            w.clip(index)
        assert (time.perf_counter() - began) / 10 < budget


def test_render_dataset_writes_clips_manifest_and_sheet(tmp_path):
    import av
    from PIL import Image

    cfg = WorldConfig(height=32, width=48, num_frames=5, seed=4)
    summary = render_dataset(tmp_path / "out", 3, cfg, start=2)
    out = tmp_path / "out"
    lines = (out / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 3 and summary["num_clips"] == 3
    expected = SyntheticWorld(cfg)
    for offset, line in enumerate(lines):
        record = json.loads(line)
        assert record["index"] == 2 + offset and record["split"] == "train"
        assert record["attributes"] == expected.attributes(record["index"])
        assert record["caption"] == expected.caption(record["index"])
        with av.open(str(out / record["video"])) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert len(frames) == 5 and frames[0].shape == (32, 48, 3)
        original = expected.clip(record["index"]).frames.astype(int)
        assert np.abs(np.stack(frames).astype(int) - original).mean() < 8
    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.width > 48 and sheet.height > 3 * 32
    assert sorted(p.name for p in out.iterdir()) == ["clips", "contact_sheet.png", "manifest.jsonl"]


def test_cli_renders_heldout_clips(tmp_path, capsys):
    from reelm.cli import main
    from reelm.commands import data_synthetic

    out = tmp_path / "syn"
    flags = ["--split", "heldout", "--seed", "3", "--height", "32", "--width", "32", "--num-frames", "4", "--fps", "4"]
    code = main(["data", "synthetic", "--num-clips", "2", "--out", str(out), *flags])
    assert code == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and "2 heldout clips" in printed[0]
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(records) == 2
    for record in records:
        assert record["split"] == "heldout" and record["attributes"]["held_out"]
        assert (out / record["video"]).is_file()
    parser = argparse.ArgumentParser()
    data_synthetic.register(parser.add_subparsers())
    split = next(a for a in parser._subparsers._group_actions[0].choices["synthetic"]._actions if a.dest == "split")
    assert tuple(split.choices) == SPLITS  # the command offers the world's splits, not a copy of them


def test_cli_reports_bad_flags_in_one_line(tmp_path, capsys):
    from reelm.cli import main

    code = main(["data", "synthetic", "--num-clips", "1", "--out", str(tmp_path), "--height", "8"])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("reelm: error:") and "height" in err[0]


# --- vocabularies and start positions ----------------------------------------------------------------------

DEMO_LIKE = dict(num_frames=9, max_objects=1, textured_backgrounds=False, shapes=("circle", "square", "triangle"),
                 sizes=("large",), motions=("left", "right", "up", "down", "static"), speeds=("slow",))


@pytest.mark.parametrize("split", SPLITS)
def test_a_vocabulary_limits_what_the_world_draws(split):
    w = world(split=split, **DEMO_LIKE)
    drawn = {key: set() for key in ("shape", "size", "motion", "speed")}
    for i in range(120):
        obj = w.attributes(i)["objects"][0]
        for key in drawn:
            drawn[key].add(obj[key])
        assert parse_caption(w.caption(i))["objects"][0]["shape"] == obj["shape"]
    assert drawn["shape"] <= set(DEMO_LIKE["shapes"]) and drawn["size"] == {"large"}
    assert drawn["motion"] <= set(DEMO_LIKE["motions"]) and drawn["speed"] <= {"slow", None}
    if split != "heldout":
        assert len(drawn["shape"]) == 3 and len(drawn["motion"]) == 5


def test_heldout_split_keeps_the_combinations_the_vocabulary_can_draw():
    w = world(split="heldout", **DEMO_LIKE)
    combos = {json.dumps(c, sort_keys=True) for i in range(200) for c in w.attributes(i)["held_out"]}
    expected = {json.dumps(c, sort_keys=True) for c in HELD_OUT
                if c.get("shape", "circle") in DEMO_LIKE["shapes"] and c.get("motion", "up") in DEMO_LIKE["motions"]}
    assert combos == expected and len(expected) == 4  # blue triangle, orange square, red up, green left


@pytest.mark.parametrize("overrides, message", [
    (dict(shapes=("circle", "hexagon")), "world shapes"),
    (dict(motions=()), "world motions"),
    (dict(colors=("red", "red")), "world colors"),
    (dict(sizes="large"), "world sizes"),
    (dict(start_positions="middle"), "start_positions"),
    (dict(split="heldout", shapes=("circle",), motions=("static",)), "held-out"),
    (dict(split="train", shapes=("triangle",), colors=("blue",)), "held-out combination"),
])
def test_bad_vocabulary_is_a_user_error(overrides, message):
    with pytest.raises(ConfigError, match=message):
        WorldConfig(**overrides)


def test_independent_starts_say_nothing_about_the_motion_and_never_bounce():
    w = world(start_positions="independent", **DEMO_LIKE)
    starts = {m: [] for m in DEMO_LIKE["motions"]}
    for i in range(300):
        obj = w.attributes(i)["objects"][0]
        center = np.asarray(obj["track"]["center"])  # (T, 2)
        starts[obj["motion"]].append(center[0])
        if obj["motion"] != "static":  # constant velocity from the first frame to the last: no bounce
            np.testing.assert_allclose(np.diff(center, axis=0), np.diff(center, axis=0)[:1].repeat(8, 0), atol=2e-3)
        x0, y0, x1, y1 = np.asarray(obj["track"]["bbox"]).T
        assert x0.min() >= 0 and y0.min() >= 0 and x1.max() <= 64 and y1.max() <= 64
    lo = np.min([np.min(s, axis=0) for s in starts.values()], axis=0)
    hi = np.max([np.max(s, axis=0) for s in starts.values()], axis=0)
    for motion, points in starts.items():  # every motion starts anywhere in the one shared region
        points = np.asarray(points)
        assert (points.min(axis=0) < lo + 0.3 * (hi - lo)).all() and (points.max(axis=0) > hi - 0.3 * (hi - lo)).all(), motion
    away = world(**DEMO_LIKE)  # the default: the start gives the motion away
    rights = [away.attributes(i)["objects"][0] for i in range(200)]
    xs = [o["track"]["center"][0][0] for o in rights if o["motion"] == "right"]
    assert max(xs) <= 32


def test_the_default_vocabulary_draws_what_the_world_always_drew():
    full = synthetic_scene.Vocabulary()
    assert full.shapes == synthetic_scene.SHAPES and full.motions == tuple(MOTIONS)
    assert world(seed=3).attributes(5) == SyntheticWorld(WorldConfig(seed=3, shapes=full.shapes)).attributes(5)


def test_cli_takes_the_vocabulary_flags(tmp_path, capsys):
    from reelm.cli import main

    assert main(["data", "synthetic", "--num-clips", "6", "--out", str(tmp_path), "--num-frames", "5",
                 "--shapes", "circle,square", "--motions", "left,static", "--start-positions", "independent"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert {o["shape"] for r in rows for o in r["attributes"]["objects"]} <= {"circle", "square"}
    assert {o["motion"] for r in rows for o in r["attributes"]["objects"]} <= {"left", "static"}
    assert main(["data", "synthetic", "--num-clips", "1", "--out", str(tmp_path / "x"), "--shapes", "blob"]) == 1
    assert "world shapes" in capsys.readouterr().err
