"""The I3D detector: pytorch-i3d names, both weight formats, strict loading, preprocessing.

The TorchScript file is our InceptionI3d scripted behind StyleGAN-V's detector signature
(``export_torchscript_detector``), saved and loaded back with ``torch.jit.load``.
"""

import hashlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from eval_weights import random_i3d, write_i3d
from reelm.eval.distribution.i3d import I3DWeightsError, InceptionI3d, clips_to_i3d_input, load_i3d

SIZE = 16
# pytorch-i3d's InceptionI3d(400).state_dict() has 344 entries (checked against its pytorch_i3d.py)
PYTORCH_I3D_KEYS = 344


@pytest.fixture(scope="module")
def weights(tmp_path_factory, single_thread_isolated):
    return write_i3d(tmp_path_factory.mktemp("i3d"), size=SIZE)


def _clips(n, frames=16, h=SIZE, w=SIZE, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, frames, h, w, 3), dtype=np.uint8))


def test_state_dict_has_pytorch_i3d_names_and_shapes():
    state = InceptionI3d().state_dict()
    assert len(state) == PYTORCH_I3D_KEYS
    assert state["Conv3d_1a_7x7.conv3d.weight"].shape == (64, 3, 7, 7, 7)
    assert state["Conv3d_2c_3x3.bn.running_var"].shape == (192,)
    assert state["Mixed_4f.b1b.conv3d.weight"].shape == (320, 160, 3, 3, 3)
    assert state["Mixed_5c.b3b.conv3d.weight"].shape == (128, 832, 1, 1, 1)
    assert state["logits.conv3d.weight"].shape == (400, 1024, 1, 1, 1) and state["logits.conv3d.bias"].shape == (400,)
    assert not any("b3a" in k or "avg_pool" in k for k in state)


def test_all_formats_load_and_agree(weights):
    clips = _clips(2)
    loaded = {name: load_i3d(path, size=SIZE) for name, path in weights.items()}
    assert loaded["torchscript"].format == "torchscript" and loaded["pt"].format == "pytorch-i3d-state-dict"
    feats = {name: det.features(clips) for name, det in loaded.items()}
    assert feats["pt"].shape == (2, 1024) and feats["pt"].dtype == torch.float32
    assert torch.equal(feats["pt"], feats["safetensors"])
    torch.testing.assert_close(feats["torchscript"], feats["pt"], rtol=1e-4, atol=1e-5)
    assert feats["pt"].abs().mean() > 1e-3 and not torch.allclose(feats["pt"][0], feats["pt"][1])
    for name, det in loaded.items():
        assert det.describe()["sha256"] == hashlib.sha256(weights[name].read_bytes()).hexdigest()


def test_torchscript_is_called_like_stylegan_v(weights):
    scripted = torch.jit.load(str(weights["torchscript"]))
    x = _clips(1).permute(0, 4, 1, 2, 3).contiguous()  # (B, 3, T, H, W) uint8
    by_detector = load_i3d(weights["torchscript"]).features(_clips(1))
    torch.testing.assert_close(by_detector, scripted(x, rescale=True, resize=True, return_features=True))
    assert scripted(x, rescale=True, resize=True, return_features=False).shape == (1, 400)


def test_features_are_the_pooled_input_of_the_logits_layer():
    model = random_i3d(1)
    x = torch.rand(2, 3, 16, SIZE, SIZE) * 2 - 1
    captured = {}
    model.Mixed_5c.register_forward_hook(lambda m, i, o: captured.update(mixed=o))
    with torch.no_grad():
        feats = model.features(x)
        logits = model(x)
    torch.testing.assert_close(feats, captured["mixed"].mean(dim=(2, 3, 4)))
    expected = F.conv3d(feats[:, :, None, None, None], model.logits.conv3d.weight, model.logits.conv3d.bias).flatten(1)
    torch.testing.assert_close(logits, expected)


@pytest.mark.slow
def test_full_size_features_equal_pytorch_i3d_avg_pool():
    """At 16 x 224 x 224, pytorch-i3d's AvgPool3d(2, 7, 7) over Mixed_5c is one window: our mean."""
    model = random_i3d(2)
    x = torch.rand(1, 3, 16, 224, 224) * 2 - 1
    captured = {}
    model.Mixed_5c.register_forward_hook(lambda m, i, o: captured.update(mixed=o))
    with torch.no_grad():
        feats = model.features(x)
    assert captured["mixed"].shape == (1, 1024, 2, 7, 7)
    torch.testing.assert_close(feats, F.avg_pool3d(captured["mixed"], (2, 7, 7), stride=1).flatten(1))


def test_preprocessing_resizes_the_shorter_side_and_center_crops():
    clips = np.zeros((1, 2, 8, 16, 3), dtype=np.uint8)
    clips[..., 6:10, :] = 255  # a bright central band, dark sides
    x = clips_to_i3d_input(torch.from_numpy(clips), 16)  # 8x16 -> 16x32 (band 12:20) -> columns 8:24
    assert x.shape == (1, 3, 2, 16, 16)
    assert x.min() >= -1 and x.max() <= 1
    assert torch.allclose(x[..., 6:10], torch.ones(1)) and x[..., :2].max() < -0.9 and x[..., -2:].max() < -0.9


def test_strict_loading_errors(tmp_path):
    state = InceptionI3d().state_dict()
    torch.save({k: v for k, v in state.items() if k != "Mixed_4b.b0.conv3d.weight"}, tmp_path / "missing.pt")
    with pytest.raises(I3DWeightsError, match="1 missing keys"):
        load_i3d(tmp_path / "missing.pt")
    torch.save(InceptionI3d(num_classes=10).state_dict(), tmp_path / "ten.pt")
    with pytest.raises(I3DWeightsError, match="10 classes"):
        load_i3d(tmp_path / "ten.pt")
    torch.save({"model": object()}, tmp_path / "pickled.pt")
    with pytest.raises(I3DWeightsError, match="refused: it holds pickled Python objects"):
        load_i3d(tmp_path / "pickled.pt")
    with pytest.raises(I3DWeightsError, match="not found"):
        load_i3d(tmp_path / "absent.pt")


def test_a_2018_style_state_dict_loads(tmp_path):
    """pytorch-i3d's rgb_imagenet.pt predates zip serialization and BatchNorm's num_batches_tracked."""
    state = {k: v for k, v in random_i3d(3).state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "rgb_imagenet.pt", _use_new_zipfile_serialization=False)
    detector = load_i3d(tmp_path / "rgb_imagenet.pt", size=SIZE)
    assert detector.format == "pytorch-i3d-state-dict"
    torch.testing.assert_close(detector.module.Mixed_5c.b0.conv3d.weight, state["Mixed_5c.b0.conv3d.weight"])
