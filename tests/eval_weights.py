"""Tiny random-weight detectors for the generation-metric tests, written the way users' files are.

- I3D: our ``InceptionI3d`` (full architecture, random He-normal convs so features are O(1)),
  saved as a pytorch-i3d-style state dict (``.pt`` via ``torch.save``, or ``.safetensors``) and
  as a TorchScript detector with StyleGAN-V's call signature (``export_torchscript_detector``:
  our network scripted behind ``forward(x, rescale, resize, return_features)``).
- a tiny TorchScript video detector (one Conv3d, 32-d features) with the same call signature,
  for the FVD / KVD plumbing tests (1024-d I3D features make every ``sqrtm`` take seconds);
- Inception: our ``InceptionV3`` with random weights and BatchNorm statistics, saved as a plain
  state dict under torch-fidelity's file name.
- CLIP: a ``CLIPModel`` with 2-layer, 32-wide text and vision towers (32 x 32 images), a
  character-level ``CLIPTokenizer`` and a 32-pixel ``CLIPImageProcessor``, saved with
  ``save_pretrained``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from reelm.eval.distribution.i3d import InceptionI3d, export_torchscript_detector
from reelm.eval.distribution.inception import WEIGHTS_NAME, InceptionV3


def random_i3d(seed: int = 0) -> InceptionI3d:
    torch.manual_seed(seed)
    model = InceptionI3d().eval()
    for module in model.modules():
        if isinstance(module, torch.nn.Conv3d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return model


def write_i3d(folder: Path, *, size: int, seed: int = 0) -> dict[str, Path]:
    """{"pt", "safetensors", "torchscript"}: the same random I3D in the three files."""
    from safetensors.torch import save_file

    model = random_i3d(seed)
    paths = {"pt": folder / "rgb_imagenet.pt", "safetensors": folder / "i3d.safetensors",
             "torchscript": folder / "i3d_torchscript.pt"}
    torch.save(model.state_dict(), paths["pt"])
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(paths["safetensors"]))
    export_torchscript_detector(model, paths["torchscript"], size=size)
    return paths


def write_inception(folder: Path, *, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = InceptionV3()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 2.0)
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    path = folder / WEIGHTS_NAME
    torch.save(model.state_dict(), path)
    return path


def write_clip(folder: Path, *, seed: int = 0) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in "abcdefghijklmnopqrstuvwxyz":
        vocab[char] = len(vocab)
        vocab[char + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"))
    tower = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    config = CLIPConfig(
        text_config=tower | dict(vocab_size=len(vocab), max_position_embeddings=32, bos_token_id=0, eos_token_id=1,
                                 pad_token_id=1),
        vision_config=tower | dict(image_size=32, patch_size=8), projection_dim=16)
    torch.manual_seed(seed)
    CLIPModel(config).eval().save_pretrained(folder)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


class TinyVideoDetector(torch.nn.Module):
    """A small stand-in with i3d_torchscript.pt's call signature: 32-d features, 400 logits."""

    def __init__(self, dim: int = 32, size: int = 16):
        super().__init__()
        self.size = size
        self.conv = torch.nn.Conv3d(3, dim, kernel_size=3, stride=2, padding=1)
        self.head = torch.nn.Linear(dim, 400)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        x = x.float()  # (B, 3, T, H, W)
        if rescale:
            x = x / 255.0 * 2.0 - 1.0
        if resize:
            x = torch.nn.functional.interpolate(x, size=[x.shape[2], self.size, self.size], mode="trilinear",
                                                align_corners=False)
        features = torch.relu(self.conv(x)).mean(dim=(2, 3, 4))
        return features if return_features else self.head(features)


def write_tiny_torchscript_detector(path: Path, *, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    torch.jit.save(torch.jit.script(TinyVideoDetector().eval()), str(path))
    return path
