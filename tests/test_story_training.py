"""Training stories: the world's 2-segment story rows, their shards, and their continuation sequences."""

from __future__ import annotations

import dataclasses
import json

import datasets
import numpy as np
import pytest
import torch

from reelm.core.errors import ReelmError
from reelm.data.clip_sampling import ClipSpec, load_clips
from reelm.data.lm_data import MixtureConfig, example_sequence, story_context
from reelm.data.shards import load_shards
from reelm.data.sources import SourceError, StoryRows, open_source
from reelm.data.synthetic.captions import parse_caption
from reelm.data.synthetic.stories import story_clip, story_row
from reelm.data.synthetic.world import WorldConfig, WorldOptions
from reelm.data.text_tokenizer import train_text_tokenizer
from reelm.data.token_layout import Task, TokenLayout
from reelm.eval.adherence import read_clip, score_against

WORLD = WorldConfig(num_frames=9, fps=8.0, max_objects=1, textured_backgrounds=False, shapes=("circle", "square", "triangle"),
                    sizes=("large",), motions=("left", "right", "up", "down", "static"), speeds=("slow",),
                    start_positions="independent", seed=0)
STORIES = StoryRows(6, change_frame=5, context_latent_frames=2)


def test_a_training_story_changes_where_the_context_ends_and_is_captioned_by_what_follows():
    sentences = 0
    for index in range(12):
        clip, caption = story_row(WORLD, index, change_frame=5)
        first, second = clip.segments
        assert len(clip.frames) == WORLD.num_frames and (first["start"], first["end"], second["end"]) == (0, 5, 9)
        assert second["change"], "a story changes something at its boundary"
        expected = second["attributes"]["objects"][0]
        if caption.startswith("then "):
            sentences += 1
            assert caption == second["sentence"]
        else:  # the world's own phrasing of the second segment
            read = parse_caption(caption)["objects"][0]
            assert {k: read[k] for k in ("color", "shape", "motion")} == {k: expected[k] for k in ("color", "shape", "motion")}
        # what the pixels show after the change is the second segment, read as the eval reads it
        score = score_against(read_clip(clip.frames[5:], WORLD.fps), second["attributes"])
        assert score["attributes"]["color"]["accuracy"] == 1 and score["attributes"]["shape"]["accuracy"] == 1
    assert 0 < sentences < 12, "both ways of saying what follows are drawn"
    with pytest.raises(ReelmError, match="change frame"):
        story_row(WORLD, 0, change_frame=8)


def test_an_anchored_story_row_is_the_longer_story_with_the_frames_between_its_first_and_its_context_left_out():
    for index in range(6):
        clip, caption = story_row(WORLD, index, change_frame=5, anchor_gap=8)
        whole = story_clip(WORLD, index, segments=2, first_frames=13, segment_frames=4, color_changes=True)
        assert clip.anchor_gap == 8 and len(clip.frames) == WORLD.num_frames
        np.testing.assert_array_equal(clip.frames, np.concatenate([whole.frames[:1], whole.frames[9:]]))
        first, second = clip.segments
        assert (first["start"], first["end"], second["start"], second["end"]) == (0, 5, 5, 9)
        assert first["track"] == whole.segments[0]["track"][:1] + whole.segments[0]["track"][9:] and len(first["track"]) == 5
        assert second["change"] == whole.segments[1]["change"] and caption
        score = score_against(read_clip(clip.frames[5:], WORLD.fps), second["attributes"])
        assert score["attributes"]["shape"]["accuracy"] == 1
    plain, _ = story_row(WORLD, 0, change_frame=5)
    assert plain.anchor_gap == 0
    with pytest.raises(ReelmError, match="anchor gap"):
        story_row(WORLD, 0, change_frame=5, anchor_gap=-4)


