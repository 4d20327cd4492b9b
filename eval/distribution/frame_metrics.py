"""FID, KID and IS on the frames of clips, with torch-fidelity's Inception, computed by torchmetrics.

Every frame of every clip is one sample. :func:`inception_features` runs our Inception-v3
(``inception.py``) once over a clip stream, in batches, and keeps only the feature rows
(``pool`` for FID / KID, ``logits_unbiased`` for IS). The metrics themselves are torchmetrics'
``FrechetInceptionDistance``, ``KernelInceptionDistance`` and ``InceptionScore``, fed those rows
through a pass-through feature module, in float64:

- FID: sample covariance (divide by N - 1), torchmetrics' eigenvalue form of tr sqrt(S1 S2);
- KID: ``num_subsets`` subsets of ``min(n_real, n_gen, max_subset_size)`` rows (torchmetrics
  refuses subsets larger than a set; StyleGAN-V shrinks them likewise), polynomial kernel
  ``(x.y / d + 1)^3``, raw MMD^2, std over subsets with ddof 0;
- IS: ``splits`` splits after a shuffle, std with ddof 1 (torchmetrics).

torchmetrics draws its subsets / shuffle from torch's global generator: we seed it with
``seed`` inside ``torch.random.fork_rng``, so results repeat and the caller's RNG is untouched.

Follows: Heusel et al. 2017 (FID), Binkowski et al. 2018 (KID), Salimans et al. 2016 (IS);
torch-fidelity's Inception; torchmetrics' ``image.fid`` / ``image.kid`` / ``image.inception``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from reelm.eval.clip_input import ClipCounts, ClipInputError, frame_batches
from reelm.eval.distribution.features import FeatureSet, FeatureSetError, check_same_extractor
from reelm.eval.distribution.inception import INCEPTION_SIZE, WEIGHTS_NAME, InceptionDetector, load_inception
from reelm.eval.provenance import deterministic, environment, metric_result, not_computed

FID_VERSION = "reelm.eval fid_frames 1"
KID_VERSION = "reelm.eval kid_frames 1"
IS_VERSION = "reelm.eval is_frames 1"
KIND = {"pool": "inception_pool", "logits_unbiased": "inception_logits_unbiased"}
UPDATE_ROWS = 4096  # rows per torchmetrics update call


class Precomputed(nn.Module):
    """torchmetrics' custom feature extractor for features we already have: returns its input."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def inception_features(clips, detector: InceptionDetector, *, name: str, outputs: tuple[str, ...] = ("pool",),
                       batch_size: int = 32) -> dict[str, FeatureSet]:
    """One pass over every frame of a clip stream: {output: FeatureSet with one row per frame}."""
    counts = ClipCounts()
    rows: dict[str, list[np.ndarray]] = {o: [] for o in outputs}
    with deterministic():
        for frames in frame_batches(clips, name=name, batch_size=batch_size, counts=counts):
            for output, value in detector.features(frames, outputs).items():
                rows[output].append(value)
    if counts.frames == 0:
        raise ClipInputError(f"{name}: no clips")
    return {o: FeatureSet(features=np.concatenate(rows[o]), kind=KIND[o],
                          extractor=detector.describe(o) | {"frames": "every frame of every clip"},
                          counts=counts.as_dict())
            for o in outputs}


def _features(clips, output: str, name: str, *, inception_path, device, batch_size, resize_to,
              loaded: dict) -> FeatureSet | str:
    """A side's features (from a FeatureSet or by extraction), or why they cannot be had."""
    if isinstance(clips, FeatureSet):
        if clips.kind != KIND[output]:
            raise FeatureSetError(f"{name}: {clips.kind} features; this metric needs {KIND[output]}")
        return clips
    if "detector" not in loaded:
        if inception_path is None:
            return f"no Inception weights given (inception_path: torch-fidelity's {WEIGHTS_NAME})"
        if not Path(inception_path).is_file():
            return f"Inception weights file not found: {inception_path}"
        loaded["detector"] = load_inception(inception_path, device=device, resize_to=resize_to)
    return inception_features(clips, loaded["detector"], name=name, outputs=(output,), batch_size=batch_size)[output]


def _pool_pair(generated, reference, **extraction) -> tuple[FeatureSet, FeatureSet] | str:
    """Both sides' ``pool`` features from one loaded Inception, or why they cannot be had."""
    loaded: dict = {}
    gen = _features(generated, "pool", "generated", loaded=loaded, **extraction)
    ref = _features(reference, "pool", "reference", loaded=loaded, **extraction)
    for side in (gen, ref):
        if isinstance(side, str):
            return side
    check_same_extractor(gen, ref, names=("generated", "reference"))
    if len(gen) < 2 or len(ref) < 2:
        return f"needs at least 2 frames per side, got {len(gen)} generated and {len(ref)} reference"
    return gen, ref


