"""CLIPSIM with a tiny random-weight CLIP the test saves with save_pretrained; checked against torchmetrics."""

import json

import numpy as np
import pytest
import torch

from eval_weights import write_clip
from reelm.eval.clip_score import ClipScorer
from reelm.eval.clip_input import ClipInputError
from reelm.eval.distribution.registry import compute

PROMPTS = ["a red ball moves up", "a blue star"]


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory, single_thread_isolated):
    return write_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")


@pytest.fixture(scope="module")
def clips():
    return np.random.default_rng(0).integers(0, 256, (2, 3, 40, 48, 3), dtype=np.uint8)


class _TensorFeatures(torch.nn.Module):
    """torchmetrics 1.9 expects get_*_features to return tensors; transformers 5 returns pooled outputs."""

    def __init__(self, model):
        super().__init__()
        self.model, self.config = model, model.config

    def get_image_features(self, *args, **kwargs):
        return self.model.get_image_features(*args, **kwargs).pooler_output

    def get_text_features(self, *args, **kwargs):
        return self.model.get_text_features(*args, **kwargs).pooler_output


def test_clipsim_records_per_clip_and_per_frame_scores(clip_folder, clips):
    result = compute("clipsim", clips, prompts=PROMPTS, clip_path=clip_folder)
    json.dumps(result)
    assert result["computed"] and len(result["per_sample"]) == 2
    for sample, prompt in zip(result["per_sample"], PROMPTS):
        assert sample["prompt"] == prompt and len(sample["frame_scores"]) == 3
        assert all(0 <= s <= 100 for s in sample["frame_scores"])
        assert sample["score"] == pytest.approx(np.mean(sample["frame_scores"]))
    assert result["value"] == pytest.approx(np.mean([s["score"] for s in result["per_sample"]]))
    model = result["protocol"]["model"]
    assert set(model["weights_sha256"]) == {"model.safetensors"} and model["image_processor"]["crop_size"]
    assert result["protocol"]["counts"]["generated"] == {"clips": 2, "frames": 6}
    assert compute("clipsim", clips, prompts=PROMPTS, clip_path=clip_folder)["value"] == result["value"]


def test_frame_scores_equal_torchmetrics_clip_score(clip_folder, clips):
    from torchmetrics.multimodal.clip_score import CLIPScore

    ours = ClipScorer(clip_folder)
    metric = CLIPScore(model_name_or_path=lambda: (_TensorFeatures(ours.model), ours.processor))
    text = ours.text_embeddings(PROMPTS)
    cosines = []
    for clip, prompt, embedding in zip(clips, PROMPTS, text):
        for frame in clip:
            cosine = float(ours.image_embeddings(frame[None])[0] @ embedding)
            metric.update(torch.from_numpy(frame).permute(2, 0, 1), [prompt])  # one pair: its clamp is per frame
            assert float(metric.compute()) == pytest.approx(100 * max(cosine, 0.0), abs=1e-3)
            metric.reset()
            cosines.append(cosine)
    result = compute("clipsim", clips, prompts=PROMPTS, clip_path=clip_folder)
    frame_scores = [s for sample in result["per_sample"] for s in sample["frame_scores"]]
    assert frame_scores == pytest.approx([100 * max(c, 0.0) for c in cosines], abs=1e-4)


def test_missing_model_or_prompts(clip_folder, clips, tmp_path):
    assert "no CLIP model" in compute("clipsim", clips, prompts=PROMPTS)["reason"]
    assert "not found" in compute("clipsim", clips, prompts=PROMPTS, clip_path=tmp_path / "absent")["reason"]
    with pytest.raises(ClipInputError, match="no prompt"):
        compute("clipsim", clips, prompts=PROMPTS[:1], clip_path=clip_folder)
