"""From command-line strings to the typed configs the trainers take: the one place ``--set`` meets a preset.

The library's trainers take config objects (:func:`reelm.tokenizer.train.train`,
:func:`reelm.lm.train.train`); a command starts from a preset (a new run) or from the run's
saved configs (``--resume``), lays a config file over it (``--config FILE``: YAML or JSON with
the sections ``preset``, ``model`` and ``train``, the layout ``--print-config`` prints) and
applies its ``--set KEY=VALUE`` overrides on top: ``model.KEY=V`` for the model, ``KEY=V`` (or
``train.KEY=V``) for training (:func:`reelm.core.config.split_overrides`). Flags win over the
file, the file over the preset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence, TypeVar

from reelm.core.config import ConfigError, apply_overrides, dump_config, merge_settings, read_config_file, \
    split_overrides, to_dict

M = TypeVar("M")
T = TypeVar("T")

FILE_SECTIONS = ("preset", "model", "train")


def run_configs(preset: str | None, overrides: Sequence[str], *, saved: tuple[M, T] | None,
                presets: Callable[[str], tuple[M, T]], choices: str,
                config_file: str | Path | None = None) -> tuple[M, T]:
    """``(model config, training config)``: ``presets(preset)`` (or ``saved`` on resume), then ``config_file``'s
    sections, then ``overrides``. A preset named in the file is used when ``preset`` is None."""
    settings = trainer_settings(config_file) if config_file is not None else {}
    if saved is None:
        preset = chosen_preset(preset, settings)
        if preset is None:
            raise ConfigError(f"--preset is required for a new run (choose {choices}; or name one in --config's "
                              "'preset')")
        if not isinstance(preset, str):
            raise ConfigError(f"{config_file}: preset: expected a preset name ({choices}), got {preset!r}")
    model_cfg, train_cfg = saved if saved is not None else presets(preset)
    if "model" in settings:
        model_cfg = merge_settings(model_cfg, settings["model"], where=f"{config_file}: model")
    if "train" in settings:
        train_cfg = merge_settings(train_cfg, settings["train"], where=f"{config_file}: train")
    model_sets, train_sets = split_overrides(list(overrides))
    return apply_overrides(model_cfg, model_sets, prefix="model."), apply_overrides(train_cfg, train_sets)


def chosen_preset(preset: str | None, settings: dict) -> str | None:
    """The preset a new run starts from: the flag's, else the one the config file names."""
    return preset if preset is not None else settings.get("preset")


def trainer_settings(path: str | Path) -> dict:
    """A trainer's config file: only the sections ``preset``, ``model`` and ``train``."""
    settings = read_config_file(path)
    unknown = sorted(set(settings) - set(FILE_SECTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown sections {unknown} (a trainer's config file has {list(FILE_SECTIONS)}; "
                          "training keys go under 'train')")
    return settings


def print_run_configs(preset: str | None, config_file: str | Path | None, model_cfg, train_cfg) -> None:
    """``--print-config``: the resolved configs as YAML on stdout, in the layout ``--config`` reads."""
    preset = chosen_preset(preset, trainer_settings(config_file) if config_file is not None else {})
    payload = {"preset": preset} if preset is not None else {}
    print(dump_config({**payload, "model": to_dict(model_cfg), "train": to_dict(train_cfg)}), end="")


def settings_from_flags(cfg: T, args, what: str, flags: Sequence[tuple[str, object]] = ()) -> T:
    """A one-config command's settings: ``cfg`` with ``--config FILE`` laid over it (errors name the file and
    ``what``), then the typed flags given (``(key, value)`` pairs, ``None`` where a flag was not given), then
    ``--set KEY=VALUE``: flags win over the file, the file over the defaults."""
    if args.config is not None:
        cfg = merge_settings(cfg, read_config_file(args.config), where=f"{args.config}: {what}")
    given = [f"{key}={value}" for key, value in flags if value is not None]
    return apply_overrides(cfg, [*given, *args.overrides])

