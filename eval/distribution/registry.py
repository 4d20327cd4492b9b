"""The named generation-metric protocols behind one call: ``compute(name, generated, reference, ...)``.

Each protocol is a metric function with fixed settings (frames per clip, short-clip policy,
subsets, seeds, resolution). Input: clips as a uint8 array ``(N, T, H, W, 3)`` or an iterable
of clip arrays, or a precomputed :class:`FeatureSet` (``extract`` makes one, to cache a
reference set). Output: a JSON-ready dict ``{metric, computed, value, values, per_sample,
protocol}`` (or ``reason`` instead of a value when it could not be computed, e.g. no weights).
``device`` takes what ``--device`` takes (``auto``, ``cpu``, ``cuda:N``).
A setting passed to ``compute`` that differs from the protocol's is applied and listed under
``protocol["overrides"]``, so such a number is never mistaken for the named protocol's.

| name | metric | needs |
|---|---|---|
| ``fvd_16f`` / ``fvd_16f_padlast`` | FVD, first 16 frames (padlast: short clips padded) | reference, ``i3d_path`` |
| ``kvd_16f`` / ``kvd_16f_padlast`` | KVD, 100 subsets of <= 1000, seed 0 | reference, ``i3d_path`` |
| ``fid_frames`` | FID over all frames | reference, ``inception_path`` |
| ``kid_frames`` | KID over all frames, 100 subsets of <= 1000, seed 0 | reference, ``inception_path`` |
| ``is_frames`` | Inception Score over all frames, 10 splits, seed 0 | ``inception_path`` |
| ``clipsim`` | mean per-frame CLIP score to the clip's prompt | prompts, ``clip_path`` |

Follows: StyleGAN-V ``src/metrics/metric_main.py`` (one registry of named protocols, e.g.
``fvd2048_16f``); VBench (per-sample scores beside the aggregate).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from reelm.core.device import resolve_device
from reelm.core.errors import ReelmError
from reelm.eval import clip_score
from reelm.eval.distribution import frame_metrics, video_metrics
from reelm.eval.distribution.features import FeatureSet
from reelm.eval.distribution.i3d import load_i3d
from reelm.eval.distribution.inception import load_inception

RESOURCES = ("i3d_path", "inception_path", "clip_path", "device", "batch_size")


class UnknownProtocolError(ReelmError):
    """A protocol name or setting that the registry does not know."""


@dataclass(frozen=True)
class Protocol:
    name: str
    metric: str
    function: Callable[..., dict]
    description: str
    settings: dict = field(default_factory=dict)
    needs_reference: bool = True
    needs_prompts: bool = False
    weights: str = "i3d_path"


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    Protocol("fvd_16f", "fvd", video_metrics.fvd, "FVD on the first 16 frames of each clip; shorter clips refused",
             {"short": "refuse"}),
    Protocol("fvd_16f_padlast", "fvd", video_metrics.fvd,
             "FVD on 16 frames per clip; shorter clips padded by repeating their last frame", {"short": "pad_last"}),
    Protocol("kvd_16f", "kvd", video_metrics.kvd, "KVD on the first 16 frames of each clip; shorter clips refused",
             {"short": "refuse", "num_subsets": 100, "max_subset_size": 1000, "seed": 0}),
    Protocol("kvd_16f_padlast", "kvd", video_metrics.kvd,
             "KVD on 16 frames per clip; shorter clips padded by repeating their last frame",
             {"short": "pad_last", "num_subsets": 100, "max_subset_size": 1000, "seed": 0}),
    Protocol("fid_frames", "fid", frame_metrics.fid_frames, "FID over every frame, torch-fidelity's Inception",
             weights="inception_path"),
    Protocol("kid_frames", "kid", frame_metrics.kid_frames, "KID over every frame, torch-fidelity's Inception",
             {"num_subsets": 100, "max_subset_size": 1000, "seed": 0}, weights="inception_path"),
    Protocol("is_frames", "is", frame_metrics.is_frames, "Inception Score over every frame, 10 splits",
             {"splits": 10, "seed": 0}, needs_reference=False, weights="inception_path"),
    Protocol("clipsim", "clipsim", clip_score.clipsim, "mean over frames of 100 * max(cos, 0) to the clip's prompt",
             needs_reference=False, needs_prompts=True, weights="clip_path"),
)}


def list_protocols() -> list[str]:
    return sorted(PROTOCOLS)


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise UnknownProtocolError(f"unknown metric protocol {name!r}; known: {', '.join(list_protocols())}")
    return PROTOCOLS[name]


def compute(name: str, generated, reference=None, *, prompts=None, i3d_path: str | Path | None = None,
            inception_path: str | Path | None = None, clip_path: str | Path | None = None,
            device: str | torch.device = "cpu", batch_size: int | None = None, **overrides) -> dict:
    """Run protocol ``name`` on ``generated`` (and ``reference`` / ``prompts`` where it needs them)."""
    protocol = get_protocol(name)
    device = resolve_device(device)
    accepted = set(inspect.signature(protocol.function).parameters)
    unknown = sorted(set(overrides) - accepted - set(RESOURCES))
    if unknown:
        raise UnknownProtocolError(f"{name}: unknown setting(s) {', '.join(unknown)}")
    resources = {"i3d_path": i3d_path, "inception_path": inception_path, "clip_path": clip_path}
    kwargs = dict(protocol.settings) | overrides | {"protocol": name, "device": device,
                                                   protocol.weights: resources[protocol.weights]}
    if batch_size is not None:
        kwargs["batch_size"] = batch_size
    args: list = [generated]
    if protocol.needs_reference:
        if reference is None:
            raise ReelmError(f"{name}: needs reference clips (or their features)")
        args.append(reference)
    if protocol.needs_prompts:
        args.append(prompts)
    result = protocol.function(*args, **kwargs)
    changed = {k: v for k, v in overrides.items() if protocol.settings.get(k, _default(protocol, k)) != v}
    if changed:
        result["protocol"]["overrides"] = changed
    return result


def extract(name: str, clips, *, i3d_path: str | Path | None = None, inception_path: str | Path | None = None,
            device: str | torch.device = "cpu", batch_size: int | None = None, **overrides) -> FeatureSet:
    """The features protocol ``name`` compares, of one clip set: save them to reuse a reference set."""
    protocol = get_protocol(name)
    device = resolve_device(device)
    settings = dict(protocol.settings) | overrides
    batch = {} if batch_size is None else {"batch_size": batch_size}
    if protocol.metric in ("fvd", "kvd"):
        if i3d_path is None:
            raise ReelmError(f"{name}: extracting features needs i3d_path")
        detector = load_i3d(i3d_path, device=device, size=settings.get("resolution", video_metrics.I3D_SIZE))
        return video_metrics.i3d_features(clips, detector, name="clips", short=settings["short"], protocol=name,
                                          **batch)
    if protocol.metric in ("fid", "kid", "is"):
        if inception_path is None:
            raise ReelmError(f"{name}: extracting features needs inception_path")
        detector = load_inception(inception_path, device=device,
                                  resize_to=settings.get("resize_to", frame_metrics.INCEPTION_SIZE))
        output = "logits_unbiased" if protocol.metric == "is" else "pool"
        return frame_metrics.inception_features(clips, detector, name="clips", outputs=(output,), **batch)[output]
    raise ReelmError(f"{name}: has no cached features (it scores each clip on its own)")


def _default(protocol: Protocol, key: str):
    parameter = inspect.signature(protocol.function).parameters.get(key)
    return None if parameter is None else parameter.default
