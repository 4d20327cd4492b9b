"""Pre-tokenization into shards: bad rows reported, kill-and-resume equals one uninterrupted run."""

import json
import shutil

import numpy as np
import pytest
import torch

from reelm.core.config import apply_overrides
from reelm.data.clip_sampling import ClipSpec
from reelm.data.shards import ShardError, chunk_folders, load_shards
from reelm.data.video_write import write_mp4
from reelm.tokenizer.tokenizer_checkpoint import load_tokenizer, save_tokenizer
from reelm.tokenizer.model import PRESETS, VideoTokenizer
from reelm.tokenizer.pretokenize import TokenizeConfig, tokenize_dataset

SPEC = ClipSpec(num_frames=5, fps=8.0, size=32)


@pytest.fixture(scope="module")
def video_tokenizer(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("vtok")
    save_tokenizer(VideoTokenizer(PRESETS["tiny"]()).eval(), folder)
    return folder


def _columns(shards):
    table = shards.dataset.sort(["row", "clip"])
    return {name: table[name] for name in ("codes", "grid", "caption_ids", "row", "source")}


def test_synthetic_shards_resume_without_duplicates(tmp_path, video_tokenizer):
    cfg = TokenizeConfig(clip=SPEC, num_clips=12, chunk_rows=4, batch_size=3, text_vocab_size=300)
    whole = tokenize_dataset("synthetic", video_tokenizer, tmp_path / "whole", cfg, progress=False)
    assert whole["clips"] == 12 and whole["skipped"] == 0
    # A "killed" run: one finished chunk removed, one half-written staging folder left behind.
    killed = tmp_path / "killed"
    shutil.copytree(tmp_path / "whole", killed)
    last = chunk_folders(killed)[-1]
    shutil.move(last, last.parent / f".{last.name}.partial")
    (killed / "errors.jsonl").unlink()
    again = tokenize_dataset("synthetic", video_tokenizer, killed, cfg, progress=False)
    assert again["clips"] == 12 and again["clips_this_run"] == 4  # only the missing chunk
    a, b = _columns(load_shards(tmp_path / "whole")), _columns(load_shards(killed))
    assert a == b and sorted(a["row"]) == list(range(12))
    shards = load_shards(killed)
    t, h, w = shards.dataset[0]["grid"]
    assert (t, h, w) == (2, 4, 4) and len(shards.dataset[0]["codes"]) == t * h * w
    assert shards.layout.latent_hw == (h, w)
    assert json.loads(shards.dataset[0]["attributes"])["index"] == shards.dataset[0]["row"]
    # The same folder with other settings is refused rather than mixed.
    with pytest.raises(ShardError, match="another job"):
        tokenize_dataset("synthetic", video_tokenizer, killed, apply_overrides(cfg, ["seed=1"]), progress=False)


def test_manifest_with_bad_rows_is_reported(tmp_path, video_tokenizer):
    t = np.arange(40)[:, None, None, None]
    frames = np.broadcast_to((t * 6 + np.arange(48)[None, None, :, None] * 3) % 256, (40, 48, 48, 3)).astype(np.uint8)
    good = write_mp4(tmp_path / "good.mp4", frames, fps=20)
    (tmp_path / "corrupt.mp4").write_bytes(good.read_bytes()[:600])
    rows = [("good.mp4", "a gradient"), ("missing.mp4", "gone"), ("corrupt.mp4", "broken"), ("good.mp4", "again")]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"video": v, "caption": c}) + "\n" for v, c in rows))
    cfg = TokenizeConfig(clip=SPEC, chunk_rows=2, text_vocab_size=270, workers=1)
    out = tmp_path / "shards"
    summary = tokenize_dataset(manifest, video_tokenizer, out, cfg, progress=False)
    assert summary["clips"] == 2 and summary["skipped_by_reason"] == {"missing file": 1, "unreadable video": 1}
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert sorted(e["index"] for e in errors) == [1, 2]
    assert load_shards(out).dataset.num_rows == 2
    # Re-running a finished job writes nothing new.
    assert tokenize_dataset(manifest, video_tokenizer, out, cfg, progress=False)["clips_this_run"] == 0


