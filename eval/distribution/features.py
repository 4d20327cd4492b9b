"""Detector features of one clip set, with the settings that made them: computed once, cached on disk.

A :class:`FeatureSet` is a float32 matrix ``(N, D)`` (one row per clip or frame) plus a JSON
``extractor`` record (detector file SHA-256, format, layer, resolution, frame policy) and the
input counts. Metrics accept a FeatureSet wherever they accept clips, so a reference set's
features are extracted once (``reelm.eval.distribution.registry.extract``), saved with :meth:`FeatureSet.save`
(safetensors + JSON metadata, written atomically, nothing pickled) and reused; a metric refuses
a FeatureSet whose ``extractor`` differs from the one it would use.

Follows: StyleGAN-V ``src/metrics/metric_utils.py`` (``FeatureStats``, cached per detector and
dataset options).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reelm.core.atomic import atomic_write
from reelm.core.errors import ReelmError, one_line_reason

FORMAT_VERSION = 1


class FeatureSetError(ReelmError):
    """A features file that cannot be read, or features from another extractor than the metric's."""


@dataclass
class FeatureSet:
    features: np.ndarray  # (N, D) float32
    kind: str  # "i3d", "inception_pool", "inception_logits_unbiased"
    extractor: dict
    counts: dict

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def save(self, path: str | Path) -> Path:
        from safetensors.numpy import save_file

        meta = {"format_version": FORMAT_VERSION, "kind": self.kind, "extractor": self.extractor, "counts": self.counts}
        tensors = {"features": np.ascontiguousarray(self.features, dtype=np.float32)}
        return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={"reelm": json.dumps(meta)}))

    @classmethod
    def load(cls, path: str | Path) -> FeatureSet:
        from safetensors import safe_open

        path = Path(path)
        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = json.loads((f.metadata() or {})["reelm"])
                features = f.get_tensor("features")
        except Exception as exc:  # noqa: BLE001 - one line naming the file
            raise FeatureSetError(f"{path}: not a reelm features file ({one_line_reason(exc)})") from exc
        if meta.get("format_version") != FORMAT_VERSION:
            raise FeatureSetError(f"{path}: features format {meta.get('format_version')}, "
                                  f"this reelm reads {FORMAT_VERSION}")
        return cls(features=features, kind=meta["kind"], extractor=meta["extractor"], counts=meta["counts"])


def check_same_extractor(a: FeatureSet, b: FeatureSet, *, names: tuple[str, str]) -> None:
    """Refuse to compare features that different detectors or settings produced (the path may differ)."""
    if a.kind != b.kind:
        raise FeatureSetError(f"{names[0]} holds {a.kind} features, {names[1]} holds {b.kind}")
    keys = (set(a.extractor) | set(b.extractor)) - {"path"}
    differing = sorted(k for k in keys if a.extractor.get(k) != b.extractor.get(k))
    if differing:
        detail = "; ".join(f"{k}: {a.extractor.get(k)!r} vs {b.extractor.get(k)!r}" for k in differing[:3])
        raise FeatureSetError(f"{names[0]} and {names[1]} come from different extractors ({detail})")
