"""Bad arguments and mismatched artifacts: each command refuses them before doing any work, in one line that
names the argument or file, the reason and what to do next."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
import torch

from bad_media import make_corpus
from entry_points import run_cli
from test_lm_train import CAPTIONS, make_shards

from reelm.data.shards import LAYOUT_DIR
from reelm.data.text_tokenizer import train_text_tokenizer
from reelm.data.token_layout import TokenLayout
from reelm.tokenizer.tokenizer_checkpoint import save_tokenizer
from reelm.tokenizer.model import PRESETS, VideoTokenizer


@pytest.fixture(scope="module", autouse=True)
def _one_thread(single_thread_isolated):
    yield


@pytest.fixture(scope="module")
def world(tmp_path_factory, media_env):
    root = tmp_path_factory.mktemp("bad_arguments")
    clip = make_corpus(root / "media", ["unicode_name"])["unicode_name"]
    (root / "empty.txt").write_text("\n  \n")
    (root / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    torch.manual_seed(5)
    other = VideoTokenizer(dataclasses.replace(PRESETS["tiny"](), channels=(8, 8, 16)))
    save_tokenizer(other, root / "other_tokenizer")
    assert run_cli(["tokenizer", "encode", str(clip), "--tokenizer", str(media_env.tokenizer), "-o",
                    str(root / "codes.npz"), "--no-progress"]).kind == "used"
    make_shards(root / "shards", 20)
    shutil.copytree(root / "shards", root / "other_shards")  # the same clips under another token layout
    shutil.rmtree(root / "other_shards" / LAYOUT_DIR)
    text = train_text_tokenizer([c.upper() + " now" for c in CAPTIONS] * 3, vocab_size=280)
    old = TokenLayout.load(root / "shards" / LAYOUT_DIR)
    TokenLayout.build(text, codebook_size=old.codebook_size, latent_hw=old.latent_hw,
                      video_tokenizer=old.video_tokenizer).save(root / "other_shards" / LAYOUT_DIR)
    return {"root": root, "clip": str(clip), "tok": str(media_env.tokenizer), "model": str(media_env.model),
            "other_tok": str(root / "other_tokenizer"), "codes": str(root / "codes.npz"),
            "shards": str(root / "shards"), "other_shards": str(root / "other_shards")}


# (argv with {placeholders}, what the line must say: the culprit, then what to do)
CASES = {
    "unknown preset (tokenizer train)": (["tokenizer", "train", "--preset", "huge", "--out", "{root}/r"],
                                         ["'huge'", "choose from"]),
    "zero steps (tokenizer train)": (["tokenizer", "train", "--preset", "tiny", "--steps", "0", "--out", "{root}/r"],
                                     ["steps=0", "at least 1"]),
    "negative steps (tokenizer train)": (["tokenizer", "train", "--preset", "tiny", "--steps", "-5", "--out",
                                          "{root}/r"], ["steps=-5", "at least 1"]),
    "unknown preset (lm train)": (["lm", "train", "--preset", "huge", "--data", "{shards}", "--out", "{root}/r"],
                                  ["'huge'", "choose from"]),
    "zero steps (lm train)": (["lm", "train", "--preset", "tiny", "--steps", "0", "--data", "{shards}", "--out",
                               "{root}/r"], ["steps=0", "at least 1"]),
    "zero frames (generate)": (["generate", "a red circle", "--frames", "0", "--model", "{model}", "-o",
                                "{root}/g.mp4"], ["--frames 0", "at least 1"]),
    "empty prompt file": (["generate", "--prompts", "{root}/empty.txt", "--model", "{model}", "-o", "{root}/g.mp4"],
                          ["empty.txt", "one per line"]),
    "prompt file not UTF-8": (["generate", "--prompts", "{root}/latin1.txt", "--model", "{model}", "-o",
                               "{root}/g.mp4"], ["latin1.txt", "not UTF-8", "save it as UTF-8"]),
    "missing prompt file": (["generate", "--prompts", "{root}/nope.txt", "--model", "{model}", "-o", "{root}/g.mp4"],
                            ["nope.txt", "not found", "one prompt per line"]),
    "output under a file, not a folder (generate)": (["generate", "a red circle", "--model", "{model}", "-o",
                                               "{root}/empty.txt/g.mp4"], ["empty.txt/g.mp4", "cannot make its folder"]),
    "output under a file, not a folder (encode)": (["tokenizer", "encode", "{clip}", "--tokenizer", "{tok}", "-o",
                                             "{root}/empty.txt/c.npz"], ["empty.txt/c.npz", "cannot make its folder"]),
    "output under a file, not a folder (reconstruct)": (["tokenizer", "reconstruct", "{clip}", "--tokenizer", "{tok}", "-o",
                                                  "{root}/empty.txt/r.mp4"], ["empty.txt/r.mp4", "cannot make its folder"]),
    "output under a file, not a folder (decode)": (["tokenizer", "decode", "{codes}", "--tokenizer", "{tok}", "-o",
                                             "{root}/empty.txt/d.mp4"], ["empty.txt/d.mp4", "cannot make its folder"]),
    "output under a file, not a folder (caption --json)": (["caption", "{clip}", "--model", "{model}", "--json",
                                                     "{root}/empty.txt/c.json"], ["empty.txt/c.json", "cannot make its folder"]),
    "unknown output extension (generate)": (["generate", "a red circle", "--model", "{model}", "-o", "{root}/g.avi"],
                                            ["g.avi", ".gif or .mp4"]),
    "unknown output extension (encode)": (["tokenizer", "encode", "{clip}", "--tokenizer", "{tok}", "-o",
                                           "{root}/c.txt"], ["c.txt", ".npz"]),
    "unknown output extension (reconstruct)": (["tokenizer", "reconstruct", "{clip}", "--tokenizer", "{tok}", "-o",
                                                "{root}/r.avi"], ["r.avi", ".gif or .mp4"]),
    "unknown output extension (decode)": (["tokenizer", "decode", "{codes}", "--tokenizer", "{tok}", "-o",
                                           "{root}/d.webm"], ["d.webm", ".gif or .mp4"]),
    "zero fps (encode)": (["tokenizer", "encode", "{clip}", "--tokenizer", "{tok}", "-o", "{root}/c.npz", "--fps",
                           "0"], ["--fps 0", "positive"]),
    "zero size (data tokenize)": (["data", "tokenize", "--video-tokenizer", "{tok}", "--num-clips", "2", "--size",
                                   "0", "--out", "{root}/s"], ["size 0 (--size)", "multiple of 8"]),
    "frames not 1 + 4k (data tokenize)": (["data", "tokenize", "--video-tokenizer", "{tok}", "--num-clips", "2",
                                           "--num-frames", "6", "--out", "{root}/s"], ["num_frames 6", "1 + 4k"]),
    "not a run folder (encode --tokenizer)": (["tokenizer", "encode", "{clip}", "--tokenizer", "{root}/nothing", "-o",
                                               "{root}/c.npz"], ["nothing", "not found", "give a run folder"]),
    "an LM folder as --tokenizer": (["tokenizer", "encode", "{clip}", "--tokenizer", "{model}", "-o", "{root}/c.npz"],
                                    ["'lm' checkpoint", "give a video_tokenizer"]),
    "shards as --model": (["generate", "a red circle", "--model", "{shards}", "-o", "{root}/g.mp4"],
                          ["shards", "give the --out folder of a training run"]),
    "LM checkpoint with another video tokenizer": (["generate", "a red circle", "--model", "{model}",
                                                    "--video-tokenizer", "{other_tok}", "-o", "{root}/g.mp4"],
                                                   ["not the video tokenizer", "leave --video-tokenizer out"]),
    "codes file from another tokenizer": (["tokenizer", "decode", "{codes}", "--tokenizer", "{other_tok}", "-o",
                                           "{root}/d.mp4"], ["codes.npz", "another tokenizer", "use the tokenizer"]),
    "shards folder of another job (data tokenize)": (["data", "tokenize", "--video-tokenizer", "{other_tok}",
                                                      "--data", "synthetic", "--num-clips", "1", "--out", "{shards}"],
                                                     ["shards", "another video tokenizer", "use a new --out"]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_arguments_are_refused_in_one_line_saying_what_to_do(name, world):
    argv, says = CASES[name]
    argv = [part.format(**world) for part in argv]
    before = sorted(p.name for p in world["root"].iterdir())
    outcome = run_cli(argv)
    assert outcome.kind == "refused" and outcome.error_lines == 1, f"{name}: {outcome.kind}: {outcome.message}"
    for text in says:
        assert text in outcome.message, f"{name}: {text!r} not in {outcome.message!r}"
    assert sorted(p.name for p in world["root"].iterdir()) == before  # nothing written


def test_lm_training_refuses_to_resume_on_shards_of_another_layout(world):
    run = f"{world['root']}/lm_run"
    common = ["lm", "train", "--preset", "tiny", "--out", run, "--no-progress", "--peak-flops", "1e11", "--set",
              "block_size=128", "--set", "micro_batch_size=2", "--set", "val_every=0", "--set", "compile=false"]
    assert run_cli([*common, "--data", world["shards"], "--steps", "1"]).kind == "used"
    outcome = run_cli([*common, "--data", world["other_shards"], "--steps", "1", "--resume"])
    assert outcome.kind == "refused" and outcome.error_lines == 1
    assert "token layout differs" in outcome.message and "resume on the same shards" in outcome.message
