"""Crash safety in both trainers: a damaged newest checkpoint is skipped for the one before, a full disk fails
in one line leaving the previous checkpoint intact, NaN/Inf steps are skipped (and stop the run when they
persist) without losing exact resume, and running out of memory says what to try."""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from entry_points import run_cli
from test_lm_train import make_shards
from test_lm_train import run as lm_run

from reelm.core.checkpoint_format import list_checkpoints, load_state, verify_checkpoint
from reelm.core.config import apply_overrides
from reelm.core.errors import ReelmError
from reelm.tokenizer.tokenizer_checkpoint import load_tokenizer
from reelm.tokenizer.model import PRESETS
from reelm.tokenizer.train import TokenizerTrainConfig, train

FAST = dataclasses.replace(PRESETS["tiny"](), channels=(8, 8, 16))
FAST_CLI = ["--preset", "tiny", "--set", "model.channels=[8,8,16]", "--num-frames", "5", "--size", "32",
            "--batch-size", "1", "--set", "warmup_steps=1", "--checkpoint-every", "1", "--no-progress"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread(single_thread_isolated):
    yield


def tok_cfg(steps: int, *settings: str) -> TokenizerTrainConfig:
    cfg = TokenizerTrainConfig(steps=steps, checkpoint_every=1, log_every=1, keep_last=10, batch_size=1, warmup_steps=1)
    return apply_overrides(cfg, ["clip.num_frames=5", "clip.size=32", *settings])


def raw(run: Path, step: int | None = None) -> dict:
    found = dict(list_checkpoints(run))
    return load_file(str(found[step if step is not None else max(found)] / "raw_model.safetensors"))


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """3 uninterrupted steps of the small tokenizer, a checkpoint after each."""
    out = tmp_path_factory.mktemp("straight") / "run"
    train(out, model=FAST, config=tok_cfg(3), progress=False)
    return out


# --- a damaged newest checkpoint -------------------------------------------------------------------


def _truncate(folder: Path) -> None:
    path = folder / "raw_model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _delete_state(folder: Path) -> None:
    (folder / "trainer_state.safetensors").unlink()


def _garble_meta(folder: Path) -> None:
    (folder / "reelm.json").write_text('{"format_version": 1, "kind": "video_tok')


@pytest.mark.parametrize("damage", [_truncate, _delete_state, _garble_meta], ids=["truncated", "deleted", "garbled"])
def test_a_damaged_newest_tokenizer_checkpoint_is_skipped_with_a_warning(damage, straight, tmp_path, capsys):
    run = tmp_path / "run"
    train(run, model=FAST, config=tok_cfg(3), progress=False, stop_at=2)
    damage(run / "step-000002")
    assert verify_checkpoint(run / "step-000002") is not None and verify_checkpoint(run / "step-000001") is None
    capsys.readouterr()
    train(run, resume=True, progress=False)
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith("reelm: warning: ") and "step-000002 is damaged" in warning[0]
    assert "skipping it for step-000001" in warning[0]
    assert_same(raw(run), raw(straight))  # step 2 trained again from step 1: nothing lost but time
    assert verify_checkpoint(run / "step-000002") is None  # and written whole again


def test_a_damaged_newest_lm_checkpoint_is_skipped_with_a_warning(tmp_path, capsys):
    make_shards(tmp_path / "shards", 20)
    common = ("checkpoint_every=2", "val_every=0", "compile=false")
    straight = lm_run(tmp_path / "shards", tmp_path / "straight", 4, *common)
    lm_run(tmp_path / "shards", tmp_path / "run", 4, *common)
    (tmp_path / "run" / "step-000004" / "optimizer-rank00000.safetensors").unlink()
    capsys.readouterr()
    lm_run(tmp_path / "shards", tmp_path / "run", 4, *common, resume=True)
    err = capsys.readouterr().err
    assert "reelm: warning: " in err and "step-000004 is damaged (optimizer-rank00000.safetensors is missing)" in err
    got = load_file(str(tmp_path / "run" / "step-000004" / "model.safetensors"))
    want = load_file(str(straight.checkpoint / "model.safetensors"))
    assert_same(got, want)


# --- a full disk -----------------------------------------------------------------------------------


def _disk_full_at(step: int, monkeypatch, module, name: str) -> None:
    """Make ``module.name`` (a writer) raise ENOSPC while checkpoint ``step`` is written."""
    original = getattr(module, name)

    def writer(*args, **kwargs):
        if any(f"step-{step:06d}" in str(a) for a in args):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, writer)


