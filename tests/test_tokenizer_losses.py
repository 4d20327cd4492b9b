"""Tokenizer losses: reconstruction / quantizer terms, the adversarial path, LeCam, adaptive weight, LPIPS."""

import pytest
import torch
from safetensors.torch import save_file

from reelm.core.checkpoint_format import CheckpointError
from reelm.core.config import ConfigError
from reelm.core.errors import ReelmError
from reelm.tokenizer.discriminator import Discriminator, DiscriminatorConfig
from reelm.tokenizer.losses import LeCamEMA, LossConfig, TokenizerLoss, adaptive_weight, hinge_d_loss
from reelm.tokenizer.model import TokenizerConfig, VideoTokenizer
from reelm.tokenizer.perceptual import LPIPS, load_lpips
from reelm.tokenizer.quantizer import QuantizerConfig

SMALL_DISC = DiscriminatorConfig(channels=(8, 16), norm_groups=4)


def _model() -> VideoTokenizer:
    torch.manual_seed(0)
    cfg = TokenizerConfig(channels=(8, 16, 16), patch_size=2, res_blocks=1, norm_groups=4,
                          quantizer=QuantizerConfig(kind="lfq", codebook_size=2**6))
    return VideoTokenizer(cfg).train()


def _video(frames: int = 5, size: int = 16) -> torch.Tensor:
    return torch.rand(2, 3, frames, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1


@pytest.fixture(scope="module")
def lpips_file(tmp_path_factory):
    """Random LPIPS-VGG16 weights in a local safetensors file (real ones are never downloaded)."""
    torch.manual_seed(0)
    net = LPIPS()
    with torch.no_grad():
        for k in range(5):
            getattr(net, f"lin{k}").model[1].weight.uniform_(0, 1)  # LPIPS heads are non-negative
    path = tmp_path_factory.mktemp("lpips") / "lpips_vgg16.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path, net


def test_reconstruction_and_quantizer_terms():
    model, x = _model(), _video()
    recon, quant = model(x)
    for recon_kind, expected in [("l1", (recon - x).abs().mean()), ("l2", (recon - x).square().mean())]:
        loss = TokenizerLoss(LossConfig(recon=recon_kind, quantizer_weight=2.0))
        terms = loss.generator_loss(x, recon, quant, step=0)
        assert set(terms) == {"recon", "quantizer", "loss"} and loss.discriminator is None
        torch.testing.assert_close(terms["recon"], expected)
        torch.testing.assert_close(terms["loss"], expected + 2.0 * quant.aux_loss)
    terms["loss"].backward()
    assert model.encoder.conv_in.weight.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="loss.recon"):
        TokenizerLoss(LossConfig(recon="l3"))


def test_adversarial_generator_and_discriminator_steps():
    model, x = _model(), _video()
    loss = TokenizerLoss(LossConfig(adversarial_weight=0.5, adversarial_start=3, discriminator=SMALL_DISC))
    recon, quant = model(x)
    assert not loss.adversarial_active(2) and "adversarial" not in loss.generator_loss(x, recon, quant, step=2)

    assert loss.adversarial_active(3)
    terms = loss.generator_loss(x, recon, quant, step=3, last_layer=model.last_layer)
    assert torch.isfinite(terms["adversarial"]) and 0 < float(terms["adaptive_weight"]) < 1e4
    expected = terms["recon"] + terms["quantizer"] + 0.5 * terms["adaptive_weight"] * terms["adversarial"]
    torch.testing.assert_close(terms["loss"], expected)
    terms["loss"].backward()
    assert model.last_layer.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss.discriminator.parameters())  # the generator step leaves D alone
    assert all(p.requires_grad for p in loss.discriminator.parameters())

    model.zero_grad()
    d_terms = loss.discriminator_loss(x, recon)
    assert {"loss", "hinge", "lecam", "logits_real", "logits_fake"} <= set(d_terms)
    assert all(torch.isfinite(v) for v in d_terms.values())
    d_terms["loss"].backward()
    assert all(p.grad is not None for p in loss.discriminator.parameters())
    assert all(p.grad is None for p in model.parameters())  # reconstructions are detached
    assert float(loss.lecam.real) != 0 and float(loss.lecam.fake) != 0


def test_adaptive_weight_is_the_gradient_norm_ratio():
    w = torch.nn.Parameter(torch.randn(4, 3))
    nll, gan = (3 * w).sum(), (w * 0.5).sum()
    assert float(adaptive_weight(nll, gan, w, max_weight=1e4)) == pytest.approx(6.0, rel=1e-3)
    assert float(adaptive_weight(nll, gan, w, max_weight=2.0)) == 2.0


