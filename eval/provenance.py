"""What every metric result records and its one shape: protocol, library versions, threads, determinism.

``deterministic()`` runs a block with ``torch.use_deterministic_algorithms(True, warn_only=True)``
(an op without a deterministic kernel warns instead of failing, e.g. cuBLAS without
``CUBLAS_WORKSPACE_CONFIG``) and cuDNN benchmarking off, then restores the previous settings;
on CPUs, results are identical run to run for the same thread count, which ``environment()``
records.

Follows: VBench / StyleGAN-V (a result is only comparable with its protocol beside it).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import platform

import torch

LIBRARIES = ("reelm", "torch", "numpy", "scipy", "torchmetrics", "transformers", "safetensors")


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def environment(device: torch.device) -> dict:
    return {"device": str(device), "torch_threads": torch.get_num_threads(),
            "deterministic_algorithms": "on (warn_only)", "versions": library_versions()}


@contextlib.contextmanager
def deterministic():
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.benchmark = previous[2]


def metric_result(metric: str, protocol: str, version: str, value: float, values: dict, record: dict,
                  per_sample: list | None = None) -> dict:
    """The one shape of a computed result: value(s), the protocol record, per-sample scores."""
    return {"metric": metric, "computed": True, "value": value, "values": values, "per_sample": per_sample,
            "protocol": {"name": protocol, "metric": metric, "implementation": version} | record}


def not_computed(metric: str, protocol: str, version: str, reason: str) -> dict:
    """A result that says why the metric was not computed (missing weights, too few samples)."""
    return {"metric": metric, "computed": False, "value": None, "values": {}, "per_sample": None, "reason": reason,
            "protocol": {"name": protocol, "metric": metric, "implementation": version}}
