"""The quantizer adapter: one result type and exact code <-> index round trips for LFQ, FSQ and VQ."""

import pytest
import torch

from reelm.core.config import ConfigError
from reelm.core.errors import ReelmError
from reelm.tokenizer.quantizer import Quantizer, QuantizerConfig, usage_metrics

CONFIGS = {
    "lfq": QuantizerConfig(kind="lfq", codebook_size=2**8),
    "lfq-grouped": QuantizerConfig(kind="lfq", codebook_size=2**8, lfq_groups=2),
    "fsq": QuantizerConfig(kind="fsq", levels=(5, 4, 3)),
    "vq": QuantizerConfig(kind="vq", codebook_size=64, dim=6),
}


def _latents(q: Quantizer, seed: int = 0) -> torch.Tensor:
    return torch.randn(2, q.dim, 3, 4, 5, generator=torch.Generator().manual_seed(seed))  # (B, D, t, h, w)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_result_shapes_and_codes_indices_round_trip(name):
    torch.manual_seed(0)
    q = Quantizer(CONFIGS[name]).eval()
    z = _latents(q)
    out = q(z)
    assert out.codes.shape == z.shape and out.codes.dtype == torch.float32
    assert out.indices.shape == (2, 3, 4, 5) and out.indices.dtype == torch.long
    assert 0 <= int(out.indices.min()) and int(out.indices.max()) < q.codebook_size
    assert out.aux_loss.shape == () and torch.isfinite(out.aux_loss)
    assert out.indices.unique().numel() > 1
    codes = q.indices_to_codes(out.indices)
    torch.testing.assert_close(codes, out.codes)
    if name != "fsq":  # LFQ and VQ map their own codes to themselves (FSQ squashes its input first)
        assert torch.equal(q(codes).indices, out.indices)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_training_mode_passes_gradients_and_reports_metrics(name):
    torch.manual_seed(0)
    q = Quantizer(CONFIGS[name]).train()
    z = _latents(q).requires_grad_()
    out = q(z)
    (out.codes.square().sum() + out.aux_loss).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert {"codebook_usage", "perplexity"} <= set(out.metrics)
    assert all(v.shape == () and torch.isfinite(v) and not v.requires_grad for v in out.metrics.values())
    if name.startswith("lfq"):
        assert out.aux_loss.requires_grad and {"per_sample_entropy", "batch_entropy"} <= set(out.metrics)


def test_grouped_lfq_indices_equal_ungrouped_indices():
    plain = Quantizer(CONFIGS["lfq"]).eval()
    grouped = Quantizer(CONFIGS["lfq-grouped"]).eval()
    z = _latents(plain, seed=1)
    a, b = plain(z), grouped(z)
    assert torch.equal(a.indices, b.indices)
    torch.testing.assert_close(grouped.indices_to_codes(a.indices), plain.indices_to_codes(a.indices))


def test_vq_codebook_moves_with_ema_only_in_training():
    q = Quantizer(CONFIGS["vq"])
    before = q.impl.codebook.clone()
    q.eval()(_latents(q))
    assert torch.equal(q.impl.codebook, before)
    q.train()(_latents(q))
    assert not torch.equal(q.impl.codebook, before)


def test_usage_metrics():
    m = usage_metrics(torch.zeros(2, 3, 4, dtype=torch.long), codebook_size=8)
    assert float(m["codebook_usage"]) == pytest.approx(1 / 8) and float(m["perplexity"]) == pytest.approx(1.0)
    m = usage_metrics(torch.arange(8).repeat(3), codebook_size=8)
    assert float(m["codebook_usage"]) == pytest.approx(1.0) and float(m["perplexity"]) == pytest.approx(8.0)


def test_bad_indices_and_configs_are_clear_errors():
    q = Quantizer(CONFIGS["fsq"])
    with pytest.raises(ReelmError, match=r"must lie in \[0, 60\), got values in \[60, 60\]"):
        q.indices_to_codes(torch.full((1, 1, 2, 2), 60))
    with pytest.raises(ReelmError, match="integer"):
        q.indices_to_codes(torch.zeros(1, 1, 2, 2))
    with pytest.raises(ConfigError, match="power of 2"):
        Quantizer(QuantizerConfig(kind="lfq", codebook_size=1000))
    with pytest.raises(ConfigError, match="lfq_groups"):
        Quantizer(QuantizerConfig(kind="lfq", codebook_size=2**9, lfq_groups=2))
    with pytest.raises(ConfigError, match="choose from"):
        Quantizer(QuantizerConfig(kind="rvq"))
    with pytest.raises(ConfigError, match="levels"):
        Quantizer(QuantizerConfig(kind="fsq", levels=(8, 2)))
