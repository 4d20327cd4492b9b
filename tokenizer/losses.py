"""The tokenizer's training objective: reconstruction, quantizer, perceptual and adversarial terms.

:class:`TokenizerLoss` owns everything a tokenizer trainer needs besides the tokenizer:
the optional LPIPS network (frozen, from a local file), the optional discriminator and its
LeCam statistics. A training step calls :meth:`TokenizerLoss.generator_loss` for the
tokenizer's update and, once :meth:`TokenizerLoss.adversarial_active`, 
:meth:`TokenizerLoss.discriminator_loss` for the discriminator's; both return a dict of
named scalar terms whose ``"loss"`` entry is the one to backpropagate.

Follows: VQGAN (Esser et al. 2021: hinge GAN loss, adaptive weight from gradient norms at
the decoder's last layer, delayed discriminator start), MAGVIT-v2 (Yu et al. 2023: LeCam
regularization, Tseng et al. 2021).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from reelm.core.checkpoint_format import CheckpointError
from reelm.core.config import ConfigError
from reelm.tokenizer.discriminator import Discriminator, DiscriminatorConfig
from reelm.tokenizer.perceptual import load_lpips
from reelm.tokenizer.quantizer import QuantizeResult
from reelm.core.weights import state_mismatch


@dataclass(kw_only=True)
class LossConfig:
    recon: str = "l2"  # "l2" | "l1" (L1 stalls on small objects: the background is its median)
    recon_weight: float = 1.0
    quantizer_weight: float = 1.0  # on the quantizer's own (already weighted) aux loss
    perceptual_weight: float = 0.1
    perceptual_path: str | None = None  # local safetensors file of LPIPS-VGG16 weights; None = no perceptual loss
    adversarial_weight: float = 0.0  # 0 = no discriminator
    adversarial_start: int = 2000  # first step with adversarial terms (generator and discriminator)
    adaptive_weight: bool = True  # scale the GAN term by |grad nll| / |grad gan| at the decoder's last layer
    adaptive_weight_max: float = 1e4
    lecam_weight: float = 0.001
    lecam_decay: float = 0.999
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)


def tiny_objective() -> LossConfig:
    """The ``tiny`` preset's objective: reconstruction and quantizer terms, no discriminator."""
    return LossConfig(adversarial_weight=0.0)


def small_objective() -> LossConfig:
    """The ``small`` preset's objective: adversarial loss after 5k steps."""
    return LossConfig(adversarial_weight=0.1, adversarial_start=5_000,
                      discriminator=DiscriminatorConfig(channels=(64, 128, 256)))


def base_objective() -> LossConfig:
    """The ``base`` preset's objective: perceptual (with a weights file) and adversarial after 20k steps."""
    return LossConfig(perceptual_weight=0.1, adversarial_weight=0.1, adversarial_start=20_000,
                      discriminator=DiscriminatorConfig(channels=(128, 256, 512, 512), norm_groups=32))


LOSS_PRESETS = {"tiny": tiny_objective, "small": small_objective, "base": base_objective}


class LeCamEMA(nn.Module):
    """LeCam regularization: keeps D's logits near the EMA of the other class's logits."""

    def __init__(self, decay: float):
        super().__init__()
        self.decay = decay
        self.register_buffer("real", torch.zeros(()))
        self.register_buffer("fake", torch.zeros(()))

    def forward(self, logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            self.real.lerp_(logits_real.mean().float(), 1 - self.decay)
            self.fake.lerp_(logits_fake.mean().float(), 1 - self.decay)
        return F.relu(logits_real - self.fake).square().mean() + F.relu(self.real - logits_fake).square().mean()


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - logits_real).mean() + F.relu(1 + logits_fake).mean()


def adaptive_weight(nll: torch.Tensor, gan: torch.Tensor, last_layer: torch.Tensor, max_weight: float) -> torch.Tensor:
    """|d nll / d W| / |d gan / d W| at the decoder's last weight W, detached and clamped."""
    nll_grad = torch.autograd.grad(nll, last_layer, retain_graph=True)[0]
    gan_grad = torch.autograd.grad(gan, last_layer, retain_graph=True)[0]
    return (nll_grad.norm() / (gan_grad.norm() + 1e-4)).clamp(0, max_weight).detach()


