"""README's user-facing blocks, executed in order at tiny settings, so README stays runnable (not only parseable).

Every fenced ``bash`` and ``python`` block of README.md runs, line by line for shell and whole for
Python, in this process (``reelm ARGS`` as the console script runs it, ``reelm.cli.main(ARGS)``: the
walkthrough costs minutes, not the seconds of interpreter start-up per line) from a sandbox folder holding what a user would bring (``my_videos/``, a manifest of absolute
paths with captions, prompt files, a clip, an image), with README's sizes shrunk by
:data:`TINY` (``--steps 2000`` becomes ``--steps 2``, and so on). The blocks of *Quick start* run in
a sandbox of their own; the rest of README is one walkthrough, section after section, each command
reading what the earlier ones wrote. A line is left out only for a reason :data:`NOT_RUN` names
(installing, the 25-minute demo, launchers of several processes, weights the user supplies), and the
test checks that each such reason still matches some README line, so the list cannot rot.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

# README's sizes -> the walkthrough's (pattern, replacement), applied to every line in order.
TINY = [
    (r"--steps \d+", "--steps 2"),
    (r"\bsteps=\d+", "steps=2"),
    (r"--num-clips \d+", "--num-clips 12"),
    (r"--num-stories \d+", "--num-stories 2"),
    (r"--story-clips \d+", "--story-clips 4"),
    (r"\bnum_clips=\d+", "num_clips=12"),
    (r"--vocab-size \d+", "--vocab-size 300"),
    (r"--frames 51", "--frames 25"),
    (r"step-002000", "step-000002"),
    (r"\bSHARDS\b", "runs/shards"),
    (r"reelm eval generate (.*)--out", r"reelm eval generate \1--num-prompts 4 --num-samples 1 --image-to-video 2 "
     r"--continuation 2 --captions 2 --reference 8 --binding-clips 4 --out"),
]
# Lines not run, by what they contain, and why.
NOT_RUN = {
    "pip install": "installing: CI's own first step",
    "python3 -m venv": "making a virtualenv: CI's own first step",
    "reelm demo": "the 25-minute demo: tests/test_demo.py runs it at tiny settings",
    "pytest": "the test command itself",
    "reelm app": "a server that runs until stopped: tests/test_app.py serves it and drives it in a browser",
    "torchrun": "a launcher of several processes: tests/test_eval_runs.py, test_generation_pipeline.py and test_audit.py run them",
    "i3d_torchscript.pt": "I3D weights the user supplies (tests/eval_weights.py makes tiny ones for the metric tests)",
}
BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```", re.M | re.S)


def readme_blocks() -> list[tuple[str, str, str]]:
    """``(section, language, code)`` of every fenced bash / python block, in order."""
    text = (REPO / "README.md").read_text()
    blocks, section = [], ""
    position = 0
    for match in BLOCK.finditer(text):
        headings = re.findall(r"^## (.+)$", text[position:match.start()], flags=re.M)
        section = headings[-1] if headings else section
        position = match.end()
        blocks.append((section, match.group(1), match.group(2)))
    return blocks


def readme_text_block(name: str) -> str:
    """The fenced ``text`` block of README.md whose first line is ``# NAME``: a file README shows a user writing."""
    for match in re.finditer(r"^```text\n(.*?)^```", (REPO / "README.md").read_text(), re.M | re.S):
        if match.group(1).startswith(f"# {name}\n"):
            return match.group(1)
    raise AssertionError(f"README.md shows no ```text block starting '# {name}'")


def tiny(line: str) -> str:
    for pattern, replacement in TINY:
        line = re.sub(pattern, replacement, line)
    return line


def shell_lines(code: str) -> list[str]:
    """A bash block's commands, continuation lines joined, comments dropped."""
    lines = []
    for line in code.replace("\\\n", " ").splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def skipped(line: str) -> str | None:
    return next((why for needle, why in NOT_RUN.items() if needle in line), None)


