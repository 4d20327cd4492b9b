"""From command-line strings to the typed configs the trainers take: the one place ``--set`` meets a preset.

The library's trainers take config objects (:func:`reelm.tokenizer.train.train`,
:func:`reelm.lm.train.train`); a command starts from a preset (a new run) or from the run's
saved configs (``--resume``) and applies its ``--set KEY=VALUE`` overrides on top:
``model.KEY=V`` for the model, ``KEY=V`` (or ``train.KEY=V``) for training
(:func:`reelm.core.config.split_overrides`).
"""

from __future__ import annotations

from typing import Callable, Sequence, TypeVar

from reelm.core.config import ConfigError, apply_overrides, split_overrides

M = TypeVar("M")
T = TypeVar("T")


def run_configs(preset: str | None, overrides: Sequence[str], *, saved: tuple[M, T] | None,
                presets: Callable[[str], tuple[M, T]], choices: str) -> tuple[M, T]:
    """``(model config, training config)``: ``presets(preset)`` (or ``saved`` on resume) plus ``overrides``."""
    if preset is None and saved is None:
        raise ConfigError(f"--preset is required for a new run (choose {choices})")
    model_cfg, train_cfg = presets(preset) if preset is not None else saved
    model_sets, train_sets = split_overrides(list(overrides))
    return apply_overrides(model_cfg, model_sets, prefix="model."), apply_overrides(train_cfg, train_sets)