def test_story_rows_draw_their_anchor_gaps_per_row():
    rows = StoryRows(40, change_frame=5, context_latent_frames=2, anchor_gaps=(4, 8))
    gaps = [rows.anchor_gap(i, seed=0) for i in range(40)]
    assert set(gaps) == {0, 4, 8} and gaps == [rows.anchor_gap(i, seed=0) for i in range(40)]
    assert gaps != [rows.anchor_gap(i, seed=1) for i in range(40)]
    assert {STORIES.anchor_gap(i, seed=0) for i in range(40)} == {0}
    source = open_source("synthetic", num_clips=2, world_cfg=WORLD, stories=rows)
    for index in range(2, 12):
        row = source.row(index)
        gap = rows.anchor_gap(source.world_index(index), WORLD.seed)
        assert row.attributes["story"]["anchor_gap"] == gap
        np.testing.assert_array_equal(source.frames(index), story_row(WORLD, index, 5, anchor_gap=gap)[0].frames)
    with pytest.raises(SourceError, match="anchor gaps"):
        StoryRows(4, 5, 2, anchor_gaps=(0,))


def test_training_stories_follow_the_synthetic_sources_clips_which_they_leave_as_they_were():
    source = open_source("synthetic", num_clips=10, world_cfg=WORLD, stories=STORIES)
    plain = open_source("synthetic", num_clips=10, world_cfg=WORLD)
    assert len(source) == 16 and len(plain) == 10
    assert [source.row(i) for i in range(10)] == [plain.row(i) for i in range(10)]
    spec = ClipSpec(num_frames=9, fps=8.0, size=64)
    np.testing.assert_array_equal(load_clips(source, source.row(3), spec, np.random.default_rng(0))[0].frames,
                                  load_clips(plain, plain.row(3), spec, np.random.default_rng(0))[0].frames)
    for index in range(10, 16):
        row = source.row(index)
        story = row.attributes["story"]
        assert row.video == f"synthetic:train:story:{index}" and row.attributes["index"] == index
        assert story["change_frame"] == 5 and story["context_latent_frames"] == 2
        assert row.attributes["num_frames"] == 9 and [s["start"] for s in story["segments"]] == [0, 5]
        clip, caption = story_row(WORLD, index, 5)
        np.testing.assert_array_equal(load_clips(source, row, spec, np.random.default_rng(0))[0].frames, clip.frames)
        assert row.caption == caption
    with pytest.raises(SourceError, match="number of story clips"):
        StoryRows(-1, 5, 2)
    with pytest.raises(SourceError, match="max_objects must be 1"):
        open_source("synthetic", num_clips=10, world_cfg=dataclasses.replace(WORLD, max_objects=2), stories=STORIES)


def test_stories_outside_the_heldout_split_show_no_held_out_combination():
    from reelm.data.synthetic.scene import is_held_out
    from reelm.data.synthetic.stories import story_clip

    shown = {"train": 0, "heldout": 0}
    for split in shown:
        world = dataclasses.replace(WORLD, split=split)
        for index in range(80):
            clip = story_clip(world, index, segments=3, color_changes=True)
            shown[split] += sum(is_held_out(s["attributes"]) for s in clip.segments[1:])
    assert shown["train"] == 0 and shown["heldout"] > 0  # red moving up, a blue triangle ... come only where held out


@pytest.fixture(scope="module")
def layout():
    text = train_text_tokenizer(["a red circle moves up", "then it moves left", "a blue square stays still"] * 5,
                                vocab_size=300)
    return TokenLayout.build(text, codebook_size=64, latent_hw=(2, 2))


def _example(layout, story: dict | None, t: int = 3) -> dict:
    rng = np.random.default_rng(1)
    return {"codes": rng.integers(0, 64, size=t * 4).tolist(), "grid": [t, 2, 2],
            "caption_ids": layout.encode_text("then it moves left").tolist(),
            "attributes": json.dumps({"objects": [], **({"story": story} if story else {})})}


