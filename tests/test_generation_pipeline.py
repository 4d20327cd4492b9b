"""The generation pipeline and its commands: a model folder in, videos and captions out.

A tiny model folder is made here without training (a random video tokenizer, a layout fitted
on captions, a random LM, exported as ``reelm lm train`` exports), so every test runs in seconds.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from reelm.core.checkpoint_format import CheckpointError, write_meta
from reelm.cli import main
from reelm.data.synthetic.world import SyntheticWorld, WorldConfig
from reelm.data.token_layout import Task
from reelm.data.video_read import read_video
from reelm.data.video_write import write_mp4
from reelm.generation import VideoPipeline
from reelm.generation.model_folder import load_model_folder
from conftest import child_env, free_port, make_model_folder
from reelm.lm.sampling import Sampling
from reelm.tokenizer.tokenizer_checkpoint import save_tokenizer
from reelm.tokenizer.model import PRESETS, VideoTokenizer

GREEDY = Sampling(greedy=True)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_model_folder(tmp_path_factory.mktemp("gen"))


@pytest.fixture(scope="module")
def pipe(folder):
    return VideoPipeline.from_pretrained(folder, device="cpu")


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    clip = SyntheticWorld(WorldConfig(height=48, width=64, num_frames=20, seed=1)).clip(0)
    return write_mp4(tmp_path_factory.mktemp("clip") / "clip.mp4", clip.frames, fps=8)


def test_three_lines_from_a_model_folder_give_a_video(folder):
    pipe = VideoPipeline.from_pretrained(folder)  # the README's three lines
    out = pipe("a red circle moves to the left", seed=0)
    video = out.videos[0]
    assert video.shape == (9, 32, 32, 3) and video.dtype == np.uint8
    parsed = pipe.layout.parse(out.sequences[0])
    assert parsed.task is Task.T2V and parsed.text == "a red circle moves to the left"
    np.testing.assert_array_equal(parsed.video, out.codes[0])  # the sequence is valid and is the video's codes
    assert out.info["model"]["video_tokenizer"]["fingerprint"] == pipe.layout.video_tokenizer["fingerprint"]


def test_same_seed_same_video_and_batches_equal_one_by_one_under_greedy(pipe):
    a = pipe("a blue square moves up", seed=3)
    b = pipe("a blue square moves up", seed=3)
    np.testing.assert_array_equal(a.videos[0], b.videos[0])
    prompts = ["a red circle moves up", "a green square moves to the left", "a blue circle"]
    batched = pipe.text_to_video(prompts, sampling=GREEDY, batch_size=3)
    alone = [pipe.text_to_video([p], sampling=GREEDY, batch_size=1).codes[0] for p in prompts]
    for got, want in zip(batched.codes, alone):
        np.testing.assert_array_equal(got, want)
    assert batched.prompts == prompts


def test_a_sampled_video_depends_on_its_seed_prompt_and_number_not_on_its_batch(pipe, tmp_path):
    """The same (seed, prompt, sample number) gives the same codes alone, in a batch of 3, or third in a prompt
    file; the sidecar records each sample's own seed."""
    prompts = ["a red circle moves up", "a green square moves to the left", "a blue circle"]
    together = pipe.text_to_video(prompts, seed=0, batch_size=3, num_samples=2)
    for i, prompt in enumerate(prompts):
        alone = pipe.text_to_video([prompt], seed=0, batch_size=1, num_samples=2)
        for k in range(2):
            np.testing.assert_array_equal(together.codes[2 * i + k], alone.codes[k])
        assert together.info["sample_seeds"][2 * i:2 * i + 2] == alone.info["sample_seeds"]
    assert len(set(together.info["sample_seeds"])) == 6  # every sample its own draw
    other = pipe.text_to_video([prompts[0]], seed=1, batch_size=1)
    assert not np.array_equal(other.codes[0], together.codes[0])
    file = tmp_path / "prompts.txt"
    file.write_text("a blue circle\na red circle moves up\n")
    out = tmp_path / "many.mp4"
    assert main(["generate", "--prompts", str(file), "--model", str(pipe.model.path), "-o", str(out), "--seed", "0",
                 "--batch-size", "2", "--no-progress"]) == 0
    second = json.loads((tmp_path / "many-001-00.json").read_text())
    assert second["prompt"] == "a red circle moves up" and second["sample_seed"] == together.info["sample_seeds"][0]
    from reelm.data.video_read import read_video as read
    assert read(tmp_path / "many-001-00.mp4").shape == together.videos[0].shape


