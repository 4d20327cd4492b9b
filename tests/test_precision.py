"""Training precision: bf16 where the device multiplies bf16 natively (GPUs, AMX / AVX512-BF16 CPUs), fp32 elsewhere."""

from pathlib import Path

import pytest
import torch

import reelm.core.device as device_module
from reelm.core.config import apply_overrides
from reelm.core.device import native_bf16, train_in_bf16
from reelm.core.errors import ReelmError
from reelm.lm.ds_config import load_deepspeed_config, resolve_deepspeed_config
from reelm.lm.train import LMTrainConfig
from reelm.tokenizer.model import PRESETS
from reelm.tokenizer.train import TokenizerTrainConfig, TokenizerTrainer

CPU = torch.device("cpu")


def _cpu_flags() -> set[str] | None:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return None
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return None


def test_native_bf16_follows_the_cpus_own_flags():
    flags = _cpu_flags()
    if flags is None:
        pytest.skip("no /proc/cpuinfo flags to compare with")
    assert native_bf16(CPU) == bool({"amx_bf16", "avx512_bf16"} & flags)


def test_the_precision_setting_decides(monkeypatch):
    assert train_in_bf16(CPU, "fp32") is False
    assert train_in_bf16(CPU, "auto") == native_bf16(CPU)
    monkeypatch.setattr(device_module, "native_bf16", lambda device: False)
    assert train_in_bf16(CPU, "auto") is False
    with pytest.raises(ReelmError, match="precision=bf16: this CPU has no native bf16"):
        train_in_bf16(CPU, "bf16")
    with pytest.raises(ReelmError, match="precision 'fp16': choose from auto, bf16, fp32"):
        train_in_bf16(CPU, "fp16")
    monkeypatch.setattr(device_module, "native_bf16", lambda device: True)
    assert train_in_bf16(CPU, "bf16") is True and train_in_bf16(CPU, "auto") is True


def test_bf16_is_torch_autocast_on_cpus_and_deepspeed_bf16_on_gpus():
    cfg = LMTrainConfig(zero_stage=2)  # as train() resolves it before the DeepSpeed config
    on_cpu = resolve_deepspeed_config(load_deepspeed_config("zero2"), cfg, world_size=1, bf16=True, device_type="cpu")
    assert on_cpu["bf16"]["enabled"] is False
    assert on_cpu["torch_autocast"] == {"enabled": True, "dtype": "bfloat16"}
    on_gpu = resolve_deepspeed_config(load_deepspeed_config("zero2"), cfg, world_size=1, bf16=True, device_type="cuda")
    assert on_gpu["bf16"]["enabled"] is True and "torch_autocast" not in on_gpu
    fp32 = resolve_deepspeed_config(load_deepspeed_config("zero2"), cfg, world_size=1, bf16=False, device_type="cpu")
    assert fp32["bf16"]["enabled"] is False and "torch_autocast" not in fp32
    with pytest.raises(ReelmError, match="torch_autocast.enabled is true but the training config trains in fp32"):
        resolve_deepspeed_config({"torch_autocast": {"enabled": True}}, cfg, world_size=1, bf16=False,
                                 device_type="cpu")


def _conv_dtypes_of_one_step(tmp_path, precision: str) -> set[torch.dtype]:
    cfg = apply_overrides(TokenizerTrainConfig(steps=1, checkpoint_every=1, log_every=1),
                          ["clip.num_frames=5", "clip.size=32", "batch_size=2", f"precision={precision}"])
    trainer = TokenizerTrainer(PRESETS["tiny"](), cfg, tmp_path / precision, progress=False, device="cpu")
    seen: set[torch.dtype] = set()
    hooks = [module.register_forward_hook(lambda m, i, out: seen.add(out.dtype))
             for module in trainer.model.modules() if isinstance(module, torch.nn.Conv3d)]
    logs = trainer.train_step()
    for hook in hooks:
        hook.remove()
    assert torch.isfinite(torch.tensor(logs["loss"]))
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # weights stay fp32
    return seen


def test_tokenizer_training_computes_in_bf16_only_where_native(tmp_path):
    assert _conv_dtypes_of_one_step(tmp_path, "fp32") == {torch.float32}
    expected = {torch.bfloat16} if native_bf16(CPU) else {torch.float32}
    assert _conv_dtypes_of_one_step(tmp_path, "auto") == expected


def test_a_bad_precision_is_a_config_error(tmp_path):
    from reelm.tokenizer.train import check_config

    with pytest.raises(ReelmError, match="precision='half': choose from auto, bf16, fp32"):
        check_config(apply_overrides(TokenizerTrainConfig(), ["precision=half"]))


def test_a_run_saved_before_the_setting_resumes_in_the_precision_it_ran_in(tmp_path, monkeypatch):
    import json

    from reelm.core.checkpoint_format import list_checkpoints
    from reelm.core.device import saved_precision
    from reelm.tokenizer.train import saved_configs, train

    assert saved_precision({"precision": "bf16", "lr": 1.0}) == {"precision": "bf16", "lr": 1.0}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert saved_precision({"lr": 1.0})["precision"] == "auto"  # it ran in bf16 on a GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert saved_precision({"lr": 1.0})["precision"] == "fp32"  # it ran in fp32 on a CPU
    cfg = apply_overrides(TokenizerTrainConfig(steps=4, checkpoint_every=2, log_every=1),
                          ["clip.num_frames=5", "clip.size=32", "batch_size=2"])
    run = tmp_path / "old"
    train(run, model=PRESETS["tiny"](), config=cfg, progress=False, device="cpu", stop_at=2)
    config_file = list_checkpoints(run)[-1][1] / "train_config.json"
    old = json.loads(config_file.read_text())
    del old["precision"]  # as a checkpoint written before the setting existed
    config_file.write_text(json.dumps(old))
    assert saved_configs(run)[1].precision == "fp32"
    train(run, resume=True, progress=False, device="cpu")  # resumes, no "precision changed" refusal
    assert [step for step, _ in list_checkpoints(run)][-1] == 4
