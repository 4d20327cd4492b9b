"""The DeepSpeed engine reelm builds: on one rank under ZeRO 0 it skips the all-reduce and steps like plain AdamW."""

import pytest
import torch

from reelm.core.distributed import init_distributed, shutdown_distributed
from reelm.lm.deepspeed_setup import build_engine, build_optimizer
from reelm.lm.ds_config import load_deepspeed_config, resolve_deepspeed_config
from reelm.lm.model import build_model, preset
from reelm.lm.train import LMTrainConfig


@pytest.fixture(scope="module", autouse=True)
def _isolated(single_thread_isolated):
    """One thread, the environment restored, and a one-rank process group for the engines."""
    init_distributed("cpu", need_group=True)
    yield
    shutdown_distributed()


def tiny_model():
    torch.manual_seed(0)
    return build_model(preset("tiny"), 64, bos_id=0, eos_id=1, pad_id=2, attn_implementation="sdpa").train()


def engine_for(stage: int):
    cfg = LMTrainConfig(micro_batch_size=2, block_size=16, steps=10, warmup_steps=0, zero_stage=stage)
    config = resolve_deepspeed_config(load_deepspeed_config(f"zero{stage}"), cfg, world_size=1, bf16=False,
                                      device_type="cpu")
    engine, _ = build_engine(tiny_model(), cfg, config)
    return engine, cfg


def loss_of(model, ids):
    return model(input_ids=ids, labels=ids, use_cache=False).loss


def test_one_rank_zero0_skips_the_all_reduce_and_steps_like_plain_adamw():
    engine, cfg = engine_for(0)
    assert engine.enable_backward_allreduce is False
    ids = torch.randint(3, 64, (2, 16), generator=torch.Generator().manual_seed(1))
    engine.backward(loss_of(engine, ids))
    engine.step()

    plain = tiny_model()
    optimizer = build_optimizer(plain, cfg)
    loss_of(plain, ids).backward()
    torch.nn.utils.clip_grad_norm_(plain.parameters(), cfg.grad_clip)
    optimizer.step()  # at the schedule's first lr, cfg.lr (no warm-up)
    initial = dict(tiny_model().named_parameters())
    moved = 0
    for (name, stepped), expected in zip(engine.module.named_parameters(), plain.parameters()):
        torch.testing.assert_close(stepped, expected, msg=name)
        moved += int(not torch.equal(stepped, initial[name]))
    assert moved > 0  # the step did change weights, identically


@pytest.mark.parametrize("stage", [1, 2])
def test_zero1_and_2_keep_their_own_reduction(stage):
    engine, _ = engine_for(stage)
    assert engine.enable_backward_allreduce is True  # their optimizers gather the gradients through it


def test_zero0_reports_the_gradient_norm_before_clipping_as_zero2_does():
    ids = torch.randint(3, 64, (2, 16), generator=torch.Generator().manual_seed(1))
    norms = {}
    for stage in (0, 2):
        engine, cfg = engine_for(stage)
        engine.backward(loss_of(engine, ids))
        engine.step()
        norms[stage] = float(engine.get_global_grad_norm())
    plain = tiny_model()
    loss_of(plain, ids).backward()
    expected = float(torch.nn.utils.get_total_norm([p.grad for p in plain.parameters()]))
    assert expected > cfg.grad_clip  # the step clipped: the norm reported is the one before clipping
    assert norms[0] == pytest.approx(expected, rel=1e-4) and norms[2] == pytest.approx(expected, rel=1e-4)