def test_any_sample_of_a_prompt_can_be_made_alone_by_its_number(pipe, clip_file):
    prompts = ["a red circle moves up", "a blue circle"]
    together = pipe.text_to_video(prompts, seed=0, num_samples=3, num_frames=15)  # two windows
    alone = pipe.text_to_video([prompts[1], prompts[0]], seed=0, sample_numbers=[2, 1], num_frames=15)
    np.testing.assert_array_equal(alone.codes[0], together.codes[5])
    np.testing.assert_array_equal(alone.codes[1], together.codes[1])
    assert alone.info["sample_numbers"] == [2, 1] and alone.info["sample_seeds"] == [together.info["sample_seeds"][i]
                                                                                       for i in (5, 1)]
    first = read_video(clip_file, num_frames=1)[0]
    both = pipe.image_to_video(first, "a red circle", seed=0, num_samples=2)
    second = pipe.image_to_video(first, "a red circle", seed=0, sample_numbers=[1])
    np.testing.assert_array_equal(second.codes[0], both.codes[1])
    with pytest.raises(Exception, match="sample_numbers with num_samples=2"):
        pipe.text_to_video(prompts, num_samples=2, sample_numbers=[0, 1])
    with pytest.raises(Exception, match="3 numbers for 2 prompts"):
        pipe.text_to_video(prompts, sample_numbers=[0, 1, 2])


def _generate_args(pipe, prompts_file, out, *extra):
    return ["generate", "--prompts", str(prompts_file), "--model", str(pipe.model.path), "-o", str(out), "--seed", "0",
            "--no-progress", *extra]


def test_a_killed_prompts_run_resumes_with_skip_existing_and_gives_the_same_videos(pipe, tmp_path, monkeypatch,
                                                                                   capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle moves up\na blue circle\na green square moves to the left\n")
    assert main(_generate_args(pipe, prompts, tmp_path / "whole" / "v.mp4", "--num-samples", "2")) == 0
    calls = []
    real = VideoPipeline.text_to_video

    def killed_after_two_batches(self, *args, **kwargs):
        calls.append(kwargs["sample_numbers"])
        if len(calls) > 2:
            raise KeyboardInterrupt  # the job is killed during its third batch
        return real(self, *args, **kwargs)

    monkeypatch.setattr(VideoPipeline, "text_to_video", killed_after_two_batches)
    killed = tmp_path / "killed" / "v.mp4"
    assert main(_generate_args(pipe, prompts, killed, "--num-samples", "2", "--batch-size", "1")) == 130
    written = sorted(p.name for p in killed.parent.glob("*.json"))
    assert written == ["v-000-00.json", "v-000-01.json", "v-001-00.json", "v-001-01.json"]  # each batch as it ended
    before = {p: p.stat().st_mtime_ns for p in killed.parent.iterdir()}
    monkeypatch.setattr(VideoPipeline, "text_to_video", real)
    capsys.readouterr()
    assert main(_generate_args(pipe, prompts, killed, "--num-samples", "2", "--batch-size", "1",
                               "--skip-existing")) == 0
    assert "4 of 6 video(s) already written, skipped" in capsys.readouterr().out
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())  # what was written is not touched
    for name in (f"v-{p:03d}-{s:02d}" for p in range(3) for s in range(2)):
        a, b = (json.loads((d / f"{name}.json").read_text()) for d in (killed.parent, tmp_path / "whole"))
        assert a["frames_sha256"] == b["frames_sha256"]  # the same frames, whichever run made them
        assert a["sample_seed"] == b["sample_seed"] and a["sample"] == b["sample"]
    assert main(_generate_args(pipe, prompts, killed, "--num-samples", "2", "--skip-existing")) == 0
    assert "nothing left to generate" in capsys.readouterr().out


