"""Tests that guard the architecture: the import direction, README's commands, the CLI's help.

- Data flows one way. ``reelm.data`` imports neither the video tokenizer nor the LM;
  ``reelm.lm`` handles token ids only and imports no pixel code (video I/O, the tokenizer
  model); the tokenizer never imports the LM; library code never imports the command line.
  Checked twice: on the source (every ``import`` statement, function-level ones included)
  and at run time (what importing a package actually loads).
- Every ``reelm`` command shown in README parses with the current command line.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {"scripts": "reelm", "data": "reelm.data", "tokenizer": "reelm.tokenizer", "lm": "reelm.lm",
            "eval": "reelm.eval"}
PIXEL_MODULES = ("reelm.tokenizer", "reelm.data.video_read", "reelm.data.video_write", "reelm.data.contact_sheet",
                 "reelm.data.clips", "reelm.data.clip_stream", "reelm.data.row_reader", "reelm.data.synthetic_render",
                 "av", "PIL")
COMMAND_LINE = ("reelm.cli", "reelm.commands")
# (package, modules it must never import, why)
RULES = (
    ("reelm.data", ("reelm.tokenizer", "reelm.lm", "reelm.eval") + COMMAND_LINE, "data flows one way"),
    ("reelm.lm", PIXEL_MODULES + ("reelm.eval",) + COMMAND_LINE, "the LM handles token ids only"),
    ("reelm.tokenizer", ("reelm.lm", "reelm.eval") + COMMAND_LINE, "the tokenizer knows nothing of the LM"),
    ("reelm.eval", COMMAND_LINE, "library code never imports the command line"),
)


def module_name(path: Path) -> str:
    folder = path.relative_to(REPO).parts[0]
    rest = path.relative_to(REPO / folder).with_suffix("").parts
    name = ".".join((PACKAGES[folder], *rest))
    return name.removesuffix(".__init__")


def library_modules():
    for folder in PACKAGES:
        for path in sorted((REPO / folder).rglob("*.py")):
            if "bench" in path.relative_to(REPO).parts:
                continue  # benchmark scripts are not part of the package
            yield module_name(path), path


def imports_of(path: Path, name: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{path}: relative import (reelm imports absolutely)"
            module = node.module or ""
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}
    return found


def _breaks(imported: str, forbidden: tuple[str, ...]) -> bool:
    return any(imported == f or imported.startswith(f + ".") for f in forbidden)


def test_the_import_direction_holds_in_the_source():
    offenders = []
    for name, path in library_modules():
        for package, forbidden, why in RULES:
            if name == package or name.startswith(package + "."):
                bad = sorted(i for i in imports_of(path, name) if _breaks(i, forbidden))
                offenders += [f"{path.relative_to(REPO)} imports {b} ({why})" for b in bad]
        if not (name.startswith("reelm.commands") or name == "reelm.cli"):
            bad = sorted(i for i in imports_of(path, name) if _breaks(i, COMMAND_LINE))
            offenders += [f"{path.relative_to(REPO)} imports {b} (library code never imports the command line)"
                          for b in bad]
    assert not offenders, "\n".join(sorted(set(offenders)))


def test_the_rules_catch_a_violation(tmp_path):
    """The source check can fail: a module importing the tokenizer from reelm.lm is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from reelm.tokenizer.checkpoint import load_tokenizer\n")
    assert any(_breaks(i, PIXEL_MODULES) for i in imports_of(bad, "reelm.lm.bad"))


RUNTIME_PROBE = """
import importlib, json, sys
for name in {modules!r}:
    importlib.import_module(name)
print(json.dumps(sorted(sys.modules)))
"""


@pytest.mark.parametrize("package, modules, forbidden", [
    ("reelm.lm", ["reelm.lm.train", "reelm.lm.checkpoint", "reelm.lm.model", "reelm.lm.flops", "reelm.lm.plots"],
     tuple(m for m in PIXEL_MODULES if m != "PIL")),  # transformers and datasets load PIL themselves
    ("reelm.data", ["reelm.data.shards", "reelm.data.lm_data", "reelm.data.sources", "reelm.data.synthetic",
                    "reelm.data.shard_layout", "reelm.data.row_reader"], ("reelm.tokenizer", "reelm.lm")),
    ("reelm.tokenizer", ["reelm.tokenizer.checkpoint", "reelm.tokenizer.video_codec"],
     ("reelm.lm", "reelm.tokenizer.losses", "reelm.tokenizer.perceptual", "reelm.tokenizer.discriminator")),
])
def test_the_import_direction_holds_at_run_time(package, modules, forbidden):
    """What importing a package really loads: the LM loads no pixel code, loading a tokenizer no loss code."""
    out = subprocess.run([sys.executable, "-c", RUNTIME_PROBE.format(modules=modules)], capture_output=True,
                         text=True, check=True, cwd=REPO)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    bad = sorted(m for m in loaded if _breaks(m, forbidden))
    assert not bad, f"importing {modules} loads {bad}"


def readme_commands() -> list[str]:
    """Every ``reelm ...`` invocation in README's fenced shell blocks (launchers and env stripped)."""
    text = (REPO / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            for part in re.split(r"&&|;", line):
                part = part.strip().replace("$(command -v reelm)", "reelm")
                words = shlex.split(part) if part else []
                if "reelm" in words:
                    commands.append(words[words.index("reelm") + 1:])
    return commands


def test_every_command_in_readme_parses_with_the_current_cli():
    from reelm.cli import build_parser

    commands = readme_commands()
    groups = {c[0] for c in commands if c}
    assert {"data", "tokenizer", "lm", "text-tokenizer"} <= groups, groups
    for words in commands:
        parser = build_parser()
        try:
            parser.parse_args(words)
        except SystemExit:
            pytest.fail(f"README command does not parse: reelm {' '.join(words)}")


def test_a_readme_command_with_an_unknown_flag_would_fail():
    from reelm.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["tokenizer", "train", "--preset", "tiny", "--out", "x", "--no-such-flag"])


def _all_parsers(parser, prefix=()):
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _all_parsers(sub, prefix + (name,))


def test_every_command_and_option_is_described():
    from reelm.cli import build_parser

    commands = list(_all_parsers(build_parser()))
    assert len(commands) > 8
    undocumented = []
    for prefix, parser in commands:
        if prefix and not parser.description:
            undocumented.append(f"reelm {' '.join(prefix)}: no description")
        for action in parser._actions:
            if action.help is argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
                continue
            if not action.help and action.option_strings:
                undocumented.append(f"reelm {' '.join(prefix)} {action.option_strings[0]}: no help")
    assert not undocumented, "\n".join(undocumented)
    out = subprocess.run([Path(sys.executable).parent / "reelm", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "COMMAND" in out.stdout
