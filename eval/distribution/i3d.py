"""The Kinetics-400 I3D video detector for FVD / KVD, from user-given weights in either format.

Two formats, one interface (``I3DDetector.features``: uint8 clips ``(B, T, H, W, 3)`` ->
float32 features ``(B, D)``), chosen by :func:`load_i3d` from the file:

- **TorchScript** (StyleGAN-V's ``i3d_torchscript.pt``): loaded with ``torch.jit.load`` and
  called exactly as StyleGAN-V's ``compute_fvd`` calls it: on the uint8 clip tensor
  ``(B, 3, T, H, W)`` with ``rescale=True, resize=True, return_features=True`` — the detector
  rescales ``[0, 255]`` to ``[-1, 1]`` and resizes to its own input size itself. Features are
  whatever it returns with ``return_features=True`` (StyleGAN-V: "raw features before the
  softmax layer"); their width is recorded.
- **pytorch-i3d state dict** (``rgb_imagenet.pt``-style, 400 classes; ``.pt``/``.pth`` read with
  ``torch.load(weights_only=True)``, or ``.safetensors``): loaded strictly into our
  :class:`InceptionI3d`, which has pytorch-i3d's layer names. Preprocessing: each frame's
  shorter side resized to ``size`` (bilinear, antialiased, ``align_corners=False``), a
  centered ``size x size`` crop, values ``x / 127.5 - 1`` in ``[-1, 1]``. Features: the
  output of ``Mixed_5c`` averaged over time and space, 1024-d — at 16 x 224 x 224 exactly
  pytorch-i3d's ``avg_pool`` output (kernel 2 x 7 x 7), the input of its ``logits`` layer.

Security: ``torch.jit.load`` runs the file's TorchScript graph (no arbitrary Python objects
are unpickled, but the graph is code from the file's author: load detectors you trust);
state dicts never unpickle objects (``weights_only=True`` or safetensors).

:func:`export_torchscript_detector` scripts our network behind the TorchScript detector's call
signature: the stand-in that tests and the benchmark use for format (a). It is not the
Kinetics detector.

Follows: Carreira & Zisserman 2017 (I3D); piergiaj/pytorch-i3d ``pytorch_i3d.py`` (layer
names, TF "same" padding); StyleGAN-V ``src/metrics/frechet_video_distance.py`` (the call).
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
import torch
import torch.nn.functional as F
from torch import nn

from reelm.core.weights import read_weights
from reelm.core.errors import ReelmError, one_line_reason

I3D_SIZE = 224
NUM_CLASSES = 400
FEATURE_DIM = 1024
TORCHSCRIPT_CALL = dict(rescale=True, resize=True, return_features=True)


class I3DWeightsError(ReelmError):
    """An I3D weights file that is missing, unreadable or of the wrong shape."""


def _same_pad(x: torch.Tensor, kernel: list[int], stride: list[int]) -> torch.Tensor:
    """TensorFlow "SAME" zero padding of ``(B, C, T, H, W)`` (the extra pixel goes after)."""
    pads: list[int] = []
    for dim in (4, 3, 2):  # F.pad lists the last dimension first
        size, k, s = x.shape[dim], kernel[dim - 2], stride[dim - 2]
        total = max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class Unit3D(nn.Module):
    """Conv3d with "same" padding, then BatchNorm (eps 1e-3) and ReLU (the logits unit: bias, neither)."""

    def __init__(self, in_channels: int, out_channels: int, kernel=(1, 1, 1), stride=(1, 1, 1), *,
                 logits: bool = False):
        super().__init__()
        self.kernel, self.stride, self.activate = list(kernel), list(stride), not logits
        self.conv3d = nn.Conv3d(in_channels, out_channels, kernel, stride=stride, bias=logits)
        self.bn = nn.Identity() if logits else nn.BatchNorm3d(out_channels, eps=0.001, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv3d(_same_pad(x, self.kernel, self.stride)))
        return F.relu(x) if self.activate else x


class MaxPool3dSame(nn.Module):
    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = list(kernel), list(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(_same_pad(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionModule(nn.Module):
    """Four branches: 1x1; 1x1 -> 3x3x3; 1x1 -> 3x3x3; max-pool 3x3x3 -> 1x1 (channels concatenated)."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int, int, int, int]):
        super().__init__()
        self.b0 = Unit3D(in_channels, widths[0])
        self.b1a = Unit3D(in_channels, widths[1])
        self.b1b = Unit3D(widths[1], widths[2], (3, 3, 3))
        self.b2a = Unit3D(in_channels, widths[3])
        self.b2b = Unit3D(widths[3], widths[4], (3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, widths[5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


class InceptionI3d(nn.Module):
    """Inception-v1 I3D (RGB) with pytorch-i3d's module names, so its state dicts load strictly."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Mixed_3b = InceptionModule(192, (64, 96, 128, 16, 32, 32))
        self.Mixed_3c = InceptionModule(256, (128, 128, 192, 32, 96, 64))
        self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
        self.Mixed_4b = InceptionModule(480, (192, 96, 208, 16, 48, 64))
        self.Mixed_4c = InceptionModule(512, (160, 112, 224, 24, 64, 64))
        self.Mixed_4d = InceptionModule(512, (128, 128, 256, 24, 64, 64))
        self.Mixed_4e = InceptionModule(512, (112, 144, 288, 32, 64, 64))
        self.Mixed_4f = InceptionModule(528, (256, 160, 320, 32, 128, 128))
        self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
        self.Mixed_5b = InceptionModule(832, (256, 160, 320, 32, 128, 128))
        self.Mixed_5c = InceptionModule(832, (384, 192, 384, 48, 128, 128))
        self.logits = Unit3D(FEATURE_DIM, num_classes, logits=True)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, T, H, W)`` in [-1, 1] -> ``(B, 1024)``: Mixed_5c averaged over time and space."""
        x = self.MaxPool3d_2a_3x3(self.Conv3d_1a_7x7(x))
        x = self.MaxPool3d_3a_3x3(self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x)))
        x = self.MaxPool3d_4a_3x3(self.Mixed_3c(self.Mixed_3b(x)))
        x = self.Mixed_4f(self.Mixed_4e(self.Mixed_4d(self.Mixed_4c(self.Mixed_4b(x)))))
        x = self.Mixed_5c(self.Mixed_5b(self.MaxPool3d_5a_2x2(x)))  # (B, 1024, T', H', W')
        return x.mean(dim=(2, 3, 4))

    def class_logits(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, 1024)`` pooled features -> ``(B, num_classes)`` logits (dropout is off in eval)."""
        return self.logits(features[:, :, None, None, None]).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.class_logits(self.features(x))


def clips_to_i3d_input(clips: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``(B, T, H, W, 3)`` -> float ``(B, 3, T, size, size)`` in [-1, 1]: shorter side to
    ``size`` (bilinear, antialiased), centered crop."""
    b, t, h, w, _ = clips.shape
    frames = clips.reshape(b * t, h, w, 3).permute(0, 3, 1, 2).float()  # (B*T, 3, H, W)
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    if (new_h, new_w) != (h, w):
        frames = F.interpolate(frames, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    frames = frames[:, :, top:top + size, left:left + size]
    frames = frames / 127.5 - 1.0
    return frames.reshape(b, t, 3, size, size).permute(0, 2, 1, 3, 4)  # (B, 3, T, size, size)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class I3DDetector:
    """A loaded I3D in one of the two formats; ``features`` maps uint8 clips to float32 features."""

    def __init__(self, path: Path, fmt: str, module: nn.Module, device: torch.device, size: int | None):
        self.path, self.format, self.module, self.device, self.size = path, fmt, module, device, size
        self.sha256 = file_sha256(path)

    @torch.no_grad()
    def features(self, clips: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, T, H, W, 3)`` -> float32 ``(B, D)`` on the CPU."""
        if self.format == "torchscript":
            x = clips.to(self.device).permute(0, 4, 1, 2, 3).contiguous()  # (B, 3, T, H, W) uint8
            out = self.module(x, **TORCHSCRIPT_CALL)
        else:
            out = self.module.features(clips_to_i3d_input(clips.to(self.device), self.size))
        if out.ndim != 2 or out.shape[0] != clips.shape[0]:
            raise I3DWeightsError(f"{self.path}: the detector returned shape {tuple(out.shape)}, "
                                  "expected (batch, features)")
        return out.float().cpu()

    def describe(self) -> dict:
        """What the protocol records about the detector."""
        common = {"path": str(self.path), "sha256": self.sha256, "format": self.format}
        if self.format == "torchscript":
            return common | {
                "call": "detector(uint8 (B, 3, T, H, W), rescale=True, resize=True, return_features=True)",
                "feature_layer": "the detector's return_features=True output",
                "resolution": "the detector's own (resize=True)",
                "resampling": "the detector's own", "value_range": "[-1, 1] (the detector's rescale)",
            }
        return common | {
            "feature_layer": "Mixed_5c averaged over time and space (1024-d, the input of `logits`)",
            "resolution": self.size,
            "resampling": "shorter side to resolution, bilinear antialiased (align_corners=False), center crop",
            "value_range": "[-1, 1] (x / 127.5 - 1)",
        }


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") or "/code/" in name for name in archive.namelist())


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    return read_weights(path, error=I3DWeightsError, what="I3D weights")


def load_i3d(path: str | Path, *, device: str | torch.device = "cpu", size: int = I3D_SIZE) -> I3DDetector:
    """Load I3D weights in either format (see the module docstring); ``size`` applies to state dicts."""
    path = Path(path)
    device = torch.device(device)
    if not path.is_file():
        raise I3DWeightsError(f"{path}: I3D weights file not found")
    try:
        if _is_torchscript(path):
            module = torch.jit.load(str(path), map_location=device).eval()
            return I3DDetector(path, "torchscript", module, device, None)
        state = _read_state_dict(path)
    except I3DWeightsError:
        raise
    except Exception as exc:  # noqa: BLE001 - unreadable file: one line naming it
        raise I3DWeightsError(f"{path}: cannot read I3D weights ({one_line_reason(exc)})") from exc
    classes = state.get("logits.conv3d.bias")
    model = InceptionI3d(num_classes=NUM_CLASSES if classes is None else classes.shape[0])
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise I3DWeightsError(
            f"{path}: not a pytorch-i3d InceptionI3d state dict ({len(result.missing_keys)} missing keys, e.g. "
            f"{result.missing_keys[:2]}; {len(result.unexpected_keys)} unexpected, e.g. {result.unexpected_keys[:2]})")
    if model.logits.conv3d.out_channels != NUM_CLASSES:
        raise I3DWeightsError(f"{path}: {model.logits.conv3d.out_channels} classes; "
                              f"the Kinetics-400 I3D has {NUM_CLASSES}")
    return I3DDetector(path, "pytorch-i3d-state-dict", model.to(device).eval(), device, size)


class _StyleGANVLikeDetector(nn.Module):
    """Our InceptionI3d behind i3d_torchscript.pt's call signature (rescale, resize, return_features)."""

    def __init__(self, model: InceptionI3d, size: int):
        super().__init__()
        self.model, self.size = model, size

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        x = x.float()  # (B, 3, T, H, W)
        if rescale:
            x = x / 255.0 * 2.0 - 1.0
        if resize:
            x = F.interpolate(x, size=[x.shape[2], self.size, self.size], mode="trilinear", align_corners=False)
        features = self.model.features(x)
        return features if return_features else self.model.class_logits(features)


def export_torchscript_detector(model: InceptionI3d, path: str | Path, *, size: int = I3D_SIZE) -> Path:
    """Script ``model`` behind the TorchScript detector's call signature and save it to ``path``."""
    scripted = torch.jit.script(_StyleGANVLikeDetector(model.eval(), size))
    torch.jit.save(scripted, str(path))
    return Path(path)
