"""Inception-v3 of torch-fidelity (the 2015-12-05 TensorFlow graph) for FID / KID / IS on frames.

:class:`InceptionV3` has torch-fidelity's module names, so its weights file
``weights-inception-2015-12-05-6726825d.pth`` (a plain state dict, read with
``torch.load(weights_only=True)``) loads strictly. It reproduces torch-fidelity's
``FeatureExtractorInceptionV3``: uint8 frames ``(N, 3, H, W)`` are cast to float32, resized to
299 x 299 by TensorFlow-1.x bilinear interpolation (:func:`resize_bilinear_tf1`:
``align_corners=False`` without half-pixel centers, torch-fidelity's default resize — not
torchmetrics' antialiased one), mapped by ``(x - 128) / 128`` and run through the network with
TF's patches (average pools that exclude padding, max pool in the last block). Outputs:
``pool`` (2048-d, FID / KID), ``logits_unbiased`` (1008-d ``pool @ fc.weight.T``, torch-fidelity's
and torchmetrics' input to IS) and ``logits`` (with the bias).

Follows: Szegedy et al. 2016 (Inception-v3); toshas/torch-fidelity
``feature_extractor_inceptionv3.py`` and ``interpolate_compat_tensorflow.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reelm.core.weights import read_weights
from reelm.core.errors import ReelmError, one_line_reason
from reelm.eval.distribution.i3d import file_sha256

INCEPTION_SIZE = 299
WEIGHTS_NAME = "weights-inception-2015-12-05-6726825d.pth"
OUTPUTS = ("pool", "logits_unbiased", "logits")


class InceptionWeightsError(ReelmError):
    """An Inception weights file that is missing or not torch-fidelity's state dict."""


def resize_bilinear_tf1(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """TF 1.x ``resize_bilinear(align_corners=False)`` of float ``(N, C, H, W)``: source = out * in / out."""

    def axis(in_size: int, out_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        scale = torch.tensor(in_size / out_size, dtype=torch.float32)
        src = torch.arange(out_size, dtype=x.dtype, device=x.device) * scale
        lo = src.long()
        return lo, (lo + 1).clamp_max(in_size - 1), src - lo.to(x.dtype)

    y_lo, y_hi, dy = axis(x.shape[2], size[0])
    x_lo, x_hi, dx = axis(x.shape[3], size[1])
    top, bottom = x.index_select(2, y_lo), x.index_select(2, y_hi)
    top = top.index_select(3, x_lo) + (top.index_select(3, x_hi) - top.index_select(3, x_lo)) * dx
    bottom = bottom.index_select(3, x_lo) + (bottom.index_select(3, x_hi) - bottom.index_select(3, x_lo)) * dx
    return top + (bottom - top) * dy[:, None]


class BasicConv2d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, **conv):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **conv)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_3x3(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self, in_channels: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg_pool_3x3(x)),
        ], dim=1)


class InceptionB(nn.Module):
    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, kernel_size=3, stride=2),
        ], dim=1)


class InceptionC(nn.Module):
    def __init__(self, in_channels: int, channels_7x7: int):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dbl = self.branch7x7dbl_3(self.branch7x7dbl_2(self.branch7x7dbl_1(x)))
        return torch.cat([
            self.branch1x1(x),
            self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
            self.branch7x7dbl_5(self.branch7x7dbl_4(dbl)),
            self.branch_pool(_avg_pool_3x3(x)),
        ], dim=1)


class InceptionD(nn.Module):
    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, kernel_size=3, stride=2)], dim=1)


class InceptionE(nn.Module):
    """The last two blocks; TF's graph max-pools the pool branch of the second one (``max_pool=True``)."""

    def __init__(self, in_channels: int, *, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _avg_pool_3x3(x)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(b3), self.branch3x3_2b(b3),
            self.branch3x3dbl_3a(dbl), self.branch3x3dbl_3b(dbl),
            self.branch_pool(pooled),
        ], dim=1)


class InceptionV3(nn.Module):
    """torch-fidelity's Inception-v3: uint8 ``(N, 3, H, W)`` -> {pool, logits_unbiased, logits}."""

    def __init__(self, *, resize_to: int = INCEPTION_SIZE):
        super().__init__()
        self.resize_to = resize_to
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.MaxPool_1 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.MaxPool_2 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, max_pool=False)
        self.Mixed_7c = InceptionE(2048, max_pool=True)
        self.AvgPool = nn.AdaptiveAvgPool2d(output_size=(1, 1))
        self.fc = nn.Linear(2048, 1008)

    def forward(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"expected uint8 frames (N, 3, H, W), got {frames.dtype} {tuple(frames.shape)}")
        x = resize_bilinear_tf1(frames.float(), (self.resize_to, self.resize_to))  # (N, 3, 299, 299)
        x = (x - 128) / 128
        x = self.MaxPool_1(self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x))))
        x = self.MaxPool_2(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)))
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(self.Mixed_6a(x)))))
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))  # (N, 2048, 8, 8)
        pool = torch.flatten(self.AvgPool(x), 1)  # (N, 2048)
        unbiased = pool.mm(self.fc.weight.T)  # (N, 1008)
        return {"pool": pool, "logits_unbiased": unbiased, "logits": unbiased + self.fc.bias[None]}


class InceptionDetector:
    """A loaded :class:`InceptionV3` with its file's identity; ``features`` maps uint8 frames to outputs."""

    def __init__(self, path: Path, module: InceptionV3, device: torch.device):
        self.path, self.module, self.device = path, module, device
        self.sha256 = file_sha256(path)

    @torch.no_grad()
    def features(self, frames: np.ndarray, outputs: tuple[str, ...]) -> dict[str, np.ndarray]:
        """uint8 ``(B, H, W, 3)`` -> {output: float32 ``(B, D)``}."""
        x = torch.from_numpy(frames).to(self.device).permute(0, 3, 1, 2).contiguous()  # (B, 3, H, W)
        out = self.module(x)
        return {name: out[name].float().cpu().numpy() for name in outputs}

    def describe(self, output: str) -> dict:
        return {
            "path": str(self.path), "sha256": self.sha256, "format": "torch-fidelity inception-v3 state dict",
            "feature_layer": {"pool": "2048-d average pool", "logits_unbiased": "1008-d pool @ fc.weight.T",
                              "logits": "1008-d fc"}[output],
            "resolution": self.module.resize_to,
            "resampling": "TF1 bilinear (align_corners=False), as torch-fidelity", "value_range": "(x - 128) / 128",
        }


def load_inception(path: str | Path, *, device: str | torch.device = "cpu",
                   resize_to: int = INCEPTION_SIZE) -> InceptionDetector:
    """Load torch-fidelity's Inception weights strictly (``weights_only=True``)."""
    path = Path(path)
    state = read_weights(path, error=InceptionWeightsError, what=f"Inception weights (torch-fidelity's {WEIGHTS_NAME})")
    model = InceptionV3(resize_to=resize_to)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        reason = one_line_reason(exc)
        raise InceptionWeightsError(f"{path}: not torch-fidelity's Inception-v3 state dict ({reason})") from exc
    device = torch.device(device)
    return InceptionDetector(path, model.to(device).eval(), device)
