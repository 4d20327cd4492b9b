"""FVD and KVD: generated clips against reference clips on I3D features (StyleGAN-V's protocol).

Each clip contributes its first 16 frames (``clips.py`` says how short clips are handled);
features come from the user's Kinetics-400 I3D in either format (``i3d.py``), in batches, so
memory holds the feature matrices and one batch of clips. FVD is the Fréchet distance of
Gaussians fitted in float64 with the population covariance (``frechet.py``), as StyleGAN-V;
KVD is the unbiased cubic-polynomial-kernel MMD^2 averaged over random subsets (``kernel.py``).

Without I3D weights (and unless both sides are precomputed :class:`FeatureSet` s) the result
says the metric was not computed and why; it raises nothing.

Follows: Unterthiner et al. 2018 (FVD, KVD); Skorokhodov et al. 2022, StyleGAN-V
``src/metrics/frechet_video_distance.py`` ("FVD done right": 16-frame clips, float64 stats).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from reelm.eval.clip_input import ClipCounts, ClipInputError, clip_batches
from reelm.eval.distribution.features import FeatureSet, FeatureSetError, check_same_extractor
from reelm.eval.distribution.frechet import frechet_distance, gaussian_stats
from reelm.eval.distribution.i3d import I3D_SIZE, I3DDetector, load_i3d
from reelm.eval.distribution.kernel import subset_mmd2
from reelm.eval.provenance import deterministic, environment, metric_result, not_computed

NUM_FRAMES = 16
FVD_VERSION = "reelm.eval fvd 1"
KVD_VERSION = "reelm.eval kvd 1"


def i3d_features(clips, detector: I3DDetector, *, name: str, num_frames: int = NUM_FRAMES, short: str = "refuse",
                 batch_size: int = 8, protocol: str = "") -> FeatureSet:
    """I3D features ``(N, D)`` of a clip stream, one row per clip, with the extractor's record."""
    if isinstance(clips, FeatureSet):
        if clips.kind != "i3d":
            raise FeatureSetError(f"{name}: {clips.kind} features; FVD / KVD need i3d features")
        return clips
    counts = ClipCounts()
    rows = []
    with deterministic():
        for batch in clip_batches(clips, name=name, batch_size=batch_size, counts=counts, num_frames=num_frames,
                                  short=short, protocol=protocol):
            rows.append(detector.features(torch.from_numpy(batch)).numpy())  # (B, D)
    if not rows:
        raise ClipInputError(f"{name}: no clips")
    features = np.concatenate(rows)
    extractor = detector.describe() | {"frames_per_clip": num_frames, "temporal": f"first {num_frames} frames",
                                       "feature_dim": int(features.shape[1])}
    short_clips = "refused" if short == "refuse" else "padded by repeating the last frame"
    return FeatureSet(features=features, kind="i3d", extractor=extractor,
                      counts=counts.as_dict() | {"short_clips": short_clips})


def _feature_pair(name: str, version, generated, reference, *, i3d_path, device, batch_size, resolution, short,
                  protocol):
    """Both sides' features (at least 2 clips each), or the not-computed result that says why there are none."""
    detector = None
    if not (isinstance(generated, FeatureSet) and isinstance(reference, FeatureSet)):
        if i3d_path is None:
            return None, not_computed(name, protocol, version,
                                      "no I3D weights given (i3d_path): FVD/KVD need the Kinetics-400 I3D")
        if not Path(i3d_path).is_file():
            return None, not_computed(name, protocol, version, f"I3D weights file not found: {i3d_path}")
        detector = load_i3d(i3d_path, device=device, size=resolution)
    kwargs = dict(short=short, batch_size=batch_size, protocol=protocol)
    gen = i3d_features(generated, detector, name="generated", **kwargs)
    ref = i3d_features(reference, detector, name="reference", **kwargs)
    check_same_extractor(gen, ref, names=("generated", "reference"))
    if len(gen) < 2 or len(ref) < 2:
        return None, not_computed(name, protocol, version, f"{name.upper()} needs at least 2 clips per side, got "
                                  f"{len(gen)} generated and {len(ref)} reference")
    return (gen, ref), None


def _record(gen: FeatureSet, ref: FeatureSet, device, statistics: dict) -> dict:
    """What an FVD / KVD result records beside its value: the detector, the counts, the statistics, the machine."""
    return {"detector": gen.extractor, "counts": {"generated": gen.counts, "reference": ref.counts},
            "statistics": statistics, "environment": environment(torch.device(device))}


def fvd(generated, reference, *, i3d_path: str | Path | None = None, protocol: str = "fvd_16f",
        short: str = "refuse", device: str | torch.device = "cpu", batch_size: int = 8, resolution: int = I3D_SIZE,
        eps: float = 1e-6) -> dict:
    """Fréchet video distance of ``generated`` to ``reference`` (clips or :class:`FeatureSet` s)."""
    pair, refused = _feature_pair("fvd", FVD_VERSION, generated, reference, i3d_path=i3d_path, device=device,
                                  batch_size=batch_size, resolution=resolution, short=short, protocol=protocol)
    if pair is None:
        return refused
    gen, ref = pair
    mu_g, sigma_g = gaussian_stats(gen.features, ddof=0)
    mu_r, sigma_r = gaussian_stats(ref.features, ddof=0)
    out = frechet_distance(mu_g, sigma_g, mu_r, sigma_r, eps=eps)
    record = _record(gen, ref, device, {"dtype": "float64", "covariance": "population (divide by N), as StyleGAN-V",
                                        "sqrtm": "scipy.linalg.sqrtm", "eps": eps, "eps_used": out.eps_used})
    return metric_result("fvd", protocol, FVD_VERSION, out.distance, {"fvd": out.distance}, record)


def kvd(generated, reference, *, i3d_path: str | Path | None = None, protocol: str = "kvd_16f",
        short: str = "refuse", device: str | torch.device = "cpu", batch_size: int = 8, resolution: int = I3D_SIZE,
        num_subsets: int = 100, max_subset_size: int = 1000, seed: int = 0) -> dict:
    """Kernel video distance (unbiased MMD^2, cubic polynomial kernel) over random subsets."""
    pair, refused = _feature_pair("kvd", KVD_VERSION, generated, reference, i3d_path=i3d_path, device=device,
                                  batch_size=batch_size, resolution=resolution, short=short, protocol=protocol)
    if pair is None:
        return refused
    gen, ref = pair
    out = subset_mmd2(ref.features, gen.features, num_subsets=num_subsets, max_subset_size=max_subset_size, seed=seed)
    record = _record(gen, ref, device, {
        "dtype": "float64", "kernel": "(x.y / d + 1)^3", "estimator": "unbiased MMD^2",
        "scale": "raw MMD^2 (not x1000)", "num_subsets": num_subsets, "max_subset_size": max_subset_size,
        "subset_size": out.subset_size, "seed": seed,
        "sampling": "numpy default_rng(seed), without replacement, generated then reference per subset"})
    values = {"kvd": out.mean, "kvd_std": out.std, "per_subset": list(out.per_subset)}
    return metric_result("kvd", protocol, KVD_VERSION, out.mean, values, record)