def test_parallel_parts_cover_the_source_once(tmp_path, video_tokenizer):
    base = TokenizeConfig(clip=SPEC, num_clips=6, chunk_rows=2, text_vocab_size=300, num_shards=2)
    for index in (0, 1):
        tokenize_dataset("synthetic", video_tokenizer, tmp_path, apply_overrides(base, [f"shard_index={index}"]),
                         progress=False)
    rows = load_shards(tmp_path).dataset["row"]
    assert sorted(rows) == list(range(6))


def test_the_synthetic_worlds_options_reach_pre_tokenization(tmp_path, video_tokenizer, capsys):
    from reelm.cli import main

    out = tmp_path / "shards"
    assert main(["data", "tokenize", "--video-tokenizer", str(video_tokenizer), "--data", "synthetic",
                 "--num-clips", "4", "--out", str(out), "--num-frames", "5", "--size", "32", "--no-progress",
                 "--text-vocab-size", "300", "--max-objects", "1", "--plain-backgrounds", "--split", "heldout",
                 "--start", "10", "--shapes", "circle,square,triangle", "--start-positions", "independent"]) == 0
    shards = load_shards(out)
    info = json.loads((out / "shards.json").read_text())
    from reelm.data.synthetic.scene import COLORS, MOTIONS, SIZES, SPEEDS

    assert info["world"] == {"split": "heldout", "max_objects": 1, "textured_backgrounds": False, "start": 10,
                             "shapes": ["circle", "square", "triangle"], "colors": list(COLORS),
                             "sizes": list(SIZES), "motions": list(MOTIONS), "speeds": list(SPEEDS),
                             "start_positions": "independent"}
    for record in shards.dataset:
        attributes = json.loads(record["attributes"])
        assert attributes["index"] == 10 + record["row"] and attributes["split"] == "heldout"
        assert len(attributes["objects"]) == 1 and attributes["background"]["kind"] == "plain"
        assert attributes["objects"][0]["shape"] in ("circle", "square", "triangle")
    assert shards.video_tokenizer is not None and (shards.video_tokenizer / "model.safetensors").is_file()


def test_bf16_encoding_is_recorded_and_refused_where_bf16_is_not_native(tmp_path, video_tokenizer, monkeypatch):
    from reelm.core import device as device_module
    from reelm.core.errors import ReelmError

    cfg = TokenizeConfig(clip=SPEC, num_clips=6, chunk_rows=6, batch_size=3, text_vocab_size=300)
    exact = tokenize_dataset("synthetic", video_tokenizer, tmp_path / "fp32", cfg, progress=False)
    assert "encode_precision" not in load_shards(tmp_path / "fp32").info  # fp32 folders read as before
    monkeypatch.setattr(device_module, "native_bf16", lambda device: True)  # autocast runs (emulated) anywhere
    fast = tokenize_dataset("synthetic", video_tokenizer, tmp_path / "bf16", apply_overrides(cfg, ["precision=bf16"]),
                            progress=False)
    assert exact["clips"] == fast["clips"] == 6
    shards = load_shards(tmp_path / "bf16")
    assert shards.info["encode_precision"] == "bf16"
    a, b = _columns(load_shards(tmp_path / "fp32")), _columns(shards)
    assert a["grid"] == b["grid"] and a["caption_ids"] == b["caption_ids"]  # only codes may differ
    codes = np.concatenate([np.asarray(c) for c in b["codes"]])
    assert codes.min() >= 0 and codes.max() < shards.layout.codebook_size
    # the two precisions never mix in one folder
    with pytest.raises(ShardError, match="another job"):
        tokenize_dataset("synthetic", video_tokenizer, tmp_path / "fp32", apply_overrides(cfg, ["precision=bf16"]),
                         progress=False)
    monkeypatch.setattr(device_module, "native_bf16", lambda device: False)
    with pytest.raises(ReelmError, match="precision=bf16"):
        tokenize_dataset("synthetic", video_tokenizer, tmp_path / "x", apply_overrides(cfg, ["precision=bf16"]),
                         progress=False)