def test_a_story_example_is_always_a_continuation_whose_text_is_the_next_segments(layout):
    example = _example(layout, {"change_frame": 5, "context_latent_frames": 2, "segments": []})
    assert story_context(example) == 2
    mixture = MixtureConfig(t2v=1, i2v=0, v2v=0, v2t=0, uncond=0, text_dropout=0.3)
    texts = []
    for seed in range(40):
        ids, _, task = example_sequence(layout, example, mixture, np.random.default_rng(seed))
        parsed = layout.parse(ids)
        assert parsed.task is Task.V2V and len(parsed.context) == 2 and len(parsed.video) == 1
        np.testing.assert_array_equal(np.concatenate([parsed.context, parsed.video]).reshape(-1), example["codes"])
        texts.append(parsed.text)
    assert "then it moves left" in texts and any(not text for text in texts)  # caption dropout still applies
    # an example without a story draws its task from the mixture exactly as before
    plain = _example(layout, None)
    assert story_context(plain) is None
    ids, _, _ = example_sequence(layout, plain, mixture, np.random.default_rng(0))
    assert layout.parse(ids).task is Task.T2V
    with pytest.raises(ReelmError, match="cannot have 3 of context"):
        story_context(_example(layout, {"context_latent_frames": 3}))


def test_pre_tokenized_story_rows_become_story_shards(tmp_path):
    from reelm.tokenizer.model import PRESETS, VideoTokenizer
    from reelm.tokenizer.pretokenize import TokenizeConfig, tokenize_dataset
    from reelm.tokenizer.tokenizer_checkpoint import save_tokenizer

    torch.manual_seed(0)
    save_tokenizer(VideoTokenizer(PRESETS["tiny"]()).eval(), tmp_path / "vtok")
    world = WorldOptions(max_objects=1, textured_backgrounds=False, start_positions="independent",
                         motions=("left", "right", "up", "down", "static"))
    cfg = TokenizeConfig(clip=ClipSpec(num_frames=9, fps=8.0, size=32), num_clips=16, world=world,
                         text_vocab_size=300, story_clips=6)
    tokenize_dataset("synthetic", tmp_path / "vtok", tmp_path / "shards", cfg, progress=False)
    info = json.loads((tmp_path / "shards" / "shards.json").read_text())
    assert info["stories"] == {"count": 6, "change_frame": 5, "context_latent_frames": 2} and info["num_rows"] == 22
    shards = load_shards(tmp_path / "shards")
    stories = [e for e in shards.dataset if story_context(e)]
    assert len(stories) == 6 and len(shards.dataset) == 22
    for example in stories:
        assert example["grid"][0] == 3 and ":story:" in example["source"]
    anchored = tokenize_dataset("synthetic", tmp_path / "vtok", tmp_path / "anchored",
                                dataclasses.replace(cfg, story_anchor_windows=2), progress=False)
    assert json.loads((tmp_path / "anchored" / "shards.json").read_text())["stories"]["anchor_gaps"] == [4, 8]
    gaps = [json.loads(e["attributes"])["story"]["anchor_gap"] for e in load_shards(tmp_path / "anchored").dataset
            if story_context(e)]
    assert len(gaps) == 6 and set(gaps) <= {0, 4, 8} and set(gaps) - {0}, anchored
    with pytest.raises(ReelmError, match="give --story-clips N too"):
        tokenize_dataset("synthetic", tmp_path / "vtok", tmp_path / "none",
                         dataclasses.replace(cfg, story_clips=0, story_anchor_windows=2), progress=False)
    with pytest.raises(ReelmError, match="too short; use at least 9"):
        tokenize_dataset("synthetic", tmp_path / "vtok", tmp_path / "short",
                         dataclasses.replace(cfg, clip=ClipSpec(num_frames=5, fps=8.0, size=32)), progress=False)
    with pytest.raises(ReelmError, match="synthetic world only"):
        tokenize_dataset(datasets.Dataset.from_list([{"video": "x.mp4", "caption": "c"}]), tmp_path / "vtok",
                         tmp_path / "other", cfg, progress=False)
