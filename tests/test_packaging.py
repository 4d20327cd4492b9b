"""Packaging: one namespace (`reelm`), nothing generic top-level, no bare imports, a working CLI."""

import ast
import json
import subprocess
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
LIBRARY_FOLDERS = ("data", "lm", "eval", "tokenizer")
GENERIC_NAMES = LIBRARY_FOLDERS + ("scripts", "commands", "tests")


def test_generic_names_are_not_importable_top_level(tmp_path):
    code = (
        "import importlib.util, json;"
        f"names = {list(GENERIC_NAMES)!r};"
        "print(json.dumps({n: importlib.util.find_spec(n) is not None for n in names}));"
    )
    # Run outside the repository so its folders are not on sys.path by accident.
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    found = json.loads(out.stdout)
    assert not any(found.values()), f"top-level generic modules importable: {found}"
    for part in LIBRARY_FOLDERS:
        spec = subprocess.run(
            [sys.executable, "-c", f"import reelm.{part} as m; print(m.__file__)"],
            cwd=tmp_path, capture_output=True, text=True, check=True,
        )
        assert Path(spec.stdout.strip()).parent == REPO / part


TOP_LEVEL_PROBE = """
import ast, importlib.metadata, json
dist = importlib.metadata.distribution("reelm")
top = set()
for f in dist.files or []:
    first = f.parts[0]
    if first.endswith((".dist-info", ".egg-info")) or first in ("..", "__pycache__") or first.startswith("__editable__"):
        continue
    top.add(first.split(".")[0])
# An editable install maps packages through a finder: its mapping must hold reelm names only.
for f in dist.files or []:
    if f.name.startswith("__editable__") and f.name.endswith("_finder.py"):
        line = f.locate().read_text().split("MAPPING: dict[str, str] = ", 1)[1].splitlines()[0]
        top |= {name.split(".")[0] for name in ast.literal_eval(line)}
print(json.dumps(sorted(top)))
"""


def test_distribution_installs_only_reelm_top_level(tmp_path):
    out = subprocess.run([sys.executable, "-c", TOP_LEVEL_PROBE], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == ["reelm"]


def _python_files():
    for folder in ("scripts", "data", "lm", "eval", "tokenizer", "tests"):
        yield from (REPO / folder).rglob("*.py")


def test_no_bare_imports_of_card_folders():
    offenders = []
    for path in _python_files():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(REPO)}:{node.lineno} {n}" for n in names if n.split(".")[0] in GENERIC_NAMES]
    assert not offenders, offenders


# Imported only by the benchmark against its peer (scripts/bench/bench_tokenizer.py), which says how to install it.
BENCHMARK_PEERS = {"magvit2_pytorch", "torchvision"}


# Folders whose modules may also import an optional extra's distributions (each says in one line what to install).
EXTRA_FOLDERS = {"scripts/app": "app",  # reelm.app.server: "reelm app needs FastAPI and uvicorn ..."
                 "scripts/core/trackers.py": "trackers"}  # "--report-to tensorboard needs ... pip install tensorboard"


def _declared_distributions(extra: str | None = None) -> set[str]:
    import re
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + (project["optional-dependencies"][extra] if extra else [])
    return {re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0].lower().replace("_", "-") for spec in specs}


def test_every_module_the_library_imports_is_a_declared_dependency():
    """README's first command installs only `dependencies`: a library import served by a dev extra (scikit-image
    once was) would make `reelm demo` fail on a fresh install while every test passed."""
    import importlib.metadata

    provides = importlib.metadata.packages_distributions()
    declared = _declared_distributions()
    undeclared = []
    for folder in ("scripts", "data", "lm", "eval", "tokenizer"):
        for path in (REPO / folder).rglob("*.py"):
            extra = next((e for f, e in EXTRA_FOLDERS.items() if path.is_relative_to(REPO / f)), None)
            allowed = _declared_distributions(extra) if extra else declared
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    modules = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for top in {m.split(".")[0] for m in modules} - set(sys.stdlib_module_names) - {"reelm"} - BENCHMARK_PEERS:
                    dists = {d.lower().replace("_", "-") for d in provides.get(top, [])}
                    if not dists & allowed:
                        undeclared.append(f"{path.relative_to(REPO)}:{node.lineno} {top} ({sorted(dists) or 'not installed'})")
    assert not undeclared, undeclared
