"""LPIPS perceptual distance (VGG16 features + learned linear heads), from a local weights file.

Nothing is downloaded: the weights come from a safetensors file the user names
(``loss.perceptual_path``). Keys follow the usual layouts so real weights convert with a
few lines: ``features.{i}.weight/bias`` as in torchvision's ``vgg16().features`` (the
``net.slice{n}.{i}.*`` keys of the ``lpips`` package are accepted too) and
``lin{k}.model.1.weight`` as in the ``lpips`` package's linear heads. For example::

    sd = {k: v for k, v in torchvision.models.vgg16(weights=...).state_dict().items() if k.startswith("features.")}
    sd |= torch.load("lpips/weights/v0.1/vgg.pth")          # lin0.model.1.weight ... lin4.model.1.weight
    safetensors.torch.save_file({k: v.contiguous() for k, v in sd.items()}, "lpips_vgg16.safetensors")

Follows: Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a
Perceptual Metric" (LPIPS v0.1, VGG variant).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from reelm.core.errors import ReelmError
from reelm.core.weights import read_weights, state_mismatch

VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
TAPS = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 in vgg16().features
TAP_CHANNELS = (64, 128, 256, 512, 512)
IGNORED_PREFIXES = ("classifier.", "scaling_layer.")  # torchvision's classifier, lpips' constant buffers
_LPIPS_SLICE_KEY = re.compile(r"^net\.slice\d\.(\d+)\.(weight|bias)$")


class PerceptualWeightsError(ReelmError):
    """A perceptual-loss weights file that is missing or does not match LPIPS-VGG16."""


class LinearHead(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class LPIPS(nn.Module):
    """Perceptual distance of image batches (N, 3, H, W) in [-1, 1] -> (N,). Frozen, always in eval mode."""

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for item in VGG16_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(in_ch, item, 3, padding=1), nn.ReLU()]
                in_ch = item
        self.features = nn.Sequential(*layers)
        for k, ch in enumerate(TAP_CHANNELS):
            self.add_module(f"lin{k}", LinearHead(ch))
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> LPIPS:
        return super().train(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) x2 -> (N,)
        n = x.shape[0]
        h = (torch.cat([x, y]) - self.shift) / self.scale  # (2N, 3, H, W)
        total = x.new_zeros(n)
        tap = 0
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i == TAPS[tap]:
                f = h / (h.square().sum(1, keepdim=True).sqrt() + 1e-10)  # (2N, C, h, w) unit norm over channels
                diff = (f[:n] - f[n:]).square()  # (N, C, h, w)
                total = total + getattr(self, f"lin{tap}")(diff).mean(dim=(1, 2, 3))
                tap += 1
                if tap == len(TAPS):
                    break
        return total


def load_lpips(path: str | Path) -> LPIPS:
    """An :class:`LPIPS` with weights from a local safetensors file; one-line errors otherwise."""
    raw = read_weights(path, error=PerceptualWeightsError, what="perceptual weights")  # loss.perceptual_path
    state = {}
    for key, value in raw.items():
        if key.startswith(IGNORED_PREFIXES):
            continue
        match = _LPIPS_SLICE_KEY.match(key)
        state[f"features.{match.group(1)}.{match.group(2)}" if match else key] = value
    model = LPIPS()
    problem = state_mismatch(model.state_dict(), state)
    if problem:
        raise PerceptualWeightsError(f"{path}: not LPIPS-VGG16 weights ({problem})")
    model.load_state_dict(state)
    return model
