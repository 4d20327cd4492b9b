"""Progress bars (:mod:`reelm.core.progress`): redrawn on a terminal, a line per few percent or per minute in a
log, nothing when turned off; and every bar of reelm comes from there."""

from __future__ import annotations

import ast
import io
from pathlib import Path

import pytest
from tqdm import tqdm

from reelm.core import progress
from reelm.core.progress import LineProgress, progress_bar

REPO = Path(__file__).resolve().parents[1]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def clock(monkeypatch):
    """The bars' clock, moved by hand: ``clock[0]`` seconds."""
    now = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    return now


def test_a_log_gets_a_line_every_five_percent_and_a_last_one(clock):
    log = io.StringIO()
    with progress_bar(1000, desc="tokenizer", unit="step", file=log) as bar:
        for i in range(1000):
            clock[0] += 0.125
            bar.update()
            bar.set_postfix(loss=f"{1 / (i + 1):.4f}")
    lines = log.getvalue().splitlines()
    assert len(lines) == 20 and "\r" not in log.getvalue()
    assert lines[0] == "tokenizer: 50/1,000 step (5%) in 00:06, 8.00 step/s, ~01:58 left; loss=0.0204"
    assert lines[-1] == "tokenizer: done, 1,000/1,000 step (100%) in 02:05, 8.00 step/s; loss=0.0010"


def test_a_stage_of_a_few_seconds_prints_only_its_last_line(clock):
    log = io.StringIO()
    with progress_bar(16, desc="tokenize", unit="row", file=log) as bar:
        for _ in range(16):
            clock[0] += 0.05
            bar.update()
    assert log.getvalue() == "tokenize: done, 16/16 row (100%) in 00:00, 20.0 row/s\n"


def test_a_resumed_bar_counts_from_where_it_was(clock):
    log = io.StringIO()
    with progress_bar(100, desc="lm train", unit="step", initial=50, file=log) as bar:
        for _ in range(50):
            clock[0] += 1
            bar.update()
    lines = log.getvalue().splitlines()
    assert len(lines) == 10 and lines[0].startswith("lm train: 55/100 step (55%) in 00:05, 1.00 step/s")


def test_without_a_total_a_line_a_minute(clock):
    now = clock
    log = io.StringIO()
    bar = progress_bar(desc="generate", unit="tok", unit_scale=True, file=log)
    for _ in range(10):  # one update every 20 s: a line every third
        now[0] += 20
        bar.update(1000)
    bar.close()
    lines = log.getvalue().splitlines()
    assert len(lines) == 4 and lines[0] == "generate: 3.00k tok in 01:00, 50.0 tok/s"
    assert lines[-1] == "generate: done, 10.0k tok in 03:20, 50.0 tok/s"


def test_a_slow_step_still_gets_a_line_a_minute(clock):
    now = clock
    log = io.StringIO()
    bar = progress_bar(1000, desc="tokenize", unit="row", file=log)
    for _ in range(3):  # 1 row in 90 s: far from the next 5 %
        now[0] += 90
        bar.update()
    assert len(log.getvalue().splitlines()) == 3


def test_a_terminal_gets_a_tqdm_bar():
    terminal = Terminal()
    with progress_bar(10, desc="decode", unit="frame", file=terminal) as bar:
        assert isinstance(bar, tqdm)
        bar.update(10)
    assert "\r" in terminal.getvalue() and "10/10" in terminal.getvalue()


def test_disabled_prints_nothing_but_write_still_does(capsys):
    log = io.StringIO()
    with progress_bar(10, desc="decode", unit="frame", enabled=False, file=log) as bar:
        bar.update(10)
        bar.set_postfix(loss="0.1")
        bar.write("a message")
        assert bar.n == 10 and bar.total == 10
    assert log.getvalue() == "" and capsys.readouterr() == ("a message\n", "")


def test_stderr_is_the_default_stream(capsys):
    with progress_bar(2, desc="encode", unit="frame") as bar:  # pytest's captured stderr is no terminal
        assert isinstance(bar, LineProgress)
        bar.update(2)
    assert capsys.readouterr().err.startswith("encode: done, 2/2 frame (100%) in 00:00")


def test_every_progress_bar_comes_from_reelm_core_progress():
    """No module but the owner imports tqdm: a bar elsewhere would redraw into log files again."""
    offenders = []
    for folder in ("scripts", "data", "tokenizer", "lm", "eval"):
        for path in (REPO / folder).rglob("*.py"):
            if path == REPO / "scripts" / "core" / "progress.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                offenders += [f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] == "tqdm"]
    assert not offenders, offenders