def test_a_full_disk_fails_tokenizer_training_in_one_line_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import reelm.tokenizer.train as tokenizer_train

    _disk_full_at(2, monkeypatch, tokenizer_train, "save_file")
    run = tmp_path / "run"
    outcome = run_cli(["tokenizer", "train", *FAST_CLI, "--steps", "3", "--out", str(run)])
    assert outcome.kind == "refused" and outcome.error_lines == 1
    assert "step-000002: saving failed (no space left on device: free some space" in outcome.message
    assert "the previous checkpoint step-000001 is intact" in outcome.message and "--resume" in outcome.message
    assert sorted(p.name for p in run.iterdir() if p.name.startswith((".step", "step"))) == ["step-000001"]
    assert verify_checkpoint(run / "step-000001") is None and load_tokenizer(run) is not None
    monkeypatch.undo()
    assert run_cli(["tokenizer", "train", *FAST_CLI, "--steps", "3", "--out", str(run), "--resume"]).kind == "used"
    assert [s for s, _ in list_checkpoints(run)] == [1, 2, 3]


def test_a_full_disk_fails_lm_training_in_one_line_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import reelm.lm.lm_checkpoint as lm_checkpoint

    make_shards(tmp_path / "shards", 20)
    _disk_full_at(4, monkeypatch, lm_checkpoint, "save_state")
    with pytest.raises(ReelmError) as info:
        lm_run(tmp_path / "shards", tmp_path / "run", 4, "checkpoint_every=2", "val_every=0", "compile=false")
    message = str(info.value)
    assert "\n" not in message and "step-000004: saving failed (no space left on device" in message
    assert "the previous checkpoint step-000002 is intact" in message
    names = sorted(p.name for p in (tmp_path / "run").iterdir() if "step" in p.name)
    assert names == ["step-000002"] and verify_checkpoint(tmp_path / "run" / "step-000002") is None


@pytest.fixture
def tiny_disk(tmp_path):
    """A 4 MiB tmpfs (root only; skipped where mounting is not allowed)."""
    mount = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()[:100]})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_really_full_disk_fails_in_one_line_and_the_previous_checkpoint_loads(tiny_disk):
    run = tiny_disk / "run"
    assert run_cli(["tokenizer", "train", *FAST_CLI, "--steps", "3", "--out", str(run), "--stop-at", "1"]).kind == "used"
    stats = os.statvfs(tiny_disk)
    filler = tiny_disk / "filler"
    filler.write_bytes(b"\0" * (stats.f_bavail * stats.f_frsize - 96 * 1024))  # ~96 KiB left: a log line, no checkpoint
    outcome = run_cli(["tokenizer", "train", *FAST_CLI, "--steps", "3", "--out", str(run), "--resume"])
    assert outcome.kind == "refused" and outcome.error_lines == 1, outcome.message
    assert "no space left on device" in outcome.message and "step-000001 is intact" in outcome.message
    assert [p.name for p in run.iterdir() if p.name.startswith(".step")] == []
    assert verify_checkpoint(run / "step-000001") is None and load_tokenizer(run) is not None
    filler.unlink()
    assert run_cli(["tokenizer", "train", *FAST_CLI, "--steps", "3", "--out", str(run), "--resume"]).kind == "used"


# --- NaN / Inf losses ------------------------------------------------------------------------------


def _nan_loss_at(steps, monkeypatch) -> None:
    """The tokenizer's loss is NaN at the given (0-based) steps."""
    from reelm.tokenizer.losses import TokenizerLoss

    original = TokenizerLoss.generator_loss

    def generator_loss(self, video, recon, quant, *, step, **kwargs):
        terms = original(self, video, recon, quant, step=step, **kwargs)
        if step in steps:
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    monkeypatch.setattr(TokenizerLoss, "generator_loss", generator_loss)


def test_a_nan_step_is_skipped_logged_and_resumes_exactly(tmp_path, monkeypatch, capsys):
    _nan_loss_at({1}, monkeypatch)  # the second step
    straight = tmp_path / "straight"
    train(straight, model=FAST, config=tok_cfg(3), progress=False)
    assert "step 2: the loss (nan) or its gradient is not finite; step skipped (1 in a row)" in capsys.readouterr().out
    assert_same(raw(straight, 2), raw(straight, 1))  # no update at the skipped step
    skipped = [r for r in map(__import__("json").loads, (straight / "metrics.jsonl").read_text().splitlines())
               if r.get("skipped")]
    assert [r["step"] for r in skipped] == [2]
    resumed = tmp_path / "resumed"
    train(resumed, model=FAST, config=tok_cfg(3), progress=False, stop_at=2)
    train(resumed, resume=True, progress=False)
    assert_same(raw(resumed), raw(straight))


