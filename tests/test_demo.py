"""``reelm demo`` end to end at a minimal budget: every stage's outputs exist and are valid, a re-run reuses
finished stages, and a run killed (SIGKILL) mid-training resumes and finishes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reelm.data.video_read import read_video

from conftest import child_env

SMALL = ["--budget-minutes", "0.05", "--no-progress",
         "--set", "clip.size=32", "--set", "heldout_clips=4", "--set", "tokenizer_eval_clips=4", "--set", "eval_prompts=2",
         "--set", "eval_samples=1", "--set", "image_to_video=1", "--set", "continuation=1", "--set", "captions=2", "--set", "binding_clips=4",
         "--set", "chunk_rows=8", "--set", "text_vocab_size=300",
         "--set", "tokenizer_train.batch_size=2", "--set", "tokenizer_train.checkpoint_every=2",
         "--set", "lm_train.block_size=128", "--set", "lm_train.micro_batch_size=2",
         "--set", "lm_train.checkpoint_every=2", "--set", "lm_train.val_every=0", "--set", "lm_train.compile=false",
         "--set", "lm_train.log_every=1"]
STAGES = ("data", "tokenizer", "shards", "lm", "generate")


def _demo(out: Path, *extra: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = child_env()
    return subprocess.run([str(Path(sys.executable).parent / "reelm"), "demo", "--out", str(out), *SMALL, *extra],
                          capture_output=True, text=True, timeout=timeout, env=env)


def _kill_when(out: Path, path: str, *extra: str) -> None:
    """Start the demo and SIGKILL it as soon as ``out / path`` exists (a checkpoint mid-way through a stage)."""
    env = child_env()
    process = subprocess.Popen([str(Path(sys.executable).parent / "reelm"), "demo", "--out", str(out), *SMALL, *extra],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 300
    while not (out / path).exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.mark.slow
def test_demo_runs_every_stage_resumes_after_kills_and_reuses_finished_stages(tmp_path):
    out = tmp_path / "demo"
    _kill_when(out, "tokenizer/step-000002")  # killed during tokenizer training
    assert not (out / "stages" / "tokenizer.json").exists()
    _kill_when(out, "lm/step-000002")  # killed during LM training (the tokenizer and shards stages finish first)
    assert (out / "stages" / "shards.json").exists() and not (out / "stages" / "lm.json").exists()
    done = _demo(out)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = done.stdout
    assert "done before" in printed and "results (held-out prompts and clips)" in printed
    for stage in STAGES:
        record = json.loads((out / "stages" / f"{stage}.json").read_text())
        assert record["line"] and record["seconds"] >= 0
    # Every stage's outputs are there and valid.
    assert (out / "data" / "seen" / "manifest.jsonl").is_file() and (out / "data" / "heldout" / "contact_sheet.png").is_file()
    assert (out / "eval" / "tokenizer" / "summary.json").is_file()
    assert (out / "shards" / "video_tokenizer" / "model.safetensors").is_file()
    model = sorted((out / "lm").glob("step-*"))[-1]
    assert (model / "video_tokenizer" / "reelm.json").is_file() and json.loads((model / "reelm.json").read_text())["clip"]
    summary = json.loads((out / "eval" / "generate" / "summary.json").read_text())
    assert {"adherence", "temporal", "i2v", "v2v", "v2t", "v2t_held_out", "distribution", "protocol"} <= set(summary)
    assert set(summary["adherence"]) == {"seen", "held-out"}
    samples = [json.loads(line) for line in (out / "eval" / "generate" / "samples.jsonl").read_text().splitlines()]
    videos = [s["file"] for s in samples if "file" in s]
    assert videos and read_video(out / "eval" / "generate" / "samples" / videos[0]).shape[1:] == (32, 32, 3)
    page = (out / "report.html").read_text()
    assert "Results against the targets" in page and "eval/generate/report.html" in page
    assert "video-to-text, seen combinations" in page and "video-to-text, held-out combinations" in page
    from PIL import Image

    from reelm.demo.report_card import contact_sheet_for_docs

    written = out / "samples.png"  # README's docs/demo.png comes from this file of the default run
    assert written.stat().st_size <= 300_000 and Image.open(written).mode == "RGB"
    sheet = contact_sheet_for_docs(out, tmp_path / "demo.png", max_bytes=20_000)
    assert sheet.stat().st_size <= 20_000 and Image.open(sheet).mode == "RGB"
    # The LM resumed from its checkpoint: its log holds each step once.
    steps = [json.loads(line)["step"] for line in (out / "lm" / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["split"] == "train"]
    assert steps == sorted(set(steps))
    # A re-run reuses every finished stage; other settings are refused rather than mixed.
    again = _demo(out)
    assert again.returncode == 0 and again.stdout.count("done before") == len(STAGES)
    other = _demo(out, "--set", "eval_samples=3")
    assert other.returncode == 1 and "other settings" in other.stderr and "\n" not in other.stderr.strip()


def test_a_run_saved_before_a_setting_existed_resumes_as_its_default(tmp_path):
    import dataclasses

    from reelm.core.config import to_dict
    from reelm.core.errors import ReelmError
    from reelm.demo.demo_config import DemoConfig
    from reelm.demo.run import CONFIG_FILE, _check_settings

    saved = json.loads(json.dumps(to_dict(DemoConfig())))
    del saved["story_clips"]  # a folder made before training stories existed
    (tmp_path / CONFIG_FILE).write_text(json.dumps(saved))
    _check_settings(tmp_path, DemoConfig())
    with pytest.raises(ReelmError, match=r"\(story_clips differ\)"):
        _check_settings(tmp_path, dataclasses.replace(DemoConfig(), story_clips=5))
