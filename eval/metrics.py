"""Reconstruction metrics on uint8 frames: PSNR and SSIM.

Both take ``(T, H, W, 3)`` uint8 arrays (or anything broadcastable to them) with data range
255. PSNR is computed from the MSE over the whole clip. SSIM is the mean over frames and
channels of the Gaussian-window SSIM of Wang et al. (11x11 window, sigma 1.5,
K1 = 0.01, K2 = 0.03, population covariance), averaged over the window positions that lie
fully inside the frame — the definition scikit-image's ``structural_similarity`` uses with
``gaussian_weights=True, use_sample_covariance=False, data_range=255``.

Follows: Wang, Bovik, Sheikh, Simoncelli 2004 ("Image quality assessment: from error
visibility to structural similarity").
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from reelm.errors import ReelmError

DATA_RANGE = 255.0


class MetricInputError(ReelmError):
    """Frames a metric cannot compare: different shapes, or smaller than the SSIM window."""


def psnr(reference: np.ndarray, test: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB over the whole clip (``inf`` for identical inputs)."""
    ref, out = _pair(reference, test)
    mse = float(np.mean((ref - out) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(DATA_RANGE**2 / mse)


def ssim(reference: np.ndarray, test: np.ndarray, *, window: int = 11, sigma: float = 1.5) -> float:
    """Mean structural similarity over frames and channels."""
    ref, out = _pair(reference, test)
    if ref.ndim == 3:
        ref, out = ref[None], out[None]
    if min(ref.shape[1:3]) < window:
        raise MetricInputError(f"frames of {ref.shape[1]}x{ref.shape[2]} are smaller than the {window}x{window} "
                               "SSIM window")
    x = torch.from_numpy(ref).permute(0, 3, 1, 2).reshape(-1, 1, *ref.shape[1:3])  # (T*3, 1, H, W)
    y = torch.from_numpy(out).permute(0, 3, 1, 2).reshape(-1, 1, *out.shape[1:3])
    coords = torch.arange(window, dtype=torch.float64) - (window - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = (g / g.sum()).to(torch.float64)
    kernel = (g[:, None] * g[None, :])[None, None]  # (1, 1, window, window)

    def blur(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(z, kernel)

    c1, c2 = (0.01 * DATA_RANGE) ** 2, (0.03 * DATA_RANGE) ** 2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(s.mean())


def _pair(reference: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref = np.asarray(reference, dtype=np.float64)
    out = np.asarray(test, dtype=np.float64)
    if ref.shape != out.shape:
        raise MetricInputError(f"cannot compare frames of shape {ref.shape} with frames of shape {out.shape}")
    return ref, out
