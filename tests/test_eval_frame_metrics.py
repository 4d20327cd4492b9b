"""FID / KID / IS on frames: torch-fidelity's Inception (random weights the test saves), torchmetrics' metrics."""

import json

import numpy as np
import pytest
import torch

from eval_weights import write_inception
from reelm.eval.distribution.frame_metrics import inception_features
from reelm.eval.distribution.inception import InceptionV3, InceptionWeightsError, load_inception, resize_bilinear_tf1
from reelm.eval.distribution.kernel import mmd2_unbiased
from reelm.eval.distribution.registry import compute


class InceptionOutput(torch.nn.Module):
    """One output of reelm's Inception-v3 as an ``(N, D)`` tensor: torchmetrics' custom feature extractor."""

    def __init__(self, inception: InceptionV3, output: str = "pool"):
        super().__init__()
        self.inception, self.output = inception, output
        self.num_features = 2048 if output == "pool" else 1008

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.inception(frames)[self.output]


RESIZE = 96  # Inception-v3 runs from 75 px up; 299 is the protocol's (one test runs it)
SMALL = {"resize_to": RESIZE}


@pytest.fixture(scope="module")
def weights(tmp_path_factory, single_thread_isolated):
    return write_inception(tmp_path_factory.mktemp("inception"))


def _clips(n, frames, seed, shift=0, size=(24, 32)):
    rng = np.random.default_rng(seed)
    return np.clip(rng.integers(0, 200, (n, frames, *size, 3)) + shift, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def sets():
    return {"generated": _clips(3, 4, seed=1, shift=50), "reference": _clips(4, 3, seed=2)}


def _tf1_resize_loop(image, out_h, out_w):
    """TF 1.x resize_bilinear(align_corners=False), written out per pixel."""
    in_h, in_w = image.shape
    out = np.zeros((out_h, out_w))
    for i in range(out_h):
        y = i * in_h / out_h
        y0, y1 = int(np.floor(y)), min(int(np.floor(y)) + 1, in_h - 1)
        for j in range(out_w):
            x = j * in_w / out_w
            x0, x1 = int(np.floor(x)), min(int(np.floor(x)) + 1, in_w - 1)
            top = image[y0, x0] + (image[y0, x1] - image[y0, x0]) * (x - x0)
            bottom = image[y1, x0] + (image[y1, x1] - image[y1, x0]) * (x - x0)
            out[i, j] = top + (bottom - top) * (y - y0)
    return out


@pytest.mark.parametrize("out_size", [(9, 4), (13, 17)])
def test_resize_is_tensorflow1_bilinear(out_size):
    image = np.random.default_rng(0).uniform(0, 255, (5, 7))
    ours = resize_bilinear_tf1(torch.from_numpy(image)[None, None].float(), out_size)[0, 0].double().numpy()
    np.testing.assert_allclose(ours, _tf1_resize_loop(image, *out_size), rtol=1e-5, atol=1e-3)


def test_weights_load_strictly_and_outputs_have_torch_fidelity_shapes(weights, tmp_path):
    detector = load_inception(weights)
    frames = torch.from_numpy(_clips(1, 2, seed=0)[0]).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        out = detector.module(frames)  # at 299, the protocol's size
    assert out["pool"].shape == (2, 2048) and out["logits_unbiased"].shape == (2, 1008)
    torch.testing.assert_close(out["logits"], out["logits_unbiased"] + detector.module.fc.bias)
    torch.testing.assert_close(out["logits_unbiased"], out["pool"] @ detector.module.fc.weight.T)
    state = torch.load(weights, weights_only=True)
    assert "Mixed_7c.branch3x3dbl_3b.bn.running_var" in state and state["fc.weight"].shape == (1008, 2048)
    torch.save({k: v for k, v in state.items() if not k.startswith("fc.")}, tmp_path / "no_fc.pth")
    with pytest.raises(InceptionWeightsError, match="not torch-fidelity's Inception-v3"):
        load_inception(tmp_path / "no_fc.pth")
    with pytest.raises(InceptionWeightsError, match="not found"):
        load_inception(tmp_path / "absent.pth")


@pytest.mark.slow
def test_fid_equals_torchmetrics_with_our_module_as_its_feature_extractor(weights, sets):
    """Two FIDs on 2048-d features: 5-20 s on the shared 2-core CPU."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    result = compute("fid_frames", sets["generated"], sets["reference"], inception_path=weights, **SMALL)
    json.dumps(result)
    p = result["protocol"]
    assert result["computed"] and p["counts"]["generated"]["frames"] == 12 and p["counts"]["reference"]["frames"] == 12
    assert p["detector"]["resolution"] == RESIZE and p["overrides"] == SMALL and p["detector"]["sha256"]
    module = InceptionOutput(load_inception(weights, resize_to=RESIZE).module, "pool")
    metric = FrechetInceptionDistance(feature=module)
    for name, real in (("reference", True), ("generated", False)):
        frames = torch.from_numpy(sets[name].reshape(-1, 24, 32, 3)).permute(0, 3, 1, 2).contiguous()
        metric.update(frames, real=real)
    assert result["value"] == pytest.approx(float(metric.compute()), rel=1e-4)
    assert result["value"] > 0


def test_kid_and_is_match_direct_formulas_and_repeat(weights, sets):
    detector = load_inception(weights, resize_to=RESIZE)
    feats = {k: inception_features(v, detector, name=k, outputs=("pool", "logits_unbiased"))
             for k, v in sets.items()}
    gen, ref = feats["generated"]["pool"], feats["reference"]["pool"]

    state = torch.get_rng_state()
    kid = compute("kid_frames", gen, ref, num_subsets=3)  # features given: no weights needed
    assert torch.equal(torch.get_rng_state(), state)  # the caller's generator is untouched
    assert kid["protocol"]["statistics"]["subset_size"] == 12 and kid["values"]["kid_std"] == pytest.approx(0, abs=1e-9)
    assert kid["value"] == pytest.approx(mmd2_unbiased(gen.features, ref.features), rel=1e-6)
    assert compute("kid_frames", gen, ref, num_subsets=3)["value"] == kid["value"]

    logits = feats["generated"]["logits_unbiased"]
    result = compute("is_frames", logits, splits=1)
    p = torch.from_numpy(logits.features).double().softmax(1)
    expected = torch.exp((p * (p.log() - p.mean(0, keepdim=True).log())).sum(1).mean())
    assert result["value"] == pytest.approx(float(expected), rel=1e-9) and result["values"]["is_std"] is None
    ten = compute("is_frames", sets["generated"], inception_path=weights, **SMALL)
    assert ten["protocol"]["statistics"]["splits"] == 10 and ten["value"] >= 1.0
    assert compute("is_frames", sets["generated"], inception_path=weights, **SMALL)["value"] == ten["value"]


def test_without_weights_the_result_says_why(sets):
    for name in ("fid_frames", "kid_frames"):
        result = compute(name, sets["generated"], sets["reference"])
        assert not result["computed"] and "no Inception weights" in result["reason"]
    assert not compute("is_frames", sets["generated"])["computed"]