def test_a_compiled_encoder_gives_the_codes_of_the_eager_one_and_pads_short_batches(tmp_path, video_tokenizer):
    from reelm.core.device import cxx_compiler

    if cxx_compiler() is None:
        pytest.skip("torch.compile on a CPU needs a C++ compiler")
    cfg = TokenizeConfig(clip=SPEC, num_clips=5, chunk_rows=5, batch_size=4, text_vocab_size=300)  # a short last batch
    tokenize_dataset("synthetic", video_tokenizer, tmp_path / "eager", cfg, progress=False)
    tokenize_dataset("synthetic", video_tokenizer, tmp_path / "compiled", apply_overrides(cfg, ["compile=true"]),
                     progress=False)
    compiled = load_shards(tmp_path / "compiled")
    assert compiled.info["encode_compiled"] is True
    # the embedded video tokenizer is the plain one, under its own identity: LM runs and generation load it
    assert compiled.info["video_tokenizer"] == load_shards(tmp_path / "eager").info["video_tokenizer"]
    reloaded = load_tokenizer(compiled.video_tokenizer)
    assert not any("_orig_mod" in key for key in reloaded.state_dict())
    a, b = _columns(load_shards(tmp_path / "eager")), _columns(compiled)
    assert a["row"] == b["row"] == list(range(5)) and a["grid"] == b["grid"]
    codes_a, codes_b = (np.concatenate([np.asarray(c) for c in x["codes"]]) for x in (a, b))
    assert (codes_a != codes_b).mean() <= 0.01  # the same arithmetic reordered: at most a boundary code or two


def test_a_model_or_shard_folders_tokenizer_makes_shards_of_the_same_layout(tmp_path, video_tokenizer):
    """Fine-tuning shards: ``--text-tokenizer`` naming a layout's tokenizer.json (a model folder's, a shard folder's
    ``layout/``) reuses that layout whole, as ``reelm lm train --init-from`` requires; a plain one builds anew."""
    from reelm.data.token_layout import LayoutError, TokenLayout

    cfg = TokenizeConfig(clip=SPEC, num_clips=4, chunk_rows=4, batch_size=4, text_vocab_size=300)
    tokenize_dataset("synthetic", video_tokenizer, tmp_path / "first", cfg, progress=False)
    first = load_shards(tmp_path / "first").layout
    model_like = tmp_path / "model"
    first.save(model_like)  # a model folder holds token_layout.json beside tokenizer.json, as a layout folder does
    for given in (tmp_path / "first" / "layout" / "tokenizer.json", model_like / "tokenizer.json", model_like):
        out = tmp_path / f"again-{given.parent.name}-{given.name}"
        tokenize_dataset("synthetic", video_tokenizer, out, apply_overrides(cfg, [f"text_tokenizer={given}"]),
                         progress=False)
        assert load_shards(out).layout == first == TokenLayout.load(out / "layout")
    torch.manual_seed(1)
    other = tmp_path / "other_vtok"
    save_tokenizer(VideoTokenizer(PRESETS["tiny"]()).eval(), other)
    with pytest.raises(LayoutError, match="its layout belongs to another video tokenizer"):
        tokenize_dataset("synthetic", other, tmp_path / "bad", apply_overrides(
            cfg, [f"text_tokenizer={model_like / 'tokenizer.json'}"]), progress=False)
    with pytest.raises(LayoutError, match=r"its layout .* is for \d+ codes on a 4x4 grid, the video tokenizer makes"):
        tokenize_dataset("synthetic", video_tokenizer, tmp_path / "bad2", apply_overrides(
            cfg, ["text_tokenizer=" + str(model_like / "tokenizer.json"), "clip.size=64"]), progress=False)
