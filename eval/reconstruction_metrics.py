"""Reconstruction metrics on uint8 frames: PSNR and SSIM, whole clips or accumulated chunk by chunk.

Both take ``(T, H, W, 3)`` uint8 arrays (or anything broadcastable to them) with data range
255. PSNR is computed from the MSE over the whole clip. SSIM is the mean over frames and
channels of the Gaussian-window SSIM of Wang et al. (11x11 window, sigma 1.5,
K1 = 0.01, K2 = 0.03, population covariance), averaged over the window positions that lie
fully inside the frame — the definition scikit-image's ``structural_similarity`` uses with
``gaussian_weights=True, use_sample_covariance=False, data_range=255``.

Both are sums over frames, so :class:`ClipMetrics` takes a long clip chunk by chunk (a few
frames at a time, in float64) and gives exactly the whole-clip values without ever holding
the clip, along with the per-frame values a report plots. The Gaussian window is applied as
two 1D passes of shifted sums (never a convolution's k x k unfold, which at 1080p asked for
tens of GB in float64), a few frames at a time, so SSIM's memory is a few arrays of one pass.

Follows: Wang, Bovik, Sheikh, Simoncelli 2004 ("Image quality assessment: from error
visibility to structural similarity").
"""

from __future__ import annotations

import numpy as np
import torch

from reelm.core.errors import ReelmError

DATA_RANGE = 255.0
SSIM_PIXELS_PER_PASS = 2**21  # frame pixels (x 3 channels) per SSIM pass: bounds its float64 working memory


class MetricInputError(ReelmError):
    """Frames a metric cannot compare: different shapes, or smaller than the SSIM window."""


def psnr(reference: np.ndarray, test: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB over the whole clip (``inf`` for identical inputs)."""
    ref, out = _pair(reference, test)
    return psnr_from_mse(float(np.mean((ref - out) ** 2)))


def psnr_from_mse(mse: float) -> float:
    return float("inf") if mse == 0 else float(10.0 * np.log10(DATA_RANGE**2 / mse))


def ssim(reference: np.ndarray, test: np.ndarray, *, window: int = 11, sigma: float = 1.5) -> float:
    """Mean structural similarity over frames and channels."""
    return float(np.mean(ssim_per_frame(reference, test, window=window, sigma=sigma)))


def ssim_per_frame(reference: np.ndarray, test: np.ndarray, *, window: int = 11, sigma: float = 1.5) -> np.ndarray:
    """``(T,)`` SSIM of each frame (mean over its channels and window positions), a few frames at a time."""
    ref, out = _pair(reference, test)
    if ref.ndim == 3:
        ref, out = ref[None], out[None]
    if min(ref.shape[1:3]) < window:
        raise MetricInputError(f"frames of {ref.shape[1]}x{ref.shape[2]} are smaller than the {window}x{window} "
                               "SSIM window")
    kernel = _gaussian_kernel(window, sigma)
    per_pass = max(1, SSIM_PIXELS_PER_PASS // (ref.shape[1] * ref.shape[2]))
    return np.concatenate([_ssim_frames(ref[i:i + per_pass], out[i:i + per_pass], kernel)
                           for i in range(0, len(ref), per_pass)])


def _gaussian_kernel(window: int, sigma: float) -> torch.Tensor:
    """The normalized 1D Gaussian ``(window,)``; the 2D window is its outer product (separable)."""
    coords = torch.arange(window, dtype=torch.float64) - (window - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def _ssim_frames(ref: np.ndarray, out: np.ndarray, kernel: torch.Tensor) -> np.ndarray:
    t, c = ref.shape[0], ref.shape[-1]
    x = torch.from_numpy(ref).permute(0, 3, 1, 2).reshape(-1, *ref.shape[1:3]).contiguous()  # (T*3, H, W)
    y = torch.from_numpy(out).permute(0, 3, 1, 2).reshape(-1, *out.shape[1:3]).contiguous()

    weights = kernel.tolist()

    def blur(z: torch.Tensor) -> torch.Tensor:  # (N, H, W) -> (N, H - k + 1, W - k + 1), valid positions only
        k = len(weights)
        rows = torch.zeros(z.shape[0], z.shape[1] - k + 1, z.shape[2], dtype=z.dtype)
        for i, g in enumerate(weights):  # separable, accumulated in place: no k*k unfold, no temporaries
            rows.add_(z[:, i:i + rows.shape[1]], alpha=g)
        cols = torch.zeros(*rows.shape[:2], z.shape[2] - k + 1, dtype=z.dtype)
        for i, g in enumerate(weights):
            cols.add_(rows[:, :, i:i + cols.shape[2]], alpha=g)
        return cols

    c1, c2 = (0.01 * DATA_RANGE) ** 2, (0.03 * DATA_RANGE) ** 2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.reshape(t, c, -1).mean(dim=(1, 2)).numpy()  # (T,)


class ClipMetrics:
    """PSNR and SSIM of a clip given chunk by chunk (:meth:`update`), equal to the whole-clip values.

    Also keeps each frame's PSNR and SSIM, for plots by frame index. ``ssim=False`` keeps PSNR
    only (for frames smaller than the SSIM window, where SSIM is undefined).
    """

    def __init__(self, *, window: int = 11, sigma: float = 1.5, ssim: bool = True):
        self.window, self.sigma, self.with_ssim = window, sigma, ssim
        self.squared_error, self.values = 0.0, 0
        self.frame_psnr: list[float] = []
        self.frame_ssim: list[float] = []

    def update(self, reference: np.ndarray, test: np.ndarray) -> None:
        ref, out = _pair(reference, test)
        if ref.ndim == 3:
            ref, out = ref[None], out[None]
        error = (ref - out) ** 2  # (T, H, W, 3)
        self.squared_error += float(error.sum())
        self.values += error.size
        self.frame_psnr += [psnr_from_mse(float(e.mean())) for e in error]
        if self.with_ssim:
            self.frame_ssim += ssim_per_frame(ref, out, window=self.window, sigma=self.sigma).tolist()

    @property
    def frames(self) -> int:
        return len(self.frame_psnr)

    def psnr(self) -> float:
        if not self.values:
            raise MetricInputError("no frames were compared")
        return psnr_from_mse(self.squared_error / self.values)

    def ssim(self) -> float:
        if not self.with_ssim:
            raise MetricInputError("SSIM was not computed (ssim=False)")
        if not self.frame_ssim:
            raise MetricInputError("no frames were compared")
        return float(np.mean(self.frame_ssim))


def _pair(reference: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref = np.asarray(reference, dtype=np.float64)
    out = np.asarray(test, dtype=np.float64)
    if ref.shape != out.shape:
        raise MetricInputError(f"cannot compare frames of shape {ref.shape} with frames of shape {out.shape}")
    return ref, out