def test_hinge_and_lecam_values():
    ones = torch.ones(2, 1, 3, 2, 2)
    assert float(hinge_d_loss(2 * ones, -2 * ones)) == 0.0
    assert float(hinge_d_loss(0 * ones, 0 * ones)) == 2.0
    lecam = LeCamEMA(decay=0.5)
    real, fake = torch.full((4,), 1.0), torch.full((4,), -3.0)
    penalty = lecam(real, fake)
    assert (float(lecam.real), float(lecam.fake)) == (0.5, -1.5)  # halfway from 0
    # relu(real - ema_fake)^2 + relu(ema_real - fake)^2 = 2.5^2 + 3.5^2
    assert float(penalty) == pytest.approx(2.5**2 + 3.5**2)


@pytest.mark.parametrize("conv", ["2+1d", "3d"])
def test_discriminator_gives_patch_logits(conv):
    disc = Discriminator(DiscriminatorConfig(channels=(8, 16, 16), norm_groups=4, conv=conv))
    assert disc(_video(17, 32)).shape == (2, 1, 5, 8, 8)


def test_training_state_round_trip_excludes_lpips(lpips_file):
    cfg = LossConfig(adversarial_weight=0.1, discriminator=SMALL_DISC, perceptual_path=str(lpips_file[0]))
    a, b = TokenizerLoss(cfg), TokenizerLoss(cfg)
    a.lecam.real.fill_(0.25)
    state = a.training_state()
    assert not any(k.startswith("perceptual.") for k in state) and "lecam.real" in state
    b.load_training_state(state)
    assert float(b.lecam.real) == 0.25
    with pytest.raises(CheckpointError, match="does not match loss config"):
        TokenizerLoss(LossConfig(discriminator=SMALL_DISC)).load_training_state(state)


def test_lpips_from_local_file(lpips_file):
    path, reference = lpips_file
    net = load_lpips(path)
    x, y = torch.rand(3, 3, 32, 32) * 2 - 1, torch.rand(3, 3, 32, 32) * 2 - 1
    d = net(x, y)
    assert d.shape == (3,) and (d > 0).all()
    torch.testing.assert_close(d, reference(x, y))
    torch.testing.assert_close(net(x, x), torch.zeros(3))
    assert not any(p.requires_grad for p in net.parameters()) and not net.train().training


def test_lpips_accepts_the_lpips_package_layout(lpips_file, tmp_path):
    path, reference = lpips_file
    slices = {0: 1, 4: 2, 9: 3, 16: 4, 23: 5}  # first vgg16().features index of each lpips slice
    renamed = {}
    for key, value in reference.state_dict().items():
        if key.startswith("features."):
            index = int(key.split(".")[1])
            key = f"net.slice{max(s for i, s in slices.items() if i <= index)}.{key.split('.', 1)[1]}"
        renamed[key] = value.contiguous()
    renamed["scaling_layer.shift"] = torch.zeros(1, 3, 1, 1)
    save_file(renamed, str(tmp_path / "lpips_layout.safetensors"))
    x, y = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(load_lpips(tmp_path / "lpips_layout.safetensors")(x, y), reference(x, y))


def test_lpips_file_errors_are_one_line(lpips_file, tmp_path):
    path, reference = lpips_file
    state = {k: v.contiguous() for k, v in reference.state_dict().items()}
    cases = {
        "missing.safetensors": None,
        "garbage.safetensors": b"not safetensors",
        "partial.safetensors": {k: v for k, v in state.items() if k != "lin2.model.1.weight"},
        "shape.safetensors": {**state, "features.0.weight": torch.zeros(64, 3, 5, 5)},
    }
    patterns = {
        "missing.safetensors": "perceptual weights not found",
        "garbage.safetensors": "cannot read perceptual weights",
        "partial.safetensors": r"not LPIPS-VGG16 weights \(1 missing e.g. \['lin2.model.1.weight'\]\)",
        "shape.safetensors": r"1 with another shape e.g. \['features.0.weight'\]",
    }
    for name, content in cases.items():
        target = tmp_path / name
        if isinstance(content, bytes):
            target.write_bytes(content)
        elif content is not None:
            save_file(content, str(target))
        with pytest.raises(ReelmError, match=patterns[name]) as err:
            TokenizerLoss(LossConfig(perceptual_path=str(target)))
        assert "\n" not in str(err.value) and name in str(err.value)


def test_perceptual_term_joins_the_generator_loss(lpips_file):
    model, x = _model(), _video(frames=1)
    recon, quant = model(x)
    loss = TokenizerLoss(LossConfig(perceptual_path=str(lpips_file[0]), perceptual_weight=0.5))
    terms = loss.generator_loss(x, recon, quant, step=0)
    assert terms["perceptual"].item() > 0
    torch.testing.assert_close(terms["loss"], terms["recon"] + 0.5 * terms["perceptual"] + terms["quantizer"])
    terms["loss"].backward()
    assert model.last_layer.grad.abs().sum() > 0
    assert TokenizerLoss(LossConfig(perceptual_path=None)).perceptual is None