def test_nan_steps_in_a_row_stop_the_run_with_the_checkpoints_intact(tmp_path, monkeypatch):
    _nan_loss_at(set(range(2, 100)), monkeypatch)
    run = tmp_path / "run"
    outcome = run_cli(["tokenizer", "train", *FAST_CLI, "--steps", "10", "--out", str(run), "--set",
                       "max_nonfinite_steps=3", "--set", "keep_last=10"])
    assert outcome.kind == "refused" and outcome.error_lines == 1
    assert "stopped at step 5: the loss or its gradient was NaN/Inf in 3 steps in a row" in outcome.message
    assert "step-000004, is intact" in outcome.message and "--set lr=" in outcome.message
    assert [s for s, _ in list_checkpoints(run)] == [1, 2, 3, 4]
    assert_same(raw(run, 4), raw(run, 2))  # steps 3 and 4 were skipped
    assert load_state(run / "step-000004", "trainer_state")["nonfinite_in_a_row"] == 2


def test_lm_nan_steps_are_skipped_then_stop_the_run(tmp_path, monkeypatch):
    import reelm.lm.train as lm_train

    make_shards(tmp_path / "shards", 20)
    original, calls = lm_train.token_losses, [0]

    def token_losses(logits, targets):
        calls[0] += 1
        losses = original(logits, targets)
        return losses * float("nan") if calls[0] >= 3 else losses  # from the third step on

    monkeypatch.setattr(lm_train, "token_losses", token_losses)
    with pytest.raises(ReelmError, match="stopped at step 4: the loss or its gradient was NaN/Inf in 2 steps"):
        lm_run(tmp_path / "shards", tmp_path / "run", 6, "checkpoint_every=1", "val_every=0", "compile=false",
               "max_nonfinite_steps=2", "zero_stage=0")
    steps = dict(list_checkpoints(tmp_path / "run"))
    assert sorted(steps) == [1, 2, 3]
    a, b = (load_file(str(steps[s] / "model.safetensors")) for s in (2, 3))
    assert_same(a, b) and all(torch.isfinite(v).all() for v in b.values())


# --- out of memory ---------------------------------------------------------------------------------


def _oom(*args, **kwargs):
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.1 GiB total capacity)")


def test_out_of_memory_says_what_to_try(tmp_path, monkeypatch, media_env):
    import reelm.lm.train as lm_train
    from reelm.lm.engine import GenerationEngine
    from reelm.tokenizer.train import TokenizerTrainer

    monkeypatch.setattr(TokenizerTrainer, "train_step", _oom)
    outcome = run_cli(["tokenizer", "train", *FAST_CLI, "--steps", "2", "--out", str(tmp_path / "tok")])
    assert outcome.kind == "refused" and outcome.error_lines == 1
    assert "out of GPU memory in 'reelm tokenizer train'" in outcome.message and "--batch-size" in outcome.message
    make_shards(tmp_path / "shards", 20)
    monkeypatch.setattr(lm_train, "train_step", _oom)
    outcome = run_cli(["lm", "train", "--preset", "tiny", "--data", str(tmp_path / "shards"), "--out",
                       str(tmp_path / "lm"), "--steps", "2", "--set", "block_size=128", "--peak-flops", "1e11",
                       "--no-progress"])
    assert outcome.kind == "refused" and "out of GPU memory in 'reelm lm train'" in outcome.message
    assert "micro_batch_size" in outcome.message and "activation_checkpointing" in outcome.message
    monkeypatch.setattr(GenerationEngine, "generate", _oom)
    outcome = run_cli(["generate", "a red circle", "--model", str(media_env.model), "-o", str(tmp_path / "g.mp4"),
                       "--no-progress"])
    assert outcome.kind == "refused" and "out of GPU memory in 'reelm generate'" in outcome.message
    assert "--batch-size" in outcome.message and not (tmp_path / "g.mp4").exists()
    shutil.rmtree(tmp_path / "tok", ignore_errors=True)
