"""CLIPSIM: text-video CLIP score, the mean over a clip's frames of each frame's CLIP score to its prompt.

A frame's score is ``100 * max(cos(E_image, E_text), 0)`` — the per-pair formula in
torchmetrics' ``CLIPScore`` documentation, applied to each frame (torchmetrics' class clamps
the mean instead; the two agree whenever no cosine is negative, as with trained CLIP models).
A clip's score is the mean of its frames' scores; the reported value is the mean over clips,
and every clip's score and frame scores are kept. Embeddings come from a local folder that
``transformers`` loads (``CLIPModel`` + ``CLIPProcessor``, ``local_files_only=True``, never a
download) with the folder's own preprocessing (its image processor's resize, crop and
normalization; prompts truncated to the text model's length).

Follows: Wu et al. 2021 (GODIVA: CLIPSIM); Hessel et al. 2021 (CLIPScore); torchmetrics
``multimodal.clip_score``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from reelm.core.errors import ReelmError, one_line_reason
from reelm.eval.clip_input import ClipInputError, iter_clips
from reelm.eval.distribution.i3d import file_sha256
from reelm.eval.provenance import deterministic, environment, metric_result, not_computed
from reelm.core.weights import local_folder

CLIPSIM_VERSION = "reelm.eval clipsim 1"
WEIGHT_SUFFIXES = (".safetensors", ".bin")


class ClipModelError(ReelmError):
    """A CLIP folder that transformers cannot load."""


def _embedding(out) -> torch.Tensor:
    """``get_*_features`` returns a tensor in transformers 4 and a pooled output in 5."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class ClipScorer:
    """A local CLIP model and processor: normalized text and frame embeddings."""

    def __init__(self, folder: str | Path, *, device: str | torch.device = "cpu"):
        from transformers import CLIPModel, CLIPProcessor

        self.folder = local_folder(folder, error=ClipModelError, what="CLIP model folder")
        self.device = torch.device(device)
        try:
            self.model = CLIPModel.from_pretrained(self.folder, local_files_only=True).to(self.device).eval()
            self.processor = CLIPProcessor.from_pretrained(self.folder, local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - one line naming the folder
            reason = one_line_reason(exc)
            raise ClipModelError(f"{self.folder}: cannot load a CLIP model and processor ({reason})") from exc
        self.max_tokens = self.model.config.text_config.max_position_embeddings

    @torch.no_grad()
    def text_embeddings(self, prompts: list[str]) -> torch.Tensor:
        """``(P, E)`` unit-norm text embeddings."""
        tokens = self.processor(text=prompts, return_tensors="pt", padding=True, truncation=True,
                                max_length=self.max_tokens)
        out = _embedding(self.model.get_text_features(input_ids=tokens["input_ids"].to(self.device),
                                                      attention_mask=tokens["attention_mask"].to(self.device)))
        return torch.nn.functional.normalize(out.float(), dim=-1)

    @torch.no_grad()
    def image_embeddings(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 ``(B, H, W, 3)`` -> ``(B, E)`` unit-norm image embeddings."""
        pixels = self.processor(images=list(frames), return_tensors="pt")["pixel_values"].to(self.device)
        out = _embedding(self.model.get_image_features(pixel_values=pixels))
        return torch.nn.functional.normalize(out.float(), dim=-1)

    def describe(self) -> dict:
        ip = self.processor.image_processor
        files = {p.name: file_sha256(p) for p in sorted(self.folder.iterdir()) if p.suffix in WEIGHT_SUFFIXES}
        return {"path": str(self.folder), "weights_sha256": files, "model_type": self.model.config.model_type,
                "image_size": self.model.config.vision_config.image_size,
                "image_processor": {"class": type(ip).__name__, "size": dict(ip.size or {}),
                                    "crop_size": dict(ip.crop_size or {}), "resample": str(ip.resample),
                                    "mean": list(ip.image_mean), "std": list(ip.image_std)},
                "max_text_tokens": self.max_tokens}


def clipsim(generated, prompts: Iterable[str] | None, *, clip_path: str | Path | None = None,
            protocol: str = "clipsim", device: str | torch.device = "cpu", batch_size: int = 32) -> dict:
    """Mean CLIP score of each clip's frames to its prompt; per clip and per frame scores in ``per_sample``."""
    if clip_path is None:
        return not_computed("clipsim", protocol, CLIPSIM_VERSION, "no CLIP model folder given (clip_path)")
    if not Path(clip_path).is_dir():
        return not_computed("clipsim", protocol, CLIPSIM_VERSION, f"CLIP model folder not found: {clip_path}")
    if prompts is None:
        raise ClipInputError("prompts: CLIPSIM needs one prompt per generated clip")
    scorer = ClipScorer(clip_path, device=device)
    text_cache: dict[str, torch.Tensor] = {}
    prompt_iter = iter([prompts] if isinstance(prompts, str) else prompts)
    per_sample, frames_seen = [], 0
    with deterministic():
        for index, clip in enumerate(iter_clips(generated, name="generated")):
            prompt = next(prompt_iter, None)
            if not isinstance(prompt, str):
                raise ClipInputError(f"prompts: no prompt (str) for generated clip {index}")
            if prompt not in text_cache:
                text_cache[prompt] = scorer.text_embeddings([prompt])[0]
            cosines = torch.cat([scorer.image_embeddings(clip[s:s + batch_size]) @ text_cache[prompt]
                                 for s in range(0, clip.shape[0], batch_size)])  # (T,)
            frame_scores = (100.0 * cosines.clamp(min=0)).double().tolist()
            per_sample.append({"index": index, "prompt": prompt, "score": float(np.mean(frame_scores)),
                               "frame_scores": frame_scores})
            frames_seen += clip.shape[0]
    if not per_sample:
        raise ClipInputError("generated: no clips")
    scores = [s["score"] for s in per_sample]
    value = float(np.mean(scores))
    record = {
        "model": scorer.describe(),
        "counts": {"generated": {"clips": len(per_sample), "frames": frames_seen}},
        "statistics": {"frame_score": "100 * max(cos(image, text), 0)", "clip_score": "mean over the clip's frames",
                       "value": "mean over clips", "frames": "every frame of every clip",
                       "dtype": "float32 embeddings"},
        "environment": environment(torch.device(device)),
    }
    values = {"clipsim": value, "clipsim_std": float(np.std(scores))}
    return metric_result("clipsim", protocol, CLIPSIM_VERSION, value, values, record, per_sample=per_sample)
