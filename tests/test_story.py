"""Story prompts: the story file's two forms and their one-line errors, segments laid on latent frames, one
video made window by window with each segment's bookkeeping in the sidecar, in flat memory."""

from __future__ import annotations

import gc
import json
import tracemalloc
import weakref

import numpy as np
import pytest

from conftest import make_model_folder
from reelm.cli import main
from reelm.data.video_read import read_video
from reelm.generation import VideoPipeline
from reelm.generation.story import StoryError, StorySegment, parse_story_json, parse_story_text, plan_segments, \
    read_story
from reelm.generation.pipeline import PipelineInputError
from reelm.lm.sampling import Sampling


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return VideoPipeline.from_pretrained(make_model_folder(tmp_path_factory.mktemp("story")), device="cpu")


def test_the_plain_text_form():
    segments = parse_story_text("# a story\n\n2s: a red circle moves to the right\n1.5 sec: it moves up\n"
                                "16f: a blue square appears\n 4 frames : the end \n")
    assert segments == [StorySegment("a red circle moves to the right", seconds=2.0), StorySegment("it moves up", seconds=1.5),
                        StorySegment("a blue square appears", frames=16), StorySegment("the end", frames=4)]


def test_the_json_form(tmp_path):
    story = [{"prompt": "a red circle moves to the right", "seconds": 2}, {"prompt": "it moves up", "frames": 8}]
    path = tmp_path / "story.json"
    path.write_text(json.dumps({"segments": story}))
    assert read_story(path) == [StorySegment("a red circle moves to the right", seconds=2.0),
                                StorySegment("it moves up", frames=8)]
    assert parse_story_json(story) == read_story(path)


