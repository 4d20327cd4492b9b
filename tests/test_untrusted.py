"""Untrusted files: a pickle carrying code is refused wherever weights or codes are read, without running it;
JSON metadata of the wrong shape, type or version is refused in one line; a manifest's paths cannot leave
the dataset root unless the user allows it."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from bad_media import make_corpus, unicode_name
from entry_points import run_cli

from reelm.core.errors import ReelmError
from reelm.core.weights import read_weights


pytestmark = pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")  # torch, on a raw pickle


@pytest.fixture(scope="module", autouse=True)
def _one_thread(single_thread_isolated):
    yield


class Payload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def evil_files(folder: Path, marker: Path) -> dict[str, Path]:
    """The same code-carrying payload as a raw pickle and as a ``torch.save`` zip."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = folder / "raw.pkl"
    raw.write_bytes(pickle.dumps({"weight": Payload(marker)}))
    zipped = folder / "zipped.pt"
    torch.save({"weight": Payload(marker)}, zipped)
    assert not marker.exists()
    return {"raw pickle": raw, "torch.save zip": zipped}


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "a pickle ran code"


def test_the_payload_really_runs_code_when_unpickled(tmp_path):
    """The control: unpickled without protection, the payload does create its marker."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


@pytest.mark.parametrize("kind", ["raw pickle", "torch.save zip"])
def test_a_pickle_as_a_pt_weights_file_is_refused_without_running(kind, tmp_path, marker):
    evil = evil_files(tmp_path / "evil", marker)[kind]
    weights = evil.rename(tmp_path / "lpips.pt")
    with pytest.raises(ReelmError, match="refused: it holds pickled Python objects"):
        read_weights(weights)
    outcome = run_cli(["tokenizer", "train", "--preset", "tiny", "--steps", "1", "--out", str(tmp_path / "run"),
                       "--set", f"loss.perceptual_path={weights}", "--set", "loss.perceptual_weight=1",
                       "--no-progress"])
    assert outcome.kind == "refused" and "lpips.pt: refused" in outcome.message


@pytest.mark.parametrize("kind", ["raw pickle", "torch.save zip"])
def test_a_pickle_as_a_tokenizer_checkpoints_weights_is_refused_without_running(kind, tmp_path, marker, media_env,
                                                                               bad_media):
    folder = tmp_path / "tok"
    shutil.copytree(media_env.tokenizer, folder)
    shutil.copy(evil_files(tmp_path / "evil", marker)[kind], folder / "model.safetensors")
    outcome = run_cli(["tokenizer", "encode", str(bad_media["unicode_name"]), "--tokenizer", str(folder), "-o",
                       str(tmp_path / "codes.npz"), "--no-progress"])
    assert outcome.kind == "refused" and outcome.error_lines == 1
    assert "model.safetensors: " in outcome.message  # read as safetensors or refused by weights_only: never unpickled
    assert "refused: it holds pickled Python objects" in outcome.message or "cannot read tokenizer weights" in \
        outcome.message


@pytest.mark.parametrize("kind", ["raw pickle", "torch.save zip"])
def test_a_pickle_as_a_codes_file_is_refused_without_running(kind, tmp_path, marker, media_env):
    codes = tmp_path / "codes.npz"
    shutil.copy(evil_files(tmp_path / "evil", marker)[kind], codes)
    outcome = run_cli(["tokenizer", "decode", str(codes), "--tokenizer", str(media_env.tokenizer), "-o",
                       str(tmp_path / "out.mp4"), "--no-progress"])
    assert outcome.kind == "refused" and outcome.error_lines == 1
    assert "codes.npz: not a reelm codes file" in outcome.message and not (tmp_path / "out.mp4").exists()


def test_a_pickle_as_lm_weights_is_refused_without_running(tmp_path, marker, media_env):
    folder = tmp_path / "model"
    shutil.copytree(media_env.model, folder)
    shutil.copy(evil_files(tmp_path / "evil", marker)["torch.save zip"], folder / "model.safetensors")
    outcome = run_cli(["generate", "a red circle", "--model", str(folder), "-o", str(tmp_path / "g.mp4"),
                       "--no-progress"])
    assert outcome.kind == "refused" and outcome.error_lines == 1
    assert "cannot load the model" in outcome.message and "use an intact checkpoint" in outcome.message


# --- JSON metadata --------------------------------------------------------------------------------


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    path.write_text(json.dumps(change(data)))


META_DAMAGE = {
    "a list instead of an object": (lambda meta: [meta], "expected a JSON object"),
    "a version as text": (lambda meta: {**meta, "format_version": "1"}, "format version '1'"),
    "a future version": (lambda meta: {**meta, "format_version": 99}, "format version 99"),
    "a config of the wrong type": (lambda meta: {**meta, "config": {**meta["config"], "res_blocks": "two"}},
                                   "res_blocks"),
    "an unknown config key": (lambda meta: {**meta, "config": {**meta["config"], "evil": 1}}, "unknown config keys"),
    "another kind": (lambda meta: {**meta, "kind": "lm"}, "a 'lm' checkpoint, expected 'video_tokenizer'"),
}


@pytest.mark.parametrize("name", list(META_DAMAGE))
def test_a_checkpoints_json_of_the_wrong_shape_type_or_version_is_refused_in_one_line(name, tmp_path, media_env,
                                                                                     bad_media):
    change, says = META_DAMAGE[name]
    folder = tmp_path / "tok"
    shutil.copytree(media_env.tokenizer, folder)
    _edit_json(folder / "reelm.json", change)
    outcome = run_cli(["tokenizer", "encode", str(bad_media["unicode_name"]), "--tokenizer", str(folder), "-o",
                       str(tmp_path / "codes.npz"), "--no-progress"])
    assert outcome.kind == "refused" and outcome.error_lines == 1 and says in outcome.message, outcome.message


def test_other_metadata_of_the_wrong_type_or_version_is_refused_in_one_line(tmp_path, media_env, bad_media):
    codes = tmp_path / "codes.npz"
    assert run_cli(["tokenizer", "encode", str(bad_media["unicode_name"]), "--tokenizer", str(media_env.tokenizer),
                    "-o", str(codes), "--no-progress"]).kind == "used"
    import numpy as np

    with np.load(codes) as data:
        grid, meta = data["codes"], json.loads(str(data["meta"]))
    for change, says in ((lambda m: {**m, "fps": "fast"}, "fps 'fast'"), (lambda m: {**m, "version": 7}, "version 7"),
                         (lambda m: {**m, "tokenizer": "me"}, "tokenizer 'me'")):
        np.savez(tmp_path / "bad.npz", codes=grid, meta=np.array(json.dumps(change(meta))))
        outcome = run_cli(["tokenizer", "decode", str(tmp_path / "bad.npz"), "--tokenizer", str(media_env.tokenizer),
                           "-o", str(tmp_path / "d.mp4"), "--no-progress"])
        assert outcome.kind == "refused" and outcome.error_lines == 1 and says in outcome.message, outcome.message
    layout = tmp_path / "model"
    shutil.copytree(media_env.model, layout)
    _edit_json(layout / "token_layout.json", lambda m: {**m, "layout_version": 0})
    outcome = run_cli(["generate", "a red circle", "--model", str(layout), "-o", str(tmp_path / "g.mp4"),
                       "--no-progress"])
    assert outcome.kind == "refused" and "layout version 0" in outcome.message


# --- manifest paths outside the dataset root --------------------------------------------------------


def test_manifest_paths_are_read_wherever_they_lead_and_confined_to_the_root_on_request(tmp_path, media_env):
    """A manifest of paths elsewhere on disk (absolute or '../') is the common case and is read by default;
    --confine-to-root (for manifests from someone else) skips and records every path outside its folder."""
    root = tmp_path / "dataset"
    inside = make_corpus(root, ["unicode_name"])["unicode_name"]
    outside = unicode_name(tmp_path)  # a real video, one folder up
    (root / "sub").mkdir()
    rows = {
        "inside": os.path.relpath(inside, root),
        "parent": "../" + outside.name,
        "escape": "../../../../../../etc/passwd",
        "absolute": "/etc/passwd",
        "sneaky": "sub/../../" + outside.name,
    }
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps({"video": v, "caption": f"a {k} clip"}) + "\n" for k, v in rows.items()))
    argv = ["data", "tokenize", "--video-tokenizer", str(media_env.tokenizer), "--data", str(manifest),
            "--num-frames", "5", "--size", "32", "--text-vocab-size", "300", "--no-progress"]

    refused = run_cli([*argv, "--out", str(tmp_path / "shards"), "--confine-to-root"])
    assert refused.kind == "used" and "used 1, skipped 4, outside the dataset root: 4" in refused.message
    errors = [json.loads(line) for line in (tmp_path / "shards" / "errors.jsonl").read_text().splitlines()]
    assert {e["reason"] for e in errors} == {"outside the dataset root"}
    assert all("--confine-to-root" in e["detail"] for e in errors)

    allowed = run_cli([*argv, "--out", str(tmp_path / "allowed")])
    assert allowed.kind == "used" and "used 3, skipped 2, unreadable video: 2" in allowed.message
    errors = [json.loads(line) for line in (tmp_path / "allowed" / "errors.jsonl").read_text().splitlines()]
    assert sorted(e["video"] for e in errors) == ["/etc/passwd", str(root / rows["escape"])]
    absolute = tmp_path / "absolute.jsonl"  # a manifest elsewhere naming its videos by absolute path
    absolute.write_text(json.dumps({"video": str(outside.resolve()), "caption": "a clip elsewhere"}) + "\n")
    elsewhere = run_cli([*argv[:4], "--data", str(absolute), *argv[6:], "--out", str(tmp_path / "abs")])
    assert elsewhere.kind == "used" and "used 1, skipped 0" in elsewhere.message


def test_a_manifest_with_its_own_column_names_is_read_with_the_column_flags(tmp_path, media_env):
    video = unicode_name(tmp_path)
    for suffix, write in ((".jsonl", lambda p: p.write_text(json.dumps({"clip_path": str(video), "prompt": "a clip"})
                                                             + "\n")),
                          (".csv", lambda p: p.write_text(f"clip_path,prompt\n{video},a clip\n"))):
        manifest = tmp_path / f"mine{suffix}"
        write(manifest)
        argv = ["data", "tokenize", "--video-tokenizer", str(media_env.tokenizer), "--data", str(manifest),
                "--num-frames", "5", "--size", "32", "--text-vocab-size", "300", "--no-progress"]
        refused = run_cli([*argv, "--out", str(tmp_path / f"plain{suffix}")])
        assert refused.kind == "refused" and "no video column" in refused.message
        used = run_cli([*argv, "--video-column", "clip_path", "--caption-column", "prompt",
                        "--out", str(tmp_path / f"mapped{suffix}")])
        assert used.kind == "used" and "used 1, skipped 0" in used.message, used

def test_a_manifest_with_no_usable_row_is_refused_in_one_line_and_leaves_no_chunks(tmp_path, media_env):
    manifest = tmp_path / "nothing.jsonl"
    manifest.write_text(json.dumps({"video": str(tmp_path / "missing.mp4"), "caption": "a red circle"}) + "\n"
                        + json.dumps({"video": "/etc/passwd", "caption": "a blue square"}) + "\n")
    out = tmp_path / "shards"
    refused = run_cli(["data", "tokenize", "--video-tokenizer", str(media_env.tokenizer), "--data", str(manifest),
                       "--num-frames", "5", "--size", "32", "--text-vocab-size", "300", "--no-progress",
                       "--out", str(out)])
    assert refused.kind == "refused" and refused.error_lines == 1, refused
    assert "no usable clips in 2 rows" in refused.message and "skipped 2" in refused.message
    assert "errors.jsonl" in refused.message
    reasons = sorted(json.loads(line)["reason"] for line in (out / "errors.jsonl").read_text().splitlines())
    assert len(reasons) == 2
    assert not list((out / "parts").glob("*/chunk-*"))  # nothing half-made for the LM to read
