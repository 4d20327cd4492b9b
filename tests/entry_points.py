"""reelm's entry points that take media, each runnable on any case of the bad-media corpus, with what happened.

- :data:`PER_FILE`: ``name -> run(path, env) -> Outcome`` for the entry points that take one file:
  the video reader, ``reelm tokenizer encode`` / ``reconstruct``, ``reelm generate --image`` /
  ``--video`` and ``reelm caption``. Each runs in this process through ``reelm.cli.main`` (stdout
  and stderr captured) under a time bound (:func:`bounded`), so a crash is a failed outcome, not
  a failed test run, and a hang is cut short.
- :data:`BATCH`: ``name -> run(corpus, env) -> {case: Outcome}`` for the batch jobs, run once over
  the whole corpus: ``reelm data tokenize`` (a manifest), ``reelm tokenizer train`` (a folder) and
  ``reelm eval reconstruct`` (a manifest). A case is "skipped" when the job's errors file records
  it (with its reason), "used" otherwise.

:func:`build_env` makes the models once: a small random video tokenizer (the ``tiny`` preset at
widths 8-8-16, for speed) and a model folder around it (:func:`test_generation_pipeline.make_model_folder`).
New entry points (``reelm eval generate``, ``reelm demo``) join by adding a function to a table.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import shutil
import signal
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch

from bad_media import write_manifest

CASE_SECONDS = 120  # no case may take longer (generous: the CPU is shared)
FAST_WIDTHS = (8, 8, 16)  # the tiny tokenizer's widths, narrowed: every entry point runs in seconds
TEST_MAX_PIXELS = 256 * 256  # native-size encoding fits frames to this here (1080p in reelm), for speed


@dataclass
class Outcome:
    kind: str  # "used", "refused" (one error line), "skipped" (recorded by a batch job), "crashed", "n/a"
    message: str  # the error line, the skip reason, or what was made
    seconds: float = 0.0
    error_lines: int = 0  # lines on stderr with an error (a refusal must have exactly one)
    leftovers: list[str] = dataclasses.field(default_factory=list)  # files a refused command left behind

    def cell(self) -> str:
        """A table cell: the outcome and its one line, shortened."""
        text = self.message.replace("|", "/")
        return f"**{self.kind}**: {text[:140]}{'...' if len(text) > 140 else ''}"


@dataclass
class Env:
    root: Path
    tokenizer: Path  # a video tokenizer checkpoint folder
    model: Path  # an LM model folder carrying that tokenizer


def build_env(root: Path) -> Env:
    """The tiny models every entry point uses, made once in ``root``."""
    from reelm.tokenizer import model as tokenizer_model
    from test_generation_pipeline import make_model_folder

    fast = dataclasses.replace(tokenizer_model.PRESETS["tiny"](), channels=FAST_WIDTHS)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(tokenizer_model.PRESETS, "tiny", lambda: fast)
        model = make_model_folder(root)
    return Env(root=root, tokenizer=root / "tok", model=model)


class CaseTimeout(Exception):
    pass


@contextlib.contextmanager
def bounded(seconds: float):
    """Raise :class:`CaseTimeout` in this (main) thread if the block runs longer than ``seconds``."""
    def expire(signum, frame):
        raise CaseTimeout(f"took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_cli(argv: list[str], *, out_dir: Path | None = None) -> Outcome:
    """``reelm ARGV`` in this process: used (exit 0), refused (exit 1, its error line), or crashed."""
    from reelm.cli import main
    from reelm.tokenizer import video_codec

    out, err = io.StringIO(), io.StringIO()
    began = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            pytest.MonkeyPatch.context() as patch:
        patch.setattr(video_codec, "MAX_PIXELS", TEST_MAX_PIXELS)
        try:
            with bounded(CASE_SECONDS):
                code = main(argv)
        except BaseException as exc:  # what the CLI let escape: a traceback for the user
            code = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]} at {_where(exc)}"
    seconds = time.perf_counter() - began
    errors = [line for line in err.getvalue().splitlines() if line.startswith("reelm: error") or "Traceback" in line]
    said = [line for line in out.getvalue().splitlines() if line.strip()]
    if code == 0:
        return Outcome("used", said[-1] if said else "", seconds)
    if code == 1:
        leftovers = sorted(p.name for p in out_dir.iterdir()) if out_dir is not None and out_dir.is_dir() else []
        return Outcome("refused", errors[-1] if errors else err.getvalue().strip()[-300:], seconds, len(errors),
                       leftovers)
    return Outcome("crashed", str(code), seconds)


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"


def _fresh(env: Env, name: str) -> Path:
    folder = env.root / "out" / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


# --- entry points that take one file -------------------------------------------------------------


def reader(path: Path, env: Env) -> Outcome:
    from reelm.data.video_read import VideoReadError, read_video

    began = time.perf_counter()
    try:
        with bounded(CASE_SECONDS):
            frames = read_video(path)
    except VideoReadError as exc:
        return Outcome("refused", f"VideoReadError: {exc}", time.perf_counter() - began, 1)
    except BaseException as exc:
        return Outcome("crashed", f"{type(exc).__name__}: {exc} at {_where(exc)}", time.perf_counter() - began)
    t, h, w, _ = frames.shape
    return Outcome("used", f"{t} frames {w}x{h}", time.perf_counter() - began)


def tokenizer_encode(path: Path, env: Env) -> Outcome:
    out = _fresh(env, "encode")
    return run_cli(["tokenizer", "encode", str(path), "--tokenizer", str(env.tokenizer), "-o", str(out / "codes.npz"),
                    "--no-progress"], out_dir=out)


def tokenizer_reconstruct(path: Path, env: Env) -> Outcome:
    out = _fresh(env, "reconstruct")
    return run_cli(["tokenizer", "reconstruct", str(path), "--tokenizer", str(env.tokenizer), "-o",
                    str(out / "recon.mp4"), "--no-progress"], out_dir=out)


def generate_image(path: Path, env: Env) -> Outcome:
    out = _fresh(env, "generate_image")
    return run_cli(["generate", "a red circle", "--image", str(path), "--model", str(env.model), "-o",
                    str(out / "i2v.mp4"), "--no-progress", "--greedy"], out_dir=out)


def generate_video(path: Path, env: Env) -> Outcome:
    out = _fresh(env, "generate_video")
    return run_cli(["generate", "--video", str(path), "--model", str(env.model), "-o", str(out / "more.mp4"),
                    "--no-progress", "--greedy"], out_dir=out)


def caption(path: Path, env: Env) -> Outcome:
    out = _fresh(env, "caption")
    return run_cli(["caption", str(path), "--model", str(env.model), "--no-progress", "--max-tokens", "4",
                    "--json", str(out / "captions.json")], out_dir=out)


PER_FILE: dict[str, Callable[[Path, Env], Outcome]] = {
    "video reader": reader,
    "tokenizer encode": tokenizer_encode,
    "tokenizer reconstruct": tokenizer_reconstruct,
    "generate --image": generate_image,
    "generate --video": generate_video,
    "caption": caption,
}


# --- batch jobs over the whole corpus --------------------------------------------------------------


def _per_case(corpus: dict[str, Path], run: Outcome, skipped: dict[str, dict], *, listed=None) -> dict[str, Outcome]:
    """Each case's outcome in a batch run: skipped (its recorded reason) or used; the run's own failure for all."""
    if run.kind != "used":
        return {name: run for name in corpus}
    results = {}
    for name, path in corpus.items():
        if listed is not None and name not in listed:
            results[name] = Outcome("n/a", "not listed: a folder lists only what exists")
        elif str(path) in skipped:
            record = skipped[str(path)]
            results[name] = Outcome("skipped", f"{record['reason']}: {record['detail']}")
        else:
            results[name] = Outcome("used", run.message)
    return results


def _skipped(path: Path) -> dict[str, dict]:
    records = [json.loads(line) for line in path.read_text().splitlines() if line] if path.is_file() else []
    return {record["video"]: record for record in records}


def data_tokenize(corpus: dict[str, Path], env: Env) -> dict[str, Outcome]:
    manifest = write_manifest(corpus, next(iter(corpus.values())).parent)
    out = env.root / "out" / "shards"
    shutil.rmtree(out, ignore_errors=True)
    run = run_cli(["data", "tokenize", "--video-tokenizer", str(env.tokenizer), "--data", str(manifest), "--out",
                   str(out), "--num-frames", "5", "--size", "32", "--text-vocab-size", "300", "--no-progress"])
    return _per_case(corpus, run, _skipped(out / "errors.jsonl"))


def tokenizer_train(corpus: dict[str, Path], env: Env) -> dict[str, Outcome]:
    """8 steps of 2 clips on the corpus folder: more than one pass over it, so every row is met."""
    from reelm.core.checkpoint_format import latest_checkpoint, load_state

    folder = next(iter(corpus.values())).parent
    out = env.root / "out" / "train"
    shutil.rmtree(out, ignore_errors=True)
    run = run_cli(["tokenizer", "train", "--preset", "tiny", "--set", f"model.channels={list(FAST_WIDTHS)}",
                   "--data", str(folder), "--out", str(out), "--steps", "8", "--batch-size", "2", "--num-frames", "5",
                   "--size", "32", "--no-progress"])
    if run.kind == "used":
        stream = load_state(latest_checkpoint(out), "trainer_state")["ranks"][0]["stream"]
        if stream["epoch"] < 1:
            run = Outcome("crashed", f"the run ended before one pass over the folder (epoch {stream['epoch']})")
    listed = {name for name, path in corpus.items() if path.exists() or path.is_symlink()}
    return _per_case(corpus, run, _skipped(out / "errors-rank0.jsonl"), listed=listed)


def eval_reconstruct(corpus: dict[str, Path], env: Env) -> dict[str, Outcome]:
    manifest = write_manifest(corpus, next(iter(corpus.values())).parent)
    out = env.root / "out" / "eval"
    shutil.rmtree(out, ignore_errors=True)
    run = run_cli(["eval", "reconstruct", "--tokenizer", str(env.tokenizer), "--data", str(manifest), "--out",
                   str(out), "--num-frames", "5", "--size", "32", "--no-progress"])
    return _per_case(corpus, run, _skipped(out / "skipped.jsonl"))


BATCH: dict[str, Callable[[dict[str, Path], Env], dict[str, Outcome]]] = {
    "data tokenize (manifest)": data_tokenize,
    "tokenizer train (folder)": tokenizer_train,
    "eval reconstruct (manifest)": eval_reconstruct,
}


# --- what each entry point must do with each case --------------------------------------------------

# Cases whose damage lies after the window a job reads: the window decodes cleanly and is used.
DAMAGED_AFTER_CENTER = frozenset({"truncated_90", "truncated_mkv"})  # the batch jobs' centered 5-frame window
DAMAGED_AFTER_START = frozenset({"truncated_50", "truncated_90", "truncated_mkv", "corrupt_middle"})  # caption's first


def expected(entry: str, case: str) -> str:
    """The outcome ``entry`` must give ``case``: "used", "refused" (one line), "skipped" (recorded), "n/a",
    or "used or skipped" where a randomly placed window decides."""
    from bad_media import CASES, USE

    awkward = CASES[case].expect == USE
    if entry in BATCH:
        if entry.startswith("tokenizer train") and case == "missing":
            return "n/a"
        if entry.startswith("tokenizer train") and case in DAMAGED_AFTER_CENTER:  # training windows are random
            return "used or skipped"
        return "used" if awkward or case in DAMAGED_AFTER_CENTER else "skipped"
    if awkward or (entry == "caption" and case in DAMAGED_AFTER_START):
        return "used"
    return "refused"