@pytest.mark.parametrize("text, message", [
    ("2s: fine\nmoves up\n", "story.txt, line 2: expected 'DURATION: PROMPT'"),
    ("2s:   \n", "story.txt, line 1: the prompt is empty"),
    ("0f: a red circle\n", "story.txt, line 1: 0 frames: a segment lasts at least one frame"),
    ("2.5f: a red circle\n", "story.txt, line 1: 2.5 frames: a frame count is a whole number"),
    ("0s: a red circle\n", "story.txt, line 1: 0 s: a segment lasts a positive"),
    ("2m: a red circle\n", "story.txt, line 1: expected 'DURATION: PROMPT'"),
    ("# only a comment\n", "story.txt: holds no segments"),
])
def test_bad_text_stories_get_one_line_errors(tmp_path, text, message):
    path = tmp_path / "story.txt"
    path.write_text(text)
    with pytest.raises(StoryError, match="^" + str(tmp_path).replace("\\", "\\\\") + "/" + message.replace("(", r"\(")
                       .replace(")", r"\)")) as info:
        read_story(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("data, message", [
    ({"prompt": "x", "seconds": 1}, "expected a list of segments"),
    ([{"prompt": "x"}], "segment 1: give its length as exactly one of seconds or frames"),
    ([{"prompt": "x", "seconds": 1, "frames": 8}], "segment 1: give its length as exactly one"),
    ([{"prompt": "x", "seconds": 1}, {"prompt": "y", "frames": 2.5}], "segment 2: frames 2.5: a frame count is a whole"),
    ([{"prompt": "x", "seconds": "2s"}], "segment 1: seconds '2s': expected a number"),
    ([{"prompt": 3, "seconds": 1}], "segment 1: prompt must be text"),
    ([{"prompt": "x", "seconds": 1, "speed": 2}], "segment 1: unknown key"),
    (["2s: x"], "segment 1: expected"),
    ([], "holds no segments"),
])
def test_bad_json_stories_get_one_line_errors(tmp_path, data, message):
    path = tmp_path / "story.json"
    path.write_text(json.dumps(data))
    with pytest.raises(StoryError, match=message.replace("(", r"\(")) as info:
        read_story(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_unreadable_story_files(tmp_path):
    with pytest.raises(StoryError, match="missing.txt: not found"):
        read_story(tmp_path / "missing.txt")
    (tmp_path / "bad.json").write_text("[{")
    with pytest.raises(StoryError, match="bad.json: not JSON"):
        read_story(tmp_path / "bad.json")
    (tmp_path / "latin1.txt").write_bytes("2s: caf\xe9".encode("latin-1"))
    with pytest.raises(StoryError, match="latin1.txt: not UTF-8"):
        read_story(tmp_path / "latin1.txt")


def test_segments_lie_on_whole_latent_frames_without_drift():
    # 8 fps, latent frames of 4 pixel frames (the first one frame): the requested ends 16, 32, 40 round to 17, 33, 41
    planned = plan_segments([StorySegment("a", seconds=2), StorySegment("b", seconds=2), StorySegment("c", seconds=1)],
                            8.0, 4)
    assert [(p.start, p.end, p.latent_frames) for p in planned] == [(0, 17, 5), (17, 33, 4), (33, 41, 2)]
    many = plan_segments([StorySegment(str(i), seconds=0.7) for i in range(30)], 10.0, 4)  # 7 frames asked each
    assert abs(many[-1].end - 210) <= 2  # rounding is against the story's requested end, so it does not pile up
    assert sum(p.frames for p in many) == many[-1].end and all(p.frames in (4, 8) for p in many[1:])
    with pytest.raises(StoryError, match=r"segment 2 \('1'\): 3 frame\(s\) is shorter than one latent frame"):
        plan_segments([StorySegment(str(i), seconds=0.3) for i in range(30)], 10.0, 4)  # shorter than a latent frame: refused, not rounded to one sometimes
    with pytest.raises(StoryError, match=r"segment 2 \('b'\): 1 frame\(s\) is shorter than one latent frame"):
        plan_segments([StorySegment("a", frames=9), StorySegment("b", frames=1)], 8.0, 4)


STORY = [StorySegment("a red circle moves to the right", frames=9), StorySegment("a blue square moves up", frames=8),
         StorySegment("a blue square moves to the left", frames=4)]


def test_a_story_is_one_video_each_segment_continuing_the_last(pipe):
    out = pipe.story(STORY, seed=1)
    assert out.video.shape == (21, 32, 32, 3) and out.video.dtype == np.uint8
    assert [(s["start_frame"], s["end_frame"], s["latent_frames"]) for s in out.segments] == [(0, 9, 3), (9, 17, 2),
                                                                                            (17, 21, 1)]
    first, second, third = out.segments
    assert first["windows"] == [{"task": "t2v", "frames": [0, 9], "seed": first["windows"][0]["seed"], "context": None}]
    # the tiny model trains on 3 latent frames and continues from 2: one new latent frame (4 pixel frames) a window
    assert [w["frames"] for w in second["windows"]] == [[9, 13], [13, 17]]
    assert [w["context"] for w in second["windows"]] == [{"latent_frames": 2, "frames": [4, 9]},
                                                         {"latent_frames": 2, "frames": [8, 13]}]
    assert {w["task"] for w in second["windows"] + third["windows"]} == {"v2v"}
    assert len({first["seed"], second["seed"], third["seed"]}) == 3
    assert out.info["model"] == pipe.model.identity()
    again = pipe.story(STORY, seed=1)
    np.testing.assert_array_equal(out.video, again.video)
    assert not np.array_equal(out.video, pipe.story(STORY, seed=2).video)


def test_a_story_from_a_first_frame(pipe):
    image = np.full((32, 32, 3), 200, np.uint8)
    out = pipe.story(STORY[:2], seed=0, image=image, sampling=Sampling(greedy=True))
    assert out.video.shape[0] == 17 and out.segments[0]["windows"][0]["task"] == "i2v"


def test_a_story_can_continue_the_models_own_codes(pipe, monkeypatch):
    given, made = [], []
    real = pipe.continue_codes

    def spy(codes, prompt=None, **kwargs):
        given.append(np.array(codes))
        out = real(codes, prompt, **kwargs)
        made.append(out.codes[0])
        return out

    monkeypatch.setattr(pipe, "continue_codes", spy)
    pieces = list(pipe.iter_story(STORY, seed=1, context="codes"))
    first = pipe.text_to_video(STORY[0].prompt, num_frames=9, seed=pieces[0].seed)
    # every later window: the first latent frame re-encoded from the decoded frame, then the model's own last codes
    assert len(given) == len(pieces) - 1 == 3
    np.testing.assert_array_equal(given[0][1:], first.codes[0][-1:])
    for before, after in zip(made, given[1:]):
        np.testing.assert_array_equal(after[1:], before[-1:])
    assert all(p.context == {**p.context, "own_codes": 1} for p in pieces[1:])
    out = pipe.story(STORY, seed=1, context="codes")
    assert out.video.shape == (21, 32, 32, 3) and out.info["context"] == "codes"
    np.testing.assert_array_equal(out.video, np.concatenate([p.frames for p in pieces]))
    with pytest.raises(PipelineInputError, match="story context 'latents'"):
        pipe.story(STORY, context="latents")
    with pytest.raises(PipelineInputError, match=r"expected integer codes of shape \(t, 4, 4\)"):
        real(np.zeros((1, 3, 3), np.int64), "x")
    with pytest.raises(PipelineInputError, match="outside the codebook"):
        real(np.full((2, 4, 4), 10**6), "x")


def test_a_story_can_anchor_each_window_on_its_first_frame(pipe, monkeypatch):
    plain = pipe.story(STORY, seed=1)
    given = []
    real = pipe.continue_video

    def spy(video, prompt=None, **kwargs):
        given.append(np.array(video))
        return real(video, prompt, **kwargs)

    monkeypatch.setattr(pipe, "continue_video", spy)
    out = pipe.story(STORY, seed=1, context="anchor")
    assert out.video.shape == plain.video.shape == (21, 32, 32, 3) and out.info["context"] == "anchor"
    np.testing.assert_array_equal(out.video[:9], plain.video[:9])  # the first window is the same text-to-video
    # every later window: the story's first frame, then the last 4 frames made (the context's second latent frame)
    assert len(given) == 3 and all(len(g) == 5 for g in given)
    for g, made in zip(given, (9, 13, 17)):
        np.testing.assert_array_equal(g[0], out.video[0])
        np.testing.assert_array_equal(g[1:], out.video[made - 4:made])
    windows = [w for s in out.segments[1:] for w in s["windows"]]
    assert [w["context"] for w in windows] == [{"latent_frames": 2, "frames": [made - 4, made], "anchor_frame": 0}
                                               for made in (9, 13, 17)]
    assert not np.array_equal(out.video, plain.video)


def test_a_story_can_keep_the_best_of_n_windows_by_a_critic(pipe):
    plain = pipe.story(STORY, seed=1)
    seen = []

    def last(window):  # keeps the last candidate; sees the frames before and every candidate's frames and codes
        seen.append(window)
        return len(window.frames) - 1

    out = pipe.story(STORY, seed=1, candidates=3, choose=last)
    assert out.video.shape == plain.video.shape == (21, 32, 32, 3)
    np.testing.assert_array_equal(out.video[:9], plain.video[:9])  # the first window has no candidates
    assert len(seen) == 3 and all(len(w.frames) == len(w.codes) == 3 for w in seen)
    first = seen[0]
    assert first.prompt == STORY[1].prompt and first.context_latent_frames == 2
    np.testing.assert_array_equal(first.before[-5:], plain.video[4:9])
    for window in seen:  # every window's critic sees the story's first frame, a reference that does not drift
        np.testing.assert_array_equal(window.first, plain.video[0])
    assert all(f.shape == (4, 32, 32, 3) for f in first.frames) and first.codes[0].shape == (3, 4, 4)
    # sample 0 of a window is the window a story without candidates makes (its codes; decoding in a batch of 3 may
    # round a pixel the other way); the kept one goes on in the video
    alone = pipe.continue_video(plain.video[4:9], STORY[1].prompt, num_frames=9,
                                seed=plain.segments[1]["windows"][0]["seed"])
    np.testing.assert_array_equal(first.codes[0], alone.codes[0])
    assert np.abs(first.frames[0].astype(int) - plain.video[9:13]).max() <= 1
    for window, made in zip(seen, (9, 13, 17)):
        np.testing.assert_array_equal(out.video[made:made + 4], window.frames[-1])
    windows = [w for s in out.segments[1:] for w in s["windows"]]
    assert [w["context"]["candidate"] for w in windows] == [[2, 3]] * 3
    assert out.info["candidates"] == 3 and out.info["choose"] == "last"
    assert np.abs(pipe.story(STORY, seed=1, candidates=3, choose=lambda w: 0).video.astype(int) - plain.video).max() <= 1
    with pytest.raises(PipelineInputError, match="candidates=2 needs a choose function"):
        pipe.story(STORY, candidates=2)
    with pytest.raises(PipelineInputError, match="candidates 0: expected a positive integer"):
        pipe.story(STORY, candidates=0)
    with pytest.raises(PipelineInputError, match=r"choose returned 3: expected a candidate's index, 0 \.\. 2"):
        pipe.story(STORY, candidates=3, choose=lambda w: 3)


def test_generate_story_writes_the_video_sheet_and_sidecar(pipe, tmp_path, capsys):
    story = tmp_path / "story.txt"
    story.write_text("9f: a red circle moves to the right\n1s: a blue square moves up\n")
    out = tmp_path / "story.mp4"
    assert main(["generate", "--story", str(story), "--model", str(pipe.model.path), "-o", str(out), "--seed", "3",
                 "--no-progress"]) == 0
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["task"] == "story" and sidecar["story"] == str(story) and sidecar["frames"] == 17
    assert [(s["prompt"], s["requested"], s["start_frame"], s["frames"]) for s in sidecar["segments"]] == [
        ("a red circle moves to the right", {"frames": 9}, 0, 9), ("a blue square moves up", {"seconds": 1.0}, 9, 8)]
    assert sidecar["segments"][1]["start_s"] == pytest.approx(9 / 8)
    assert len(read_video(out)) == 17 and out.with_suffix(".png").is_file()
    expected = pipe.story(read_story(story), seed=3)  # the CLI streams what the library call returns whole
    from reelm.generation.outputs import frames_digest
    assert sidecar["frames_sha256"] == frames_digest(expected.video)
    assert "2 segments" in capsys.readouterr().out


def test_generate_story_refuses_flags_it_cannot_honour(pipe, tmp_path, capsys):
    story = tmp_path / "story.txt"
    story.write_text("9f: a red circle\n")
    code = main(["generate", "a prompt", "--story", str(story), "--frames", "9", "--model", str(pipe.model.path),
                 "-o", str(tmp_path / "x.mp4"), "--no-progress"])
    err = capsys.readouterr().err
    assert code != 0 and "drop PROMPT, --frames" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.mp4").exists()
    assert main(["generate", "a prompt", "--story-context", "codes", "--model", str(pipe.model.path),
                 "-o", str(tmp_path / "x.mp4"), "--no-progress"]) != 0
    assert "--story-context is for stories" in capsys.readouterr().err


def test_memory_stays_flat_in_the_story_length(pipe):
    def peak(segments: int) -> tuple[int, int]:
        story = [StorySegment(f"a red circle moves {'up' if i % 2 else 'down'}", frames=4 if i else 9)
                 for i in range(segments)]
        tracemalloc.start()
        made, frames = 0, []
        for piece in pipe.iter_story(story, seed=0):
            made += len(piece.frames)
            frames.append(weakref.ref(piece.frames))
        del piece
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        gc.collect()
        assert made == 9 + 4 * (segments - 1)
        return top, sum(ref() is not None for ref in frames)

    peak(2)  # warm: first-call allocations are not the story's
    (short, _), (long, alive) = peak(4), peak(32)
    assert alive == 0  # no window's frames are held once the caller lets them go (the frames live in torch memory)
    assert long < 1.3 * short, (short, long)  # nor anything else that grows with the story (Python and numpy memory)
