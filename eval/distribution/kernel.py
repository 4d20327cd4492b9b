"""Kernel distances between feature sets: the unbiased polynomial-kernel MMD^2 over random subsets (KVD).

``mmd2_unbiased(x, y)`` with the kernel ``k(a, b) = (a.b / d + 1)^3`` (``d`` the feature width)
and equal set sizes ``m``:

    MMD^2 = sum_{i != j} [k(x_i, x_j) + k(y_i, y_j)] / (m (m - 1)) - 2 sum_{i, j} k(x_i, y_j) / m^2

``subset_mmd2`` averages it over ``num_subsets`` subsets of ``m = min(n_real, n_gen,
max_subset_size)`` rows each, drawn without replacement from ``numpy.random.default_rng(seed)``
(generated rows first, then real rows, per subset), in float64. Values are raw MMD^2 (StyleGAN-V
prints KID x 1000; we do not scale).

Follows: Binkowski et al. 2018 (KID); Unterthiner et al. 2018 (KVD); StyleGAN-V
``src/metrics/kernel_inception_distance.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SubsetMMD:
    mean: float
    std: float  # population std over subsets (ddof=0, as torchmetrics' KID)
    subset_size: int
    num_subsets: int
    seed: int
    per_subset: tuple[float, ...]


def polynomial_kernel(x: np.ndarray, y: np.ndarray, *, degree: int = 3, coef: float = 1.0) -> np.ndarray:
    return (x @ y.T / x.shape[1] + coef) ** degree


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, *, degree: int = 3, coef: float = 1.0) -> float:
    """Unbiased MMD^2 between equal-size ``(m, D)`` sets, float64."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape or x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need two (m, D) sets of equal shape with m >= 2, got {x.shape} and {y.shape}")
    m = x.shape[0]
    k_xx = polynomial_kernel(x, x, degree=degree, coef=coef)
    k_yy = polynomial_kernel(y, y, degree=degree, coef=coef)
    k_xy = polynomial_kernel(x, y, degree=degree, coef=coef)
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2.0 * k_xy.sum() / (m * m))


def subset_mmd2(real: np.ndarray, generated: np.ndarray, *, num_subsets: int, max_subset_size: int,
                seed: int) -> SubsetMMD:
    """Mean and std of ``mmd2_unbiased`` over random equal-size subsets of the two sets."""
    real, generated = np.asarray(real, np.float64), np.asarray(generated, np.float64)
    m = min(real.shape[0], generated.shape[0], max_subset_size)
    if m < 2:
        raise ValueError(f"need at least 2 real and 2 generated samples, got {real.shape[0]} and {generated.shape[0]}")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(num_subsets):
        g = generated[rng.choice(generated.shape[0], m, replace=False)]
        r = real[rng.choice(real.shape[0], m, replace=False)]
        values.append(mmd2_unbiased(g, r))
    return SubsetMMD(mean=float(np.mean(values)), std=float(np.std(values)), subset_size=m,
                     num_subsets=num_subsets, seed=seed, per_subset=tuple(values))
