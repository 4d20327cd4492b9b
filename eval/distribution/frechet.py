"""The Fréchet distance between two Gaussians fitted to feature sets (FVD; FID's statistics).

``gaussian_stats`` fits mean and covariance in float64 (population covariance, divide by N, as
StyleGAN-V's ``FeatureStats``; ``ddof=1`` gives the sample covariance of pytorch-fid /
torch-fidelity / torchmetrics). ``frechet_distance`` computes

    d^2 = |mu1 - mu2|^2 + tr(S1 + S2 - 2 sqrtm(S1 S2))

with ``scipy.linalg.sqrtm`` in float64. Guards: when the square root is not finite (a singular
product), both covariance diagonals get ``eps`` added and the root is taken again; when the
root is complex, its imaginary part must be negligible (diagonal within ``1e-3`` of zero,
relative to the trace when that exceeds 1) and is then dropped, else ``ValueError``.

Follows: Heusel et al. 2017 (FID); StyleGAN-V ``src/metrics/frechet_video_distance.py``;
pytorch-fid's guards.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.linalg

IMAG_TOLERANCE = 1e-3


@dataclass(frozen=True)
class FrechetResult:
    """The distance and whether the ``eps`` offset was needed."""

    distance: float
    eps_used: bool


def gaussian_stats(features: np.ndarray, *, ddof: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and covariance ``(D, D)`` of ``(N, D)`` features, in float64."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] <= ddof:
        raise ValueError(f"need a (N, D) feature matrix with N > {ddof}, got shape {x.shape}")
    mu = x.mean(axis=0)
    centered = x - mu
    sigma = centered.T @ centered / (x.shape[0] - ddof)
    return mu, sigma


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     *, eps: float = 1e-6) -> FrechetResult:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), float64 throughout."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f"statistics do not match: mu {mu1.shape} / {mu2.shape}, "
                         f"sigma {sigma1.shape} / {sigma2.shape}")
    eps_used = False
    with warnings.catch_warnings():  # singular products (fewer samples than features) are the rule; guarded below
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            eps_used = True
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        imag = np.abs(np.diagonal(covmean).imag).max()
        scale = max(1.0, abs(float(np.trace(covmean.real))))
        if imag > IMAG_TOLERANCE * scale:
            raise ValueError(f"sqrtm(S1 S2) has a non-negligible imaginary part ({imag:.3g}); "
                             "the covariances are ill-conditioned")
        covmean = covmean.real
    diff = mu1 - mu2
    distance = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))
    return FrechetResult(distance=distance, eps_used=eps_used)
