"""SIGKILL and resume: tokenizer training, LM training and pre-tokenization are killed at seeded random points
(after a random checkpoint or chunk plus a random delay, and once in the middle of writing one), several
times each, then resumed with the same command. After every kill each visible checkpoint or chunk is whole
and equal to the uninterrupted run's; the resumed run finishes with exactly the uninterrupted run's weights
or shards (bit for bit: both run on one CPU thread, in fresh processes).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import datasets
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from test_lm_train import make_shards

from reelm.core.checkpoint_format import list_checkpoints, verify_checkpoint
from reelm.data.shards import chunk_folders
from reelm.tokenizer.tokenizer_checkpoint import save_tokenizer
from reelm.tokenizer.model import PRESETS, VideoTokenizer

pytestmark = pytest.mark.slow

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
KILLS = 3


def reelm(argv: list[str], log: Path, *, trigger: Callable[[], bool] | None = None, timeout: float = 600) -> bool:
    """Run ``reelm ARGV`` in a fresh process; SIGKILL it as soon as ``trigger()`` holds. True if it was killed."""
    with open(log, "ab") as err:
        proc = subprocess.Popen([sys.executable, "-m", "reelm.cli", *argv], stdout=subprocess.DEVNULL, stderr=err,
                                env=ENV)
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            if trigger is not None and trigger():
                proc.kill()
                proc.wait()
                return True
            if time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"reelm {' '.join(argv)} did not finish in {timeout} s")
            time.sleep(0.005)
    assert proc.returncode == 0, log.read_text()[-3000:]
    return False


def after(count: Callable[[], int], n: int, delay: float) -> Callable[[], bool]:
    """True ``delay`` seconds after ``count()`` first reaches ``n``."""
    reached: list[float] = []

    def trigger() -> bool:
        if not reached and count() >= n:
            reached.append(time.monotonic())
        return bool(reached) and time.monotonic() - reached[0] >= delay

    return trigger


def appears(folder: Path, pattern: str) -> Callable[[], bool]:
    """True once a path matching ``pattern`` that was not there before appears in ``folder`` (a save under way)."""
    before = set(folder.glob(pattern))
    return lambda: bool(set(folder.glob(pattern)) - before)


def kill_points(seed: int, last: int) -> list[tuple[str, int, float]]:
    """``KILLS`` seeded kill points: after item ``n`` (random in 1..last) plus a random delay, the middle one
    while the next item is being written."""
    rng = np.random.default_rng(seed)
    points = [("after", int(rng.integers(1, last + 1)), float(rng.uniform(0.0, 0.4))) for _ in range(KILLS)]
    points[1] = ("writing", 0, 0.0)
    return points


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _check_checkpoints(run: Path, straight: Path, weights: str) -> None:
    """Every visible checkpoint of a killed run is whole and equal to the uninterrupted run's at that step."""
    reference = dict(list_checkpoints(straight))
    for step, folder in list_checkpoints(run):
        assert verify_checkpoint(folder) is None, folder
        assert same(load_file(str(folder / weights)), load_file(str(reference[step] / weights))), folder


def _kill_and_resume(argv: list[str], run: Path, straight: Path, weights: str, seed: int, last: int,
                     log: Path) -> int:
    killed = 0
    for kind, n, delay in kill_points(seed, last):
        if kind == "writing":
            trigger = appears(run, ".step-*.partial")
        else:
            trigger = after(lambda: len(list_checkpoints(run)), len(list_checkpoints(run)) + n, delay)
        killed += reelm(argv, log, trigger=trigger)
        _check_checkpoints(run, straight, weights)
    reelm(argv, log)
    _check_checkpoints(run, straight, weights)
    assert max(s for s, _ in list_checkpoints(run)) == max(s for s, _ in list_checkpoints(straight))
    return killed


