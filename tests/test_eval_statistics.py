"""Fréchet distance and kernel MMD against closed forms, direct loops and torchmetrics."""

import numpy as np
import pytest
import scipy.linalg
import torch

from reelm.eval.distribution import frechet
from reelm.eval.distribution.frechet import frechet_distance, gaussian_stats
from reelm.eval.distribution.kernel import mmd2_unbiased, polynomial_kernel, subset_mmd2


def _diagonal_case(seed, d=6):
    rng = np.random.default_rng(seed)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = rng.uniform(0.1, 3.0, d), rng.uniform(0.1, 3.0, d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    return mu1, mu2, s1, s2, expected


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_frechet_matches_closed_form_for_diagonal_and_commuting_covariances(seed):
    mu1, mu2, s1, s2, expected = _diagonal_case(seed)
    out = frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2))
    assert out.distance == pytest.approx(expected, rel=1e-10) and not out.eps_used
    q, _ = np.linalg.qr(np.random.default_rng(seed + 10).normal(size=(6, 6)))  # common rotation: still commuting
    rotated = frechet_distance(q @ mu1, q @ np.diag(s1) @ q.T, q @ mu2, q @ np.diag(s2) @ q.T)
    assert rotated.distance == pytest.approx(expected, rel=1e-8)


def test_frechet_of_a_gaussian_with_itself_is_zero_and_shapes_are_checked():
    mu, _, s, _, _ = _diagonal_case(3)
    assert frechet_distance(mu, np.diag(s), mu, np.diag(s)).distance == pytest.approx(0.0, abs=1e-10)
    with pytest.raises(ValueError, match="do not match"):
        frechet_distance(mu, np.diag(s), mu[:3], np.diag(s)[:3, :3])


def test_eps_offset_when_the_root_is_not_finite(monkeypatch):
    mu1, mu2, s1, s2, _ = _diagonal_case(4)
    calls, real_sqrtm = [], scipy.linalg.sqrtm

    def sqrtm(a):
        calls.append(a.copy())
        return np.full_like(a, np.inf) if len(calls) == 1 else real_sqrtm(a)

    monkeypatch.setattr(frechet.scipy.linalg, "sqrtm", sqrtm)
    out = frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2), eps=1e-3)
    assert out.eps_used and len(calls) == 2
    np.testing.assert_allclose(calls[1], np.diag((s1 + 1e-3) * (s2 + 1e-3)))
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2) - 2 * np.sum(np.sqrt((s1 + 1e-3) * (s2 + 1e-3)))
    assert out.distance == pytest.approx(expected, rel=1e-10)


def test_imaginary_part_dropped_when_negligible_and_refused_otherwise(monkeypatch):
    mu1, mu2, s1, s2, expected = _diagonal_case(5)
    root = np.diag(np.sqrt(s1 * s2))
    monkeypatch.setattr(frechet.scipy.linalg, "sqrtm", lambda a: root + 1e-9j * np.eye(6))
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)).distance == pytest.approx(expected, rel=1e-10)
    monkeypatch.setattr(frechet.scipy.linalg, "sqrtm", lambda a: root + 0.5j * np.eye(6))
    with pytest.raises(ValueError, match="imaginary"):
        frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2))


def test_gaussian_stats_match_numpy_cov():
    x = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    mu, sigma = gaussian_stats(x, ddof=0)
    assert mu.dtype == np.float64 and sigma.dtype == np.float64
    np.testing.assert_allclose(mu, x.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x.astype(np.float64), rowvar=False, bias=True), rtol=1e-10)
    np.testing.assert_allclose(gaussian_stats(x, ddof=1)[1], np.cov(x.astype(np.float64), rowvar=False), rtol=1e-10)


def test_frechet_on_features_equals_torchmetrics_fid():
    from torchmetrics.image.fid import FrechetInceptionDistance

    from reelm.eval.distribution.frame_metrics import Precomputed

    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(40, 8)), rng.normal(0.3, 1.2, size=(30, 8))
    metric = FrechetInceptionDistance(feature=Precomputed(8))
    metric.update(torch.from_numpy(real), real=True)
    metric.update(torch.from_numpy(fake), real=False)
    ours = frechet_distance(*gaussian_stats(fake, ddof=1), *gaussian_stats(real, ddof=1)).distance
    assert float(metric.compute()) == pytest.approx(ours, rel=1e-9)


def _mmd2_double_loop(x, y):
    m, d = x.shape
    k = lambda a, b: (float(a @ b) / d + 1.0) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return xx / (m * (m - 1)) + yy / (m * (m - 1)) - 2 * xy / (m * m)


@pytest.mark.parametrize("seed", [0, 1])
def test_mmd2_matches_a_direct_double_loop(seed):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(9, 5)), rng.normal(0.5, 1.0, size=(9, 5))
    assert mmd2_unbiased(x, y) == pytest.approx(_mmd2_double_loop(x, y), rel=1e-12)
    assert polynomial_kernel(x, y).shape == (9, 9)


def test_subsets_are_seeded_and_the_full_set_equals_torchmetrics_kid():
    from torchmetrics.image.kid import KernelInceptionDistance

    from reelm.eval.distribution.frame_metrics import Precomputed

    rng = np.random.default_rng(2)
    real, gen = rng.normal(size=(20, 6)), rng.normal(0.4, 1.0, size=(12, 6))
    first = subset_mmd2(real, gen, num_subsets=7, max_subset_size=8, seed=3)
    assert first == subset_mmd2(real, gen, num_subsets=7, max_subset_size=8, seed=3)
    assert first != subset_mmd2(real, gen, num_subsets=7, max_subset_size=8, seed=4)
    assert first.subset_size == 8 and len(first.per_subset) == 7
    assert first.mean == pytest.approx(np.mean(first.per_subset))
    assert first.std == pytest.approx(np.std(first.per_subset))
    whole = subset_mmd2(real[:12], gen, num_subsets=2, max_subset_size=1000, seed=0)  # every subset: all rows
    assert whole.subset_size == 12 and whole.std == pytest.approx(0.0, abs=1e-12)
    assert whole.mean == pytest.approx(mmd2_unbiased(gen, real[:12]), rel=1e-12)
    with pytest.warns(UserWarning, match="save all extracted features"):
        kid = KernelInceptionDistance(feature=Precomputed(6), subsets=1, subset_size=12)
    kid.update(torch.from_numpy(real[:12]), real=True)
    kid.update(torch.from_numpy(gen), real=False)
    assert float(kid.compute()[0]) == pytest.approx(whole.mean, rel=1e-9)


def test_mmd2_separates_shifted_sets():
    rng = np.random.default_rng(5)
    same = subset_mmd2(rng.normal(size=(200, 4)), rng.normal(size=(200, 4)), num_subsets=5, max_subset_size=100, seed=0)
    shifted = subset_mmd2(rng.normal(size=(200, 4)), rng.normal(1.0, 1.0, size=(200, 4)), num_subsets=5,
                          max_subset_size=100, seed=0)
    assert abs(same.mean) < 0.1 * shifted.mean