def _update(metric, features: FeatureSet, **kwargs) -> None:
    data = torch.from_numpy(features.features).double()
    for start in range(0, data.shape[0], UPDATE_ROWS):
        metric.update(data[start:start + UPDATE_ROWS], **kwargs)


def _record(gen: FeatureSet, ref: FeatureSet | None, statistics: dict, device) -> dict:
    counts = {"generated": gen.counts} | ({"reference": ref.counts} if ref is not None else {})
    return {"detector": gen.extractor, "counts": counts, "statistics": statistics,
            "environment": environment(torch.device(device))}


def fid_frames(generated, reference, *, inception_path: str | Path | None = None, protocol: str = "fid_frames",
               device: str | torch.device = "cpu", batch_size: int = 32, resize_to: int = INCEPTION_SIZE) -> dict:
    """FID between the frames of ``generated`` and ``reference`` (clips or ``pool`` FeatureSets)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    pair = _pool_pair(generated, reference, inception_path=inception_path, device=device, batch_size=batch_size,
                      resize_to=resize_to)
    if isinstance(pair, str):
        return not_computed("fid", protocol, FID_VERSION, pair)
    gen, ref = pair
    metric = FrechetInceptionDistance(feature=Precomputed(gen.features.shape[1]))
    _update(metric, ref, real=True)
    _update(metric, gen, real=False)
    value = float(metric.compute())
    stats = {"dtype": "float64", "covariance": "sample (divide by N - 1)",
             "computed_by": "torchmetrics FrechetInceptionDistance"}
    return metric_result("fid", protocol, FID_VERSION, value, {"fid": value}, _record(gen, ref, stats, device))


def kid_frames(generated, reference, *, inception_path: str | Path | None = None, protocol: str = "kid_frames",
               device: str | torch.device = "cpu", batch_size: int = 32, resize_to: int = INCEPTION_SIZE,
               num_subsets: int = 100, max_subset_size: int = 1000, seed: int = 0) -> dict:
    """KID between the frames of ``generated`` and ``reference`` (clips or ``pool`` FeatureSets)."""
    from torchmetrics.image.kid import KernelInceptionDistance

    pair = _pool_pair(generated, reference, inception_path=inception_path, device=device, batch_size=batch_size,
                      resize_to=resize_to)
    if isinstance(pair, str):
        return not_computed("kid", protocol, KID_VERSION, pair)
    gen, ref = pair
    subset_size = min(len(gen), len(ref), max_subset_size)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        metric = KernelInceptionDistance(feature=Precomputed(gen.features.shape[1]), subsets=num_subsets,
                                         subset_size=subset_size)
    _update(metric, ref, real=True)
    _update(metric, gen, real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = (float(v) for v in metric.compute())
    stats = {"dtype": "float64", "kernel": "(x.y / d + 1)^3", "estimator": "unbiased MMD^2",
             "scale": "raw MMD^2 (not x1000)", "num_subsets": num_subsets, "max_subset_size": max_subset_size,
             "subset_size": subset_size, "seed": seed, "sampling": "torch.randperm under torch.manual_seed(seed)",
             "computed_by": "torchmetrics KernelInceptionDistance"}
    return metric_result("kid", protocol, KID_VERSION, mean, {"kid": mean, "kid_std": std},
                         _record(gen, ref, stats, device))


def is_frames(generated, *, inception_path: str | Path | None = None, protocol: str = "is_frames",
              device: str | torch.device = "cpu", batch_size: int = 32, resize_to: int = INCEPTION_SIZE,
              splits: int = 10, seed: int = 0) -> dict:
    """Inception Score of the frames of ``generated`` (clips or a ``logits_unbiased`` FeatureSet)."""
    from torchmetrics.image.inception import InceptionScore

    gen = _features(generated, "logits_unbiased", "generated", inception_path=inception_path, device=device,
                    batch_size=batch_size, resize_to=resize_to, loaded={})
    if isinstance(gen, str):
        return not_computed("is", protocol, IS_VERSION, gen)
    if len(gen) < splits:
        return not_computed("is", protocol, IS_VERSION,
                            f"IS with {splits} splits needs at least {splits} frames, got {len(gen)}")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        metric = InceptionScore(feature=Precomputed(gen.features.shape[1]), splits=splits)
    _update(metric, gen)
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*degrees of freedom.*")  # splits=1: no std
        torch.manual_seed(seed)
        mean, std = (float(v) for v in metric.compute())
    std = std if np.isfinite(std) else None
    stats = {"dtype": "float64", "input": "logits_unbiased (as torch-fidelity and torchmetrics)", "splits": splits,
             "seed": seed, "shuffle": "torch.randperm under torch.manual_seed(seed)", "std": "ddof 1 over splits",
             "computed_by": "torchmetrics InceptionScore"}
    values = {"is": mean, "is_std": std}
    return metric_result("is", protocol, IS_VERSION, mean, values, _record(gen, None, stats, device))
