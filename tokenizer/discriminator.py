"""The video discriminator of the tokenizer's adversarial loss.

A PatchGAN over space-time: strided factorized (2D spatial + 1D temporal) or full 3D
convolutions halve H, W and T at each level and end in a map of real/fake logits, one per
space-time patch. It judges whole clips, so unlike the tokenizer it need not be causal; it
reuses the tokenizer's causal convs anyway because they are the cheap ones.

Follows: VQGAN's patch discriminator (Esser et al. 2021) extended to video as in MAGVIT
(Yu et al. 2022), with R(2+1)D factorization (Tran et al. 2018).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from reelm.core.config import ConfigError
from reelm.tokenizer.layers import CausalConv, CausalConv3d, FrameGroupNorm


@dataclass(kw_only=True)
class DiscriminatorConfig:
    channels: tuple[int, ...] = (64, 128, 256)  # width per level; each level after the first halves T, H, W
    conv: str = "2+1d"  # "2+1d" or "3d"
    norm_groups: int = 8
    channels_last: bool = False  # as TokenizerConfig.channels_last


class Discriminator(nn.Module):
    """(B, 3, T, H, W) in [-1, 1] -> patch logits (B, 1, t, h, w)."""

    def __init__(self, cfg: DiscriminatorConfig, in_channels: int = 3):
        super().__init__()
        if cfg.conv not in ("2+1d", "3d"):
            raise ConfigError(f"discriminator.conv {cfg.conv!r}: choose from ['2+1d', '3d']")
        if not cfg.channels or any(c % cfg.norm_groups for c in cfg.channels):
            raise ConfigError(f"discriminator.channels {list(cfg.channels)}: need widths divisible by norm_groups")
        fact, ch = cfg.conv == "2+1d", cfg.channels
        layers: list[nn.Module] = [CausalConv(in_channels, ch[0], factorized=fact), nn.LeakyReLU(0.2)]
        for i in range(1, len(ch)):
            layers += [
                CausalConv(ch[i - 1], ch[i], factorized=fact, time_stride=2, space_stride=2),
                FrameGroupNorm(cfg.norm_groups, ch[i]),
                nn.LeakyReLU(0.2),
            ]
        layers.append(CausalConv3d(ch[-1], 1, (1, 1, 1)))
        self.net = nn.Sequential(*layers)
        self.memory_format = torch.channels_last_3d if cfg.channels_last else torch.contiguous_format
        self.to(memory_format=self.memory_format)

    def forward(self, video: torch.Tensor) -> torch.Tensor:  # (B, 3, T, H, W) -> (B, 1, t, h, w)
        return self.net(video.contiguous(memory_format=self.memory_format))
