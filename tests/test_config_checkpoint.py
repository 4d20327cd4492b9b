"""The config system and the checkpoint format shared by every trained model."""

import json
import random
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from reelm.core import checkpoint_format as ckpt
from reelm.core.config import ConfigError, apply_overrides, from_dict, resolve_preset, to_dict


@dataclass(kw_only=True)
class Inner:
    levels: tuple[int, ...] = (8, 5, 5)
    weight: float = 0.1


@dataclass(kw_only=True)
class Outer:
    name: str = "tiny"
    width: int = 32
    inner: Inner = field(default_factory=Inner)
    path: str | None = None
    stage: int | str = "auto"


def test_config_round_trips_through_json():
    cfg = Outer(width=64, inner=Inner(levels=(4, 4), weight=1), path="/x")
    again = from_dict(Outer, json.loads(json.dumps(to_dict(cfg))))
    assert again == cfg
    assert isinstance(again.inner.levels, tuple) and isinstance(again.inner.weight, float)


def test_unknown_keys_and_presets_are_errors():
    with pytest.raises(ConfigError, match="unknown config keys"):
        from_dict(Outer, {"widht": 3})
    with pytest.raises(ConfigError, match="choose from"):
        resolve_preset({"tiny": Outer}, "huge", "tokenizer")


def test_overrides_parse_values_and_reject_unknown_keys():
    cfg = apply_overrides(Outer(), ["width=128", "inner.weight=0.5", "inner.levels=[2,2]", "name=small"])
    assert (cfg.width, cfg.inner.weight, cfg.inner.levels, cfg.name) == (128, 0.5, (2, 2), "small")
    with pytest.raises(ConfigError):
        apply_overrides(Outer(), ["inner.nope=1"])
    with pytest.raises(ConfigError):
        apply_overrides(Outer(), ["width"])
    # a field of numbers or strings reads a number as a number, anything else as the string
    assert apply_overrides(Outer(), ["stage=2"]).stage == 2 and apply_overrides(Outer(), ["stage=auto"]).stage == "auto"
    assert apply_overrides(Outer(), ["stage=true"]).stage == "true" and apply_overrides(Outer(), ["name=2"]).name == "2"


def _write(step_value):
    def write(folder):
        ckpt.write_meta(folder, "toy", {"step": step_value})
        ckpt.save_state(folder, "trainer_state", {"step": step_value})
    return write


def test_checkpoints_are_atomic_listed_and_pruned(tmp_path):
    for step in (10, 20, 30):
        ckpt.save_checkpoint(tmp_path, step, _write(step), keep_last=2)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [20, 30]
    # A save that dies half-way leaves a staging folder that is never taken for a checkpoint.
    staged = ckpt.staging_dir(tmp_path, 40)
    staged.mkdir()
    (staged / "model.safetensors").write_bytes(b"partial")
    latest = ckpt.resolve_checkpoint(tmp_path)
    assert latest.name == "step-000030"
    assert ckpt.read_meta(latest, "toy")["config"] == {"step": 30}
    # Re-saving an existing step replaces it whole.
    ckpt.save_checkpoint(tmp_path, 30, _write(31))
    assert ckpt.load_state(ckpt.resolve_checkpoint(tmp_path), "trainer_state") == {"step": 31}


def test_meta_errors_are_clear(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="not found"):
        ckpt.resolve_checkpoint(tmp_path / "missing")
    with pytest.raises(ckpt.CheckpointError, match="neither a checkpoint"):
        ckpt.resolve_checkpoint(tmp_path)
    ckpt.save_checkpoint(tmp_path, 1, _write(1))
    with pytest.raises(ckpt.CheckpointError, match="expected 'video_tokenizer'"):
        ckpt.read_meta(ckpt.resolve_checkpoint(tmp_path), "video_tokenizer")


def test_nested_state_round_trips_without_pickle(tmp_path):
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    state = {"optimizer": opt.state_dict(), "rng": ckpt.capture_rng(), "position": (3, 7), "none": None}
    ckpt.save_state(tmp_path, "s", state)
    again = ckpt.load_state(tmp_path, "s")
    opt2 = torch.optim.AdamW(torch.nn.Linear(4, 3).parameters(), lr=1e-3)
    opt2.load_state_dict(again["optimizer"])
    for k in ("exp_avg", "exp_avg_sq"):
        assert torch.equal(opt2.state_dict()["state"][0][k], opt.state_dict()["state"][0][k])
    assert again["position"] == (3, 7) and again["none"] is None
    assert not list(tmp_path.glob("*.pt")) and not list(tmp_path.glob("*.pkl"))


def test_rng_restore_replays_the_same_draws(tmp_path):
    ckpt.save_state(tmp_path, "rng", ckpt.capture_rng())
    first = (torch.rand(3), np.random.rand(3), random.random())
    ckpt.restore_rng(ckpt.load_state(tmp_path, "rng"))
    second = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1]) and first[2] == second[2]
