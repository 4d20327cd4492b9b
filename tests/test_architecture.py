"""Tests that guard the architecture: the import direction, README's commands, the CLI's help.

- Data flows one way. ``reelm.data`` imports neither the video tokenizer nor the LM;
  ``reelm.lm`` handles token ids only and imports no pixel code (video I/O, the tokenizer
  model); the tokenizer never imports the LM; library code never imports the command line.
  Checked twice: on the source (every ``import`` statement, function-level ones included)
  and at run time (what importing a package actually loads).
- The shared infrastructure (``reelm.core``) imports no stage; generation, the demo and the app call
  the library, never the command modules; no two modules define a public class of the same name, and
  no two library modules share a file name unless they are one stage's counterpart of another's
  (``train``, ``model``) or a command named after what it drives.
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
                 "reelm.data.clip_sampling", "reelm.data.clip_stream", "reelm.data.row_reader", "reelm.data.synthetic.render",
                 "av", "PIL")
COMMAND_LINE = ("reelm.cli", "reelm.commands")
STAGES = ("reelm.data", "reelm.tokenizer", "reelm.lm", "reelm.eval")
ABOVE_THE_STAGES = ("reelm.generation", "reelm.demo", "reelm.app")
# (package, modules it must never import, why)
RULES = (
    ("reelm.core", STAGES + ABOVE_THE_STAGES + COMMAND_LINE, "the shared infrastructure imports no stage"),
    ("reelm.generation", ("reelm.demo", "reelm.app") + COMMAND_LINE,
     "generation calls the library, never the commands"),
    ("reelm.demo", COMMAND_LINE, "the demo calls the library, never the commands"),
    ("reelm.app", COMMAND_LINE, "the app calls the library, never the commands"),
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


def import_offenders(modules) -> list[str]:
    """Every import of ``modules`` (``(name, path)`` pairs) that breaks a rule, as one line each."""
    offenders = []
    for name, path in modules:
        for package, forbidden, why in RULES:
            if name == package or name.startswith(package + "."):
                bad = sorted(i for i in imports_of(path, name) if _breaks(i, forbidden))
                offenders += [f"{path} imports {b} ({why})" for b in bad]
        if not (name.startswith("reelm.commands") or name == "reelm.cli"):
            bad = sorted(i for i in imports_of(path, name) if _breaks(i, COMMAND_LINE))
            offenders += [f"{path} imports {b} (library code never imports the command line)" for b in bad]
    return sorted(set(offenders))


def test_the_import_direction_holds_in_the_source():
    offenders = import_offenders((name, path.relative_to(REPO)) for name, path in library_modules())
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("name, source, rule", [
    ("reelm.lm.bad", "def f():\n    from reelm.tokenizer.tokenizer_checkpoint import load_tokenizer\n",
     "the LM handles token ids only"),
    ("reelm.core.bad", "from reelm.data.token_layout import TokenLayout\n", "the shared infrastructure imports no stage"),
    ("reelm.generation.bad", "from reelm.commands.generate import main\n", "never the commands"),
    ("reelm.demo.bad", "import reelm.commands.demo\n", "never the commands"),
])
def test_the_rules_catch_a_violation(tmp_path, name, source, rule):
    """The source check can fail: a deliberate violation of each rule is reported, with its reason."""
    bad = tmp_path / "bad.py"
    bad.write_text(source)
    offenders = import_offenders([(name, bad)])
    assert offenders and any(rule in line for line in offenders), offenders


def public_classes(modules) -> dict[str, list[str]]:
    """Every public top-level class name and the modules that define it."""
    found: dict[str, list[str]] = {}
    for name, path in modules:
        for node in ast.parse(Path(path).read_text()).body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                found.setdefault(node.name, []).append(name)
    return found


def test_no_two_modules_define_a_public_class_of_the_same_name(tmp_path):
    shared = {cls: where for cls, where in public_classes(library_modules()).items() if len(where) > 1}
    assert not shared, shared
    # ...and the check can fail: two modules each with a TrainConfig are reported.
    for module in ("a", "b"):
        (tmp_path / f"{module}.py").write_text("class TrainConfig:\n    pass\n")
    found = public_classes([(f"reelm.x.{m}", tmp_path / f"{m}.py") for m in ("a", "b")])
    assert found["TrainConfig"] == ["reelm.x.a", "reelm.x.b"]


COUNTERPARTS = {"train", "model"}  # each stage's trainer and model: the same job in two stages


def shared_file_names(modules) -> dict[str, list[str]]:
    """File names held by more than one module, less stage counterparts and the commands named after a module."""
    by_file: dict[str, list[str]] = {}
    for name, path in modules:
        if Path(path).name != "__init__.py" and not name.startswith("reelm.commands."):
            by_file.setdefault(Path(path).stem, []).append(name)
    return {stem: names for stem, names in by_file.items() if len(names) > 1 and stem not in COUNTERPARTS}


def test_no_two_library_modules_share_a_file_name(tmp_path):
    shared = shared_file_names(library_modules())
    assert not shared, shared
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    pair = [("reelm.data.clips", tmp_path / "one" / "clips.py"), ("reelm.eval.clips", tmp_path / "two" / "clips.py")]
    for _, path in pair:
        path.write_text("")
    assert shared_file_names(pair) == {"clips": ["reelm.data.clips", "reelm.eval.clips"]}


RUNTIME_PROBE = """
import importlib, json, sys
for name in {modules!r}:
    importlib.import_module(name)
print(json.dumps(sorted(sys.modules)))
"""


@pytest.mark.parametrize("package, modules, forbidden", [
    ("reelm.lm", ["reelm.lm.train", "reelm.lm.lm_checkpoint", "reelm.lm.model", "reelm.lm.flops", "reelm.lm.plots"],
     tuple(m for m in PIXEL_MODULES if m != "PIL")),  # transformers and datasets load PIL themselves
    ("reelm.data", ["reelm.data.shards", "reelm.data.lm_data", "reelm.data.sources", "reelm.data.synthetic.world",
                    "reelm.data.shard_layout", "reelm.data.row_reader"], ("reelm.tokenizer", "reelm.lm")),
    ("reelm.tokenizer", ["reelm.tokenizer.tokenizer_checkpoint", "reelm.tokenizer.video_codec"],
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