def user_files(root: Path) -> None:
    """What README's commands assume a user has: their videos, a manifest, prompt files, a clip and an image."""
    from reelm.data.synthetic.world import SyntheticWorld, WorldConfig
    from reelm.data.video_write import write_mp4
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    world = SyntheticWorld(WorldConfig(height=72, width=96, num_frames=24, seed=11))
    videos = root / "my_videos"
    videos.mkdir()
    rows = []
    for i in range(6):
        clip = world.clip(i)
        path = write_mp4(videos / f"clip{i}.mp4", clip.frames, fps=8)
        rows.append({"video": str(path.resolve()), "caption": clip.caption})
    (root / "my_videos.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "my_clips").mkdir()
    for i in range(6, 9):
        write_mp4(root / "my_clips" / f"real{i}.mp4", world.clip(i).frames, fps=8)
    clip = world.clip(9).frames
    write_mp4(root / "clip.mp4", clip, fps=8)
    _write_mkv(root / "clip.mkv", clip)
    Image.fromarray(clip[0]).save(root / "first.png")
    prompts = "a red circle moves to the left\na blue square moves up\n"
    (root / "prompts.txt").write_text(prompts)
    (root / "my_prompts.txt").write_text(prompts)
    (root / "story.txt").write_text(readme_text_block("story.txt"))


def _write_mkv(path: Path, frames: np.ndarray) -> None:
    import av

    with av.open(str(path), mode="w", format="matroska") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.height, stream.width, stream.pix_fmt = frames.shape[1], frames.shape[2], "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))


def run_block(language: str, code: str, cwd: Path, ran: list[str], monkeypatch) -> None:
    """One block, in this process (as the ``reelm`` console script calls :func:`reelm.cli.main`), from ``cwd``."""
    from reelm.cli import main

    monkeypatch.chdir(cwd)
    if language == "python":
        if skipped(code):
            return
        program = tiny(code)
        try:
            exec(compile(program, "README.md", "exec"), {"__name__": "__main__"})
        except Exception as exc:
            pytest.fail(f"README python block failed ({type(exc).__name__}: {exc}):\n{program}")
        ran.append("python: " + code.splitlines()[0])
        return
    for line in shell_lines(code):
        if skipped(line):
            continue
        command = tiny(line)
        words = shlex.split(command)
        assert words[0] == "reelm", f"README line runs no reelm command: {command} (add it to NOT_RUN, with why)"
        assert main(words[1:]) == 0, f"README command failed: {command}"
        ran.append(command)


def test_every_reason_for_not_running_a_line_still_matches_a_readme_line():
    lines = [line for _, language, code in readme_blocks() for line in
             (shell_lines(code) if language == "bash" else [code])]
    for needle in NOT_RUN:
        assert any(needle in line for line in lines), f"NOT_RUN[{needle!r}] matches no README line: drop it"
    assert sum(skipped(line) is None for line in lines) >= 20  # most of README runs


@pytest.mark.slow
def test_readme_blocks_run_in_order_at_tiny_settings(tmp_path, monkeypatch, single_thread_isolated):
    import torch

    monkeypatch.setenv("TQDM_DISABLE", "1")
    ran: list[str] = []
    sandboxes: dict[str, Path] = {}
    with torch.compiler.set_stance("force_eager"):  # compiled layers run eagerly: seconds, not minutes
        for section, language, code in readme_blocks():
            key = "quickstart" if section.startswith("Quick start") else "walkthrough"
            if key not in sandboxes:
                sandboxes[key] = tmp_path / key
                user_files(sandboxes[key])
            run_block(language, code, sandboxes[key], ran, monkeypatch)
    assert len(ran) >= 25 and any(line.startswith("reelm lm export") for line in ran)
    walk = sandboxes["walkthrough"]
    assert (walk / "runs" / "lm-export" / "README.md").is_file() and len(list((walk / "samples").glob("*.gif"))) == 8
    assert (sandboxes["quickstart"] / "runs" / "eval" / "summary.json").is_file()