def test_vbench_naming_writes_prompt_named_videos_into_a_folder(pipe, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle moves up\na blue circle\n")
    out = tmp_path / "vbench"
    assert main(_generate_args(pipe, prompts, out, "--num-samples", "2", "--naming", "vbench")) == 0
    assert sorted(p.name for p in out.glob("*.mp4")) == ["a blue circle-0.mp4", "a blue circle-1.mp4",
                                                         "a red circle moves up-0.mp4", "a red circle moves up-1.mp4"]
    assert sorted(p.name for p in out.iterdir() if not p.suffix) == ["reelm"]  # nothing else among the videos
    sidecar = json.loads((out / "reelm" / "a blue circle-1.json").read_text())
    assert sidecar["prompt"] == "a blue circle" and sidecar["sample"] == 1
    prompts.write_text("a blue circle\na blue circle\n")
    assert main(_generate_args(pipe, prompts, tmp_path / "dup", "--naming", "vbench")) == 1
    assert "repeats prompt 1" in capsys.readouterr().err
    assert main(_generate_args(pipe, prompts, tmp_path / "v.mp4", "--naming", "vbench")) == 1
    assert "-o is the folder" in capsys.readouterr().err


@pytest.mark.slow
def test_prompts_split_across_torchrun_processes_give_the_one_process_videos(pipe, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle moves up\na blue circle\na green square moves to the left\n")
    assert main(_generate_args(pipe, prompts, tmp_path / "one" / "v.gif", "--num-samples", "2")) == 0
    torchrun, reelm = (str(Path(sys.executable).parent / name) for name in ("torchrun", "reelm"))
    done = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", free_port(), reelm,
                           *_generate_args(pipe, prompts, tmp_path / "two" / "v.gif", "--num-samples", "2")],
                          env=child_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rank 1 of 2" in done.stdout and "rank 0 of 2" in done.stdout
    names = sorted(p.name for p in (tmp_path / "one").glob("*.gif"))
    assert len(names) == 6 and names == sorted(p.name for p in (tmp_path / "two").glob("*.gif"))
    for name in names:
        np.testing.assert_array_equal(read_video(tmp_path / "one" / name), read_video(tmp_path / "two" / name))


def test_longer_videos_slide_window_by_window_to_the_requested_length(pipe):
    out = pipe("a red circle moves to the left", num_frames=27, seed=0, num_samples=2)  # 3x the training length
    assert [v.shape for v in out.videos] == [(27, 32, 32, 3)] * 2
    assert out.info["windows"] > 1 and [c.shape for c in out.codes] == [(8, 4, 4)] * 2
    odd = pipe("a red circle", num_frames=12, seed=0)  # not 1 + 4k: generated to the next latent frame, then cut
    assert odd.videos[0].shape[0] == 12


def test_image_to_video_keeps_the_first_latent_frame(pipe, clip_file):
    first = read_video(clip_file, num_frames=1)
    out = pipe("a red circle", image=first[0], seed=0)
    expected = pipe.encode(pipe.prepare_frames(first))
    np.testing.assert_array_equal(out.codes[0][:1], expected)
    assert out.videos[0].shape == (9, 32, 32, 3)
    assert pipe.layout.parse(out.sequences[0]).task is Task.I2V


def test_continuation_keeps_the_context(pipe, clip_file):
    out = pipe(video=clip_file, context_frames=1, seed=0)
    context = pipe.encode(pipe.prepare_frames(pipe._read(clip_file, what="video", last=1)))
    np.testing.assert_array_equal(out.codes[0][:1], context)
    parsed = pipe.layout.parse(out.sequences[0])
    assert parsed.task is Task.V2V and len(parsed.context) == 1 and len(parsed.video) == 2
    with pytest.raises(Exception, match="context_frames"):
        pipe(video=clip_file, context_frames=3)


def test_a_caption_decodes_to_text(pipe, clip_file):
    out = pipe.caption([clip_file, read_video(clip_file, num_frames=9)], max_tokens=6)
    assert len(out.captions) == 2 and all(isinstance(c, str) for c in out.captions)
    for sequence in out.sequences:
        parsed = pipe.layout.parse(sequence)
        assert parsed.task is Task.V2T and len(parsed.text_ids) <= 6


def test_a_folder_without_its_tokenizer_or_with_another_one_is_refused(folder, tmp_path):
    alone = tmp_path / "alone"
    shutil.copytree(folder, alone)
    shutil.rmtree(alone / "video_tokenizer")
    with pytest.raises(CheckpointError, match="holds no video tokenizer"):
        load_model_folder(alone)
    torch.manual_seed(5)
    save_tokenizer(VideoTokenizer(PRESETS["tiny"]()).eval(), tmp_path / "other")
    with pytest.raises(CheckpointError, match="not the video tokenizer this model was trained on"):
        load_model_folder(alone, video_tokenizer=tmp_path / "other")
    assert load_model_folder(alone, video_tokenizer=folder / "video_tokenizer").clip.size == 32
    # A tokenizer whose weights differ from what its own reelm.json records is refused too.
    bad = tmp_path / "bad"
    shutil.copytree(folder / "video_tokenizer", bad)
    meta = json.loads((bad / "reelm.json").read_text())
    write_meta(bad, "video_tokenizer", meta["config"], **{**{k: v for k, v in meta.items()
                                                              if k not in ("config", "kind", "format_version",
                                                                           "reelm_version")},
                                                           "fingerprint": "0" * 16})
    with pytest.raises(CheckpointError):
        load_model_folder(alone, video_tokenizer=bad)


def test_generate_command_writes_video_sheet_and_sidecar(folder, tmp_path, capsys):
    out = tmp_path / "samples" / "new" / "out.mp4"  # -o makes its folder, as --out does
    assert main(["generate", "a red circle moves to the left", "--model", str(folder), "-o", str(out),
                 "--seed", "7", "--top-k", "50", "--guidance-scale", "2", "--negative-prompt", "a red circle",
                 "--no-progress"]) == 0
    assert read_video(out).shape == (9, 32, 32, 3)
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["prompt"] == "a red circle moves to the left" and sidecar["seed"] == 7
    assert sidecar["guidance_scale"] == 2.0 and sidecar["sampling"]["top_k"] == 50
    assert sidecar["negative_prompt"] == "a red circle"
    assert sidecar["model"]["video_tokenizer"]["fingerprint"] and sidecar["tokens"]["per_video"] == 48
    assert sidecar["timings"]["total_s"] > 0 and sidecar["frames"] == 9
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n\na blue square moves up\n")
    assert main(["generate", "--prompts", str(prompts), "--num-samples", "2", "--model", str(folder),
                 "-o", str(tmp_path / "many.gif"), "--no-progress"]) == 0
    assert sorted(p.name for p in tmp_path.glob("many-*.gif")) == \
        ["many-000-00.gif", "many-000-01.gif", "many-001-00.gif", "many-001-01.gif"]


@pytest.mark.parametrize("args, message", [
    (["-o", "x.avi"], "cannot write '.avi'"),
    (["-o", "empty.txt/x.mp4"], "cannot make its folder"),
    (["-o", "x.mp4", "--prompts", "empty.txt"], "holds no prompts"),
    (["-o", "x.mp4", "--prompts", "latin1.txt"], "not UTF-8"),
    (["-o", "x.mp4", "--frames", "0"], "--frames 0"),
])
def test_generate_command_refuses_bad_arguments_in_one_line(folder, tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.txt").write_text("\n\n")
    (tmp_path / "latin1.txt").write_bytes("un cercle rouge, été".encode("latin-1"))
    prompt = [] if "--prompts" in args else ["a red circle"]
    assert main(["generate", *prompt, "--model", str(folder), "--no-progress", *args]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("reelm: error:") and message in err and "\n" not in err


def test_caption_command_prints_and_writes_json(folder, clip_file, tmp_path, capsys):
    target = tmp_path / "captions.json"
    assert main(["caption", str(clip_file), "--model", str(folder), "--json", str(target), "--no-progress",
                 "--max-tokens", "5"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and printed[0].startswith(f"{clip_file}: ")
    saved = json.loads(target.read_text())
    assert saved["captions"][0]["video"] == str(clip_file) and saved["max_tokens"] == 5


def test_the_readme_pipeline_example_runs_as_written(folder, tmp_path, monkeypatch):
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.search(r"<!-- readme:pipeline -->\n```python\n(.*?)```", readme, flags=re.S).group(1)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "lm").symlink_to(folder)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["out"].videos[0].shape == (9, 32, 32, 3) and scope["out"].frames.shape == (2, 9, 32, 32, 3)
    assert (tmp_path / "red_circle.mp4").stat().st_size > 0


def test_a_hub_style_name_is_a_local_error_and_never_downloads(tmp_path, monkeypatch):
    """``from_pretrained`` (and the model loader under it) take local folders only: a Hub repo id is refused in
    one line, and no network connection is even tried."""
    import socket

    from reelm.core.errors import ReelmError
    from reelm.lm.lm_checkpoint import load_hf_model

    tried = []

    def no_network(*args, **kwargs):
        tried.append(args)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ReelmError) as caught:
        VideoPipeline.from_pretrained("someone/video-model", device="cpu")
    assert "someone/video-model" in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(CheckpointError, match="someone/video-model"):
        load_hf_model("someone/video-model")
    from reelm.eval.clip_score import ClipModelError, ClipScorer

    with pytest.raises(ClipModelError, match="openai/clip-vit-base-patch32: not a CLIP model folder here"):
        ClipScorer("openai/clip-vit-base-patch32")
    assert tried == []


def test_negative_prompt_is_guidances_other_branch(pipe):
    settings = dict(seed=4, guidance_scale=3.0, sampling=GREEDY)
    empty = pipe("a red circle moves to the left", **settings)
    same = pipe("a red circle moves to the left", negative_prompt=None, **settings)
    np.testing.assert_array_equal(empty.codes[0], same.codes[0])  # None: the empty text, as before
    other = pipe("a red circle moves to the left", negative_prompt="a red circle", **settings)
    assert other.info["negative_prompt"] == "a red circle"
    zero = pipe("a red circle moves to the left", negative_prompt="a blue square", seed=4, guidance_scale=0.0,
                sampling=GREEDY)  # scale 0 samples from the negative branch alone
    np.testing.assert_array_equal(zero.codes[0], pipe("a blue square", seed=4, guidance_scale=1.0,
                                                       sampling=GREEDY).codes[0])
    batch = pipe.text_to_video(["a red circle", "a blue square"], negative_prompt=["a red", "a blue"], **settings)
    assert len(batch.videos) == 2
    with pytest.raises(Exception, match="negative_prompt"):
        pipe.text_to_video(["a red circle", "a blue square"], negative_prompt=["a red"], **settings)