@contextlib.contextmanager
def frozen(module: nn.Module):
    """Run ``module`` without accumulating gradients into its parameters (inputs still get them)."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


class TokenizerLoss(nn.Module):
    def __init__(self, cfg: LossConfig):
        super().__init__()
        if cfg.recon not in ("l1", "l2"):
            raise ConfigError(f"loss.recon {cfg.recon!r}: choose from ['l1', 'l2']")
        self.cfg = cfg
        use_perceptual = cfg.perceptual_path is not None and cfg.perceptual_weight > 0
        self.perceptual = load_lpips(cfg.perceptual_path) if use_perceptual else None
        self.discriminator = Discriminator(cfg.discriminator) if cfg.adversarial_weight > 0 else None
        self.lecam = LeCamEMA(cfg.lecam_decay) if self.discriminator is not None and cfg.lecam_weight > 0 else None

    def adversarial_active(self, step: int) -> bool:
        return self.discriminator is not None and step >= self.cfg.adversarial_start

    def generator_loss(
        self,
        video: torch.Tensor,
        recon: torch.Tensor,
        quant: QuantizeResult,
        *,
        step: int,
        last_layer: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The tokenizer's loss terms for video / recon (B, 3, T, H, W); ``"loss"`` is their weighted sum.

        ``last_layer`` (``VideoTokenizer.last_layer``) enables the adaptive adversarial weight.
        """
        cfg = self.cfg
        recon_loss = F.l1_loss(recon, video) if cfg.recon == "l1" else F.mse_loss(recon, video)
        terms = {"recon": recon_loss, "quantizer": quant.aux_loss}
        nll = cfg.recon_weight * recon_loss
        if self.perceptual is not None:
            frames = "b c t h w -> (b t) c h w"
            perceptual = self.perceptual(rearrange(video, frames), rearrange(recon, frames)).mean()
            terms["perceptual"] = perceptual
            nll = nll + cfg.perceptual_weight * perceptual
        total = nll + cfg.quantizer_weight * quant.aux_loss
        if self.adversarial_active(step):
            with frozen(self.discriminator):
                gan = -self.discriminator(recon).mean()
            weight = torch.ones((), device=recon.device)
            if cfg.adaptive_weight and last_layer is not None and gan.requires_grad and nll.requires_grad:
                weight = adaptive_weight(nll, gan, last_layer, cfg.adaptive_weight_max)
            terms["adversarial"] = gan
            terms["adaptive_weight"] = weight
            total = total + cfg.adversarial_weight * weight * gan
        terms["loss"] = total
        return terms

    def discriminator_loss(self, video: torch.Tensor, recon: torch.Tensor) -> dict[str, torch.Tensor]:
        """The discriminator's hinge (+ LeCam) loss on real video vs detached reconstructions."""
        if self.discriminator is None:
            raise RuntimeError("discriminator_loss called with loss.adversarial_weight = 0 (no discriminator)")
        logits_real = self.discriminator(video.detach())  # (B, 1, t, h, w)
        logits_fake = self.discriminator(recon.detach())
        hinge = hinge_d_loss(logits_real, logits_fake)
        terms = {"hinge": hinge, "logits_real": logits_real.mean().detach(), "logits_fake": logits_fake.mean().detach()}
        total = hinge
        if self.lecam is not None:
            terms["lecam"] = self.lecam(logits_real, logits_fake)
            total = total + self.cfg.lecam_weight * terms["lecam"]
        terms["loss"] = total
        return terms

    def training_state(self) -> dict[str, torch.Tensor]:
        """Discriminator weights and LeCam statistics: what a trainer checkpoints (LPIPS is a fixed asset)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("perceptual.")}

    def load_training_state(self, state: dict[str, torch.Tensor]) -> None:
        problem = state_mismatch(self.training_state(), state)
        if problem:
            raise CheckpointError(f"tokenizer loss state does not match loss config ({problem})")
        self.load_state_dict(state, strict=False)