def test_tokenizer_training_killed_and_resumed_gives_the_uninterrupted_weights(tmp_path):
    argv = ["tokenizer", "train", "--preset", "tiny", "--set", "model.channels=[8,8,16]", "--num-frames", "5",
            "--size", "32", "--batch-size", "1", "--steps", "24", "--checkpoint-every", "1", "--set", "keep_last=30",
            "--set", "warmup_steps=2", "--set", "ema_decay=0.9", "--no-progress", "--resume"]
    log = tmp_path / "log.txt"
    straight = tmp_path / "straight"
    reelm([*argv, "--out", str(straight)], log)
    run = tmp_path / "killed"
    killed = _kill_and_resume([*argv, "--out", str(run)], run, straight, "raw_model.safetensors", seed=1, last=6,
                              log=log)
    assert killed >= 2
    assert same(load_file(str(run / "step-000024" / "model.safetensors")),
                load_file(str(straight / "step-000024" / "model.safetensors")))  # the EMA weights too


def test_lm_training_killed_and_resumed_gives_the_uninterrupted_weights(tmp_path):
    make_shards(tmp_path / "shards", 40)
    argv = ["lm", "train", "--preset", "tiny", "--data", str(tmp_path / "shards"), "--steps", "12", "--set",
            "checkpoint_every=1", "--set", "keep_last=0", "--set", "val_every=0", "--set", "compile=false", "--set",
            "block_size=128", "--set", "micro_batch_size=2", "--set", "warmup_steps=2", "--peak-flops", "1e11",
            "--no-progress", "--resume"]
    log = tmp_path / "log.txt"
    straight = tmp_path / "straight"
    reelm([*argv, "--out", str(straight)], log)
    run = tmp_path / "killed"
    killed = _kill_and_resume([*argv, "--out", str(run)], run, straight, "model.safetensors", seed=2, last=3, log=log)
    assert killed >= 2
    final = [load_file(str(folder / "step-000012" / "optimizer-rank00000.safetensors")) for folder in (run, straight)]
    assert same(*final)  # fp32 master weights and Adam moments
    rank = [load_file(str(folder / "step-000012" / "trainer-rank00000.safetensors")) for folder in (run, straight)]
    # Data position and torch RNG; the global numpy / Python generators, which training never draws from, start
    # from OS entropy in every process and are only carried along.
    assert same(*({k: v for k, v in state.items() if not k.startswith("rng.numpy")} for state in rank))


def test_pre_tokenization_killed_and_rerun_gives_the_uninterrupted_shards(tmp_path):
    torch.manual_seed(0)
    import dataclasses

    save_tokenizer(VideoTokenizer(dataclasses.replace(PRESETS["tiny"](), channels=(8, 8, 16))).eval(),
                   tmp_path / "tok")
    argv = ["data", "tokenize", "--video-tokenizer", str(tmp_path / "tok"), "--data", "synthetic", "--num-clips",
            "40", "--chunk-rows", "2", "--batch-size", "2", "--num-frames", "5", "--size", "32", "--text-vocab-size",
            "300", "--no-progress"]
    log = tmp_path / "log.txt"
    straight = tmp_path / "straight"
    reelm([*argv, "--out", str(straight)], log)
    reference = {c.name: datasets.load_from_disk(str(c)).to_dict() for c in chunk_folders(straight)}
    out = tmp_path / "killed"
    killed = 0
    for kind, n, delay in kill_points(3, 6):
        if kind == "writing":
            trigger = appears(out, "parts/*/.chunk-*.partial")
        else:
            trigger = after(lambda: len(chunk_folders(out)), len(chunk_folders(out)) + n, delay)
        killed += reelm([*argv, "--out", str(out)], log, trigger=trigger)
        for chunk in chunk_folders(out):  # every visible chunk is whole and the uninterrupted run's
            assert datasets.load_from_disk(str(chunk)).to_dict() == reference[chunk.name], chunk
    reelm([*argv, "--out", str(out)], log)
    assert killed >= 2
    got = {c.name: datasets.load_from_disk(str(c)).to_dict() for c in chunk_folders(out)}
    assert got == reference
    assert (out / "errors.jsonl").read_text() == (straight / "errors.jsonl").read_text()
