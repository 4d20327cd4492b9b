"""Causal building blocks of the video tokenizer: convolutions, per-frame norms, resampling.

Every block keeps time causal: temporal convolutions pad on the left only (with copies of
the first frame, so an image behaves like a still video), norms never mix frames, and
temporal downsampling is strided so output frame 0 sees input frame 0 alone. A temporal
convolution can also run in *streaming* mode, where the left padding of each chunk is the
tail of the previous chunk, so a long video encoded chunk by chunk gives exactly the
whole-clip result with memory bounded by the chunk size.

Resampling blocks can add a non-parametric *shortcut* (residual autoencoding): space-to-channel
then a mean over channel groups when downsampling, a channel repeat then channel-to-space when
upsampling. It gives every resampling step an identity-like path, so a region's mean color
reaches the latent and comes back without the learned convolutions having to discover it first.

Tensors are (B, C, T, H, W); all convolutions are Conv3d, so a channels-last-3d layout,
when chosen, survives end to end without reshuffling frames.

Follows: MAGVIT-v2 (Yu et al. 2023) causal 3D CNN; R(2+1)D (Tran et al. 2018) factorized
space/time convolutions; DC-AE's residual autoencoding shortcuts (Chen et al. 2024, "Deep
Compression Autoencoder for Efficient High-Resolution Diffusion Models").
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """channels_last_3d for a channels-last video tensor, else contiguous_format."""
    if x.dim() == 5 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last_3d):
        return torch.channels_last_3d
    return torch.contiguous_format


class CausalConv3d(nn.Module):
    """A Conv3d whose time axis is causal (left padding only); spatial padding is 'same'."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: tuple[int, int, int],
        stride: tuple[int, int, int] = (1, 1, 1),
    ):
        super().__init__()
        kt, kh, kw = kernel
        self.time_pad = kt - 1
        self.time_stride = stride[0]
        self.conv = nn.Conv3d(in_channels, out_channels, kernel, stride=stride, padding=(0, kh // 2, kw // 2))
        self.streaming = False
        self.cache: torch.Tensor | None = None

    def reset_stream(self) -> None:
        self.streaming, self.cache = False, None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W)
        if self.time_pad == 0:
            return self.conv(x)
        if self.streaming and self.cache is not None:
            head = self.cache  # (B, C, p, H, W): unconsumed tail of the previous chunk
        else:
            head = x[:, :, :1].expand(-1, -1, self.time_pad, -1, -1)  # (B, C, p, H, W)
        x = cat_time(head, x)  # (B, C, p + T, H, W)
        if self.streaming:
            consumed = ((x.shape[2] - self.time_pad - 1) // self.time_stride + 1) * self.time_stride
            self.cache = x[:, :, consumed:].clone()
        return self.conv(x)


def cat_time(head: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``torch.cat([head, x], dim=2)`` keeping x's memory format (cat drops channels-last)."""
    b, c, t, h, w = x.shape
    p = head.shape[2]
    out = torch.empty((b, c, p + t, h, w), dtype=x.dtype, device=x.device, memory_format=memory_format_of(x))
    out[:, :, :p] = head
    out[:, :, p:] = x
    return out


class CausalConv(nn.Module):
    """A causal space-time convolution: full 3D, or factorized as a 1D temporal conv then a 2D spatial conv.

    The factorized form (``factorized=True``) costs (kt*C_in + ks*ks*C_out) / (kt*ks*ks*C_out)
    of the full one: about 2.25x fewer multiply-adds at kt = ks = 3.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        factorized: bool,
        time_kernel: int = 3,
        space_kernel: int = 3,
        time_stride: int = 1,
        space_stride: int = 1,
    ):
        super().__init__()
        ks = space_kernel
        if factorized and time_kernel > 1:
            self.time = CausalConv3d(in_channels, in_channels, (time_kernel, 1, 1), (time_stride, 1, 1))
            self.space = CausalConv3d(in_channels, out_channels, (1, ks, ks), (1, space_stride, space_stride))
            with torch.no_grad():  # starts as the identity on the current frame: a 2D network at init
                self.time.conv.weight.zero_()
                self.time.conv.weight[:, :, -1, 0, 0] = torch.eye(in_channels)
                self.time.conv.bias.zero_()
        else:
            self.time = nn.Identity()
            self.space = CausalConv3d(
                in_channels, out_channels, (time_kernel, ks, ks), (time_stride, space_stride, space_stride)
            )

    @property
    def weight(self) -> nn.Parameter:
        """The weight producing the output (the adaptive GAN weight's 'last layer')."""
        return self.space.conv.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W)
        return self.space(self.time(x))


def match_channels(x: torch.Tensor, channels: int) -> torch.Tensor:  # (B, C, ...) -> (B, channels, ...)
    """The parameter-free channel map of a shortcut: the mean over ``channels`` contiguous groups when
    shrinking, each channel repeated in a contiguous run when growing (near-equal groups / runs when
    one count is not a multiple of the other)."""
    c = x.shape[1]
    if channels == c:
        return x
    if channels < c:
        if c % channels == 0:
            return rearrange(x, "b (c g) ... -> b c g ...", c=channels).mean(2)
        return torch.einsum("oc,bc...->bo...", _group_mean_matrix(c, channels).to(x), x)
    if channels % c == 0:
        return repeat(x, "b c ... -> b (c r) ...", r=channels // c)
    return x.index_select(1, torch.arange(channels, device=x.device) * c // channels)


@functools.lru_cache(maxsize=None)
def _group_mean_matrix(c: int, channels: int) -> torch.Tensor:  # (channels, c)
    # Cached for the process: made outside inference mode even when first asked for under it (a generation
    # before a training step), or autograd could not save it for backward later.
    with torch.inference_mode(False):
        weight = torch.zeros(channels, c)
        for o, group in enumerate(torch.arange(c).tensor_split(channels)):
            weight[o, group] = 1.0 / len(group)
    return weight


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm over (C/G, H, W) of each frame separately: statistics never cross time."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W)
        b = x.shape[0]
        y = super().forward(rearrange(x, "b c t h w -> (b t) c h w"))  # a view for channels-last input
        return rearrange(y, "(b t) c h w -> b c t h w", b=b)


class ResBlock(nn.Module):
    """Pre-activation residual block: (norm, SiLU, causal conv) twice, plus the identity."""

    def __init__(self, channels: int, *, factorized: bool, groups: int):
        super().__init__()
        self.norm1 = FrameGroupNorm(groups, channels)
        self.conv1 = CausalConv(channels, channels, factorized=factorized)
        self.norm2 = FrameGroupNorm(groups, channels)
        self.conv2 = CausalConv(channels, channels, factorized=factorized)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.space.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W)
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return x + h


class Downsample(nn.Module):
    """2x spatial (and optionally 2x causal temporal: 1 + 2k -> 1 + k frames) strided convolution.

    With ``shortcut``, adds space(-time)-to-channel of the input averaged over channel groups; in
    time, frame 0 is paired with itself and frame i with frames (2i - 1, 2i), as the strided
    causal conv sees them (in streaming, only the first chunk gets that extra frame 0).
    """

    def __init__(self, in_channels: int, out_channels: int, *, time: bool, factorized: bool, shortcut: bool = False):
        super().__init__()
        self.out_channels = out_channels
        self.time_factor = 2 if time else 1
        self.shortcut = shortcut
        self.streaming = False
        self.started = False
        self.conv = CausalConv(
            in_channels,
            out_channels,
            factorized=factorized,
            time_kernel=3 if time else 1,
            time_stride=2 if time else 1,
            space_stride=2,
        )

    def reset_stream(self) -> None:
        self.streaming, self.started = False, False

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W) -> (B, C', T', H/2, W/2)
        y = self.conv(x)
        if not self.shortcut:
            return y
        fmt = memory_format_of(y)
        if self.time_factor > 1 and not (self.streaming and self.started):
            x = cat_time(x[:, :, :1], x)  # (B, C, 1 + T, H, W): an even count, frame 0 twice
        self.started = self.streaming
        s = rearrange(x, "b c (t st) (h sh) (w sw) -> b (c st sh sw) t h w", st=self.time_factor, sh=2, sw=2)
        return (y + match_channels(s, self.out_channels)).contiguous(memory_format=fmt)


class Upsample(nn.Module):
    """Depth-to-space (and optionally depth-to-time) upsampling by 2x.

    In time, latent frame i becomes frames (2i - 1, 2i); the extra frame made from latent
    frame 0 is dropped, so 1 + k frames become 1 + 2k (in streaming, only for the first chunk).
    With ``shortcut``, the input's channels, repeated to fill the conv's output, are added
    before depth-to-space, so each output position starts as a copy of its input position.
    """

    def __init__(self, in_channels: int, out_channels: int, *, time: bool, factorized: bool, shortcut: bool = False):
        super().__init__()
        self.time_factor = 2 if time else 1
        self.shortcut = shortcut
        factor = 4 * self.time_factor
        self.conv = CausalConv(in_channels, out_channels * factor, factorized=factorized, time_kernel=3 if time else 1)
        conv = self.conv.space.conv
        with torch.no_grad():  # every sub-position starts equal: no checkerboard at init (ICNR)
            conv.weight.copy_(repeat(conv.weight[::factor], "o ... -> (o r) ...", r=factor))
            conv.bias.copy_(repeat(conv.bias[::factor], "o -> (o r)", r=factor))
        self.streaming = False
        self.started = False

    def reset_stream(self) -> None:
        self.streaming, self.started = False, False

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W) -> (B, C', 2T - 1 or T, 2H, 2W)
        fmt = memory_format_of(x)
        y = self.conv(x)  # (B, C' * st * 4, T, H, W)
        x = y + match_channels(x, y.shape[1]) if self.shortcut else y
        x = rearrange(x, "b (c st sh sw) t h w -> b c (t st) (h sh) (w sw)", st=self.time_factor, sh=2, sw=2)
        if self.time_factor > 1 and not (self.streaming and self.started):
            x = x[:, :, 1:]
        self.started = self.streaming
        return x.contiguous(memory_format=fmt)
