"""The causal video tokenizer: encoder, quantizer, decoder, and its config.

``VideoTokenizer`` maps a video (B, 3, 1 + 4k, H, W) in [-1, 1] to a (1 + k, H/8, W/8)
grid of discrete codes and back. Time is causal everywhere, so latent frame 0 depends on
video frame 0 alone (an image is a 1-frame video) and latent frame i never sees frames
after 4i; long videos can therefore be encoded and decoded chunk by chunk
(``encode_stream`` / ``decode_stream``) with results identical to whole-clip processing.

Pixels are first folded ``patch_size`` x ``patch_size`` into channels, then each resolution
level i has ``channels[i]`` channels; each level after the first halves H and W, and the
levels in ``time_downsample_at`` also halve time::

    encoder: space-to-depth, conv_in, [Downsample, ResBlock x res_blocks] per level, norm, SiLU, 1x1 -> D
    decoder: conv_in, [ResBlock x res_blocks, Upsample] per level (mirrored), norm, SiLU, conv_out, depth-to-space

With ``shortcuts`` (residual autoencoding, no parameters), every Downsample / Upsample and the
four ends (pixels -> conv_in, features -> latent, latent -> conv_in, features -> pixels) add a
channel-averaging or channel-repeating identity path, so a cell's mean color flows from pixels
to the latent and back from the first step, and the output does not pass only through the
per-frame GroupNorm. Without it the tokenizer learns luma first and chroma last (a grey blob
where a colored object was). The latent shortcut carries magnitudes, which LFQ (sign only)
throws away, so shortcut presets use FSQ.

Throughput comes from cheap blocks rather than fewer of them: (2+1)D factorized convs,
no attention, few channels at high resolution (the space-to-depth stem).

Presets are plain functions (``tiny`` for CPU tests and the demo, ``small``, ``base``) in
the ``PRESETS`` registry at the end of this file; each has a training objective of the same
name in :data:`reelm.tokenizer.losses.LOSS_PRESETS` (the model config holds the model only).

Follows: MAGVIT-v2 (Yu et al. 2023, "Language Model Beats Diffusion: Tokenizer is Key"),
with R(2+1)D-factorized convolutions and no attention for throughput; the
encode / decode / decode_from_code_indices API of lucidrains/magvit2-pytorch.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from reelm.core.config import ConfigError
from reelm.core.errors import ReelmError
from reelm.tokenizer.layers import (
    CausalConv,
    CausalConv3d,
    Downsample,
    FrameGroupNorm,
    ResBlock,
    Upsample,
    match_channels,
    memory_format_of,
)
from reelm.tokenizer.quantizer import Quantizer, QuantizeResult, QuantizerConfig, latent_dim
from reelm.core.weights import fingerprint

CONV_KINDS = ("2+1d", "3d")


@dataclass(kw_only=True)
class TokenizerConfig:
    channels: tuple[int, ...] = (64, 128, 256, 256)  # width per resolution level; each after the first halves H, W
    patch_size: int = 1  # pixels are first folded p x p into channels (space-to-depth); spatial factor p * 2**(len - 1)
    time_downsample_at: tuple[int, ...] = (1, 2)  # levels entered with a 2x causal time downsample
    res_blocks: int = 2  # residual blocks per level, in the encoder and in the decoder
    conv: str = "2+1d"  # "2+1d": temporal 1D + spatial 2D convs; "3d": full 3x3x3 causal convs
    norm_groups: int = 8
    channels_last: bool = False  # channels-last-3d memory: helped full 3D convs at 64x64 on CPU, not (2+1)D ones
    shortcuts: bool = False  # parameter-free identity paths through resampling and both ends (residual autoencoding)
    in_channels: int = 3
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)

    @property
    def spatial_downsample(self) -> int:
        return self.patch_size * 2 ** (len(self.channels) - 1)

    @property
    def temporal_downsample(self) -> int:
        return 2 ** len(self.time_downsample_at)


class VideoShapeError(ReelmError):
    """A video or code grid whose shape the tokenizer cannot take."""


def validate_config(cfg: TokenizerConfig) -> None:
    if len(cfg.channels) < 1 or min(cfg.channels) < 1:
        raise ConfigError(f"tokenizer.channels {list(cfg.channels)}: need at least one positive width")
    if cfg.conv not in CONV_KINDS:
        raise ConfigError(f"tokenizer.conv {cfg.conv!r}: choose from {list(CONV_KINDS)}")
    at = cfg.time_downsample_at
    if len(set(at)) != len(at) or any(not 1 <= i < len(cfg.channels) for i in at):
        raise ConfigError(
            f"tokenizer.time_downsample_at {list(at)}: need distinct levels in 1..{len(cfg.channels) - 1}"
        )
    if cfg.patch_size < 1:
        raise ConfigError(f"tokenizer.patch_size {cfg.patch_size}: must be >= 1")
    bad = [c for c in cfg.channels if c % cfg.norm_groups]
    if bad:
        raise ConfigError(f"tokenizer.norm_groups {cfg.norm_groups}: must divide every width, not {bad}")
    if cfg.shortcuts and cfg.quantizer.kind == "lfq":
        raise ConfigError("tokenizer.shortcuts needs a quantizer that keeps magnitudes (fsq or vq): LFQ keeps only "
                          "the sign of each latent channel, which loses what the shortcut carries")


class Encoder(nn.Module):
    def __init__(self, cfg: TokenizerConfig, out_channels: int):
        super().__init__()
        fact, ch, groups = cfg.conv == "2+1d", cfg.channels, cfg.norm_groups
        self.patch = cfg.patch_size
        self.shortcuts = cfg.shortcuts
        self.conv_in = CausalConv(cfg.in_channels * self.patch**2, ch[0], factorized=fact)
        self.levels = nn.ModuleList()
        for i, width in enumerate(ch):
            time = i in cfg.time_downsample_at
            blocks = [Downsample(ch[i - 1], width, time=time, factorized=fact, shortcut=cfg.shortcuts)] if i else []
            blocks += [ResBlock(width, factorized=fact, groups=groups) for _ in range(cfg.res_blocks)]
            self.levels.append(nn.Sequential(*blocks))
        self.norm_out = FrameGroupNorm(groups, ch[-1])
        self.conv_out = CausalConv3d(ch[-1], out_channels, (1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, T, H, W) -> (B, D, t, h, w)
        fmt = memory_format_of(x)
        x = rearrange(x, "b c t (h p1) (w p2) -> b (c p1 p2) t h w", p1=self.patch, p2=self.patch)
        x = x.contiguous(memory_format=fmt)  # (B, 3 p p, T, H/p, W/p)
        h = self.conv_in(x)  # (B, C0, T, H/p, W/p)
        if self.shortcuts:
            h = h + match_channels(x, h.shape[1])
        for level in self.levels:
            h = level(h)
        z = self.conv_out(F.silu(self.norm_out(h)))  # (B, D, t, h, w)
        return z + match_channels(h, z.shape[1]) if self.shortcuts else z


class Decoder(nn.Module):
    def __init__(self, cfg: TokenizerConfig, in_channels: int):
        super().__init__()
        fact, ch, groups = cfg.conv == "2+1d", cfg.channels, cfg.norm_groups
        self.shortcuts = cfg.shortcuts
        self.conv_in = CausalConv(in_channels, ch[-1], factorized=fact)
        self.levels = nn.ModuleList()
        for i in reversed(range(len(ch))):
            blocks = [ResBlock(ch[i], factorized=fact, groups=groups) for _ in range(cfg.res_blocks)]
            if i:
                time = i in cfg.time_downsample_at
                blocks.append(Upsample(ch[i], ch[i - 1], time=time, factorized=fact, shortcut=cfg.shortcuts))
            self.levels.append(nn.Sequential(*blocks))
        self.norm_out = FrameGroupNorm(groups, ch[0])
        self.patch = cfg.patch_size
        self.conv_out = CausalConv(ch[0], cfg.in_channels * self.patch**2, factorized=fact)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, D, t, h, w) -> (B, 3, T, H, W)
        x = self.conv_in(z)  # (B, C_last, t, h, w)
        if self.shortcuts:
            x = x + match_channels(z, x.shape[1])
        for level in self.levels:
            x = level(x)
        fmt = memory_format_of(x)
        y = self.conv_out(F.silu(self.norm_out(x)))  # (B, 3 p p, T, H/p, W/p)
        x = y + match_channels(x, y.shape[1]) if self.shortcuts else y
        x = rearrange(x, "b (c p1 p2) t h w -> b c t (h p1) (w p2)", p1=self.patch, p2=self.patch)
        return x.contiguous(memory_format=fmt)


class VideoTokenizer(nn.Module):
    """Pixels <-> discrete codes. Videos are (B, 3, T, H, W) in [-1, 1] with T = 1 + 4k."""

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        validate_config(cfg)
        self.cfg = cfg
        self.quantizer = Quantizer(cfg.quantizer)
        self.encoder = Encoder(cfg, latent_dim(cfg.quantizer))
        self.decoder = Decoder(cfg, latent_dim(cfg.quantizer))
        self.memory_format = torch.channels_last_3d if cfg.channels_last else torch.contiguous_format
        self.to(memory_format=self.memory_format)
        self._streaming = False
        self._fingerprint: str | None = None

    # --- identity -----------------------------------------------------------------------

    def weights_fingerprint(self) -> str:
        """A hash of the weights (:func:`reelm.core.weights.fingerprint`), computed once and kept.

        Loading and saving set it; it is forgotten when the model enters training mode or loads
        other weights, the two ways reelm changes weights.
        """
        if self._fingerprint is None:
            self._fingerprint = fingerprint(self.state_dict())
        return self._fingerprint

    def train(self, mode: bool = True) -> VideoTokenizer:
        if mode:
            self._fingerprint = None
        return super().train(mode)

    def load_state_dict(self, *args, **kwargs):
        self._fingerprint = None
        return super().load_state_dict(*args, **kwargs)

    # --- shapes -------------------------------------------------------------------------

    @property
    def codebook_size(self) -> int:
        return self.quantizer.codebook_size

    @property
    def spatial_downsample(self) -> int:
        return self.cfg.spatial_downsample

    @property
    def temporal_downsample(self) -> int:
        return self.cfg.temporal_downsample

    @property
    def last_layer(self) -> nn.Parameter:
        """The decoder's output weight, where the adaptive GAN weight compares gradient norms."""
        return self.decoder.conv_out.weight

    def latent_frames(self, frames: int) -> int:
        """Latent frames that cover ``frames`` pixel frames: ``1 + ceil((frames - 1) / ft)`` (the first frame is its own)."""
        return 1 + -(-(frames - 1) // self.temporal_downsample)

    def pixel_frames(self, latents: int) -> int:
        """Pixel frames that ``latents`` latent frames decode to: ``1 + ft (latents - 1)``."""
        return 1 + self.temporal_downsample * (latents - 1)

    def usable_frames(self, frames: int) -> int:
        """The most of ``frames`` pixel frames a clip can keep and still tokenize: the largest ``1 + ft k <= frames``."""
        return 1 + (frames - 1) // self.temporal_downsample * self.temporal_downsample if frames >= 1 else 0

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """(t, h, w) of the code grid of a (frames, height, width) video; raises if not tokenizable."""
        ft, fs = self.temporal_downsample, self.spatial_downsample
        if frames < 1 or (frames - 1) % ft:
            near = sorted({1 + ft * max((frames - 1) // ft, 0), 1 + ft * ((frames - 1) // ft + 1)})
            raise VideoShapeError(
                f"video has {frames} frames; the tokenizer needs 1 + {ft}k frames (e.g. {' or '.join(map(str, near))})"
            )
        if height < 1 or width < 1 or height % fs or width % fs:
            raise VideoShapeError(f"video is {height}x{width}; height and width must be multiples of {fs}")
        return 1 + (frames - 1) // ft, height // fs, width // fs

    def _check_video(self, video: torch.Tensor) -> None:
        if video.dim() != 5 or video.shape[1] != self.cfg.in_channels:
            raise VideoShapeError(
                f"expected a video (B, {self.cfg.in_channels}, T, H, W), got shape {tuple(video.shape)}"
            )
        self.latent_shape(*video.shape[2:])

    # --- encode / decode ----------------------------------------------------------------

    def encode(self, video: torch.Tensor) -> QuantizeResult:  # (B, 3, T, H, W) -> codes (B, D, t, h, w)
        self._check_video(video)
        return self.quantizer(self._encode_latents(video))

    def _encode_latents(self, video: torch.Tensor) -> torch.Tensor:
        return self.encoder(video.contiguous(memory_format=self.memory_format))  # (B, D, t, h, w)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:  # (B, D, t, h, w) -> (B, 3, 1 + 4(t - 1), H, W)
        if codes.dim() != 5 or codes.shape[1] != self.quantizer.dim:
            raise VideoShapeError(f"expected codes (B, {self.quantizer.dim}, t, h, w), got shape {tuple(codes.shape)}")
        return self.decoder(codes.contiguous(memory_format=self.memory_format))

    def decode_from_code_indices(self, indices: torch.Tensor) -> torch.Tensor:  # (B, t, h, w) -> video
        if indices.dim() != 4:
            raise VideoShapeError(f"expected code indices (B, t, h, w), got shape {tuple(indices.shape)}")
        return self.decode(self.quantizer.indices_to_codes(indices))

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, QuantizeResult]:
        quant = self.encode(video)
        return self.decode(quant.codes), quant

    # --- streaming (long videos in causal chunks) ----------------------------------------

    @torch.no_grad()
    def encode_stream(self, chunks: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        """Code indices (B, t_i, h, w) per video chunk (B, 3, T_i, H, W), equal to encoding the whole video.

        The first chunk has 1 + 4k frames, later ones 4m; each causal conv carries the frames
        it still needs from the previous chunk, so memory is bounded by the chunk size. Call
        ``eval()`` first: in training mode a VQ codebook would keep updating.
        """
        with self._stream(self.encoder):
            first = None
            for n, chunk in enumerate(chunks):
                self._check_chunk(chunk, n, first)
                first = first or chunk.shape
                yield self.quantizer(self._encode_latents(chunk)).indices

    @torch.no_grad()
    def decode_stream(self, chunks: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        """Video chunks for code-index chunks (B, t_i, h, w), equal to decoding the whole grid.

        The first chunk's 1 + k latent frames give 1 + 4k frames, each later chunk's m give 4m.
        """
        with self._stream(self.decoder):
            for chunk in chunks:
                yield self.decode_from_code_indices(chunk)

    def _check_chunk(self, chunk: torch.Tensor, n: int, first: torch.Size | None) -> None:
        if first is None:
            self._check_video(chunk)
            return
        ft = self.temporal_downsample
        same = chunk.dim() == 5 and chunk.shape[:2] == first[:2] and chunk.shape[3:] == first[3:]
        if not same or chunk.shape[2] < 1 or chunk.shape[2] % ft:
            raise VideoShapeError(
                f"stream chunk {n} has shape {tuple(chunk.shape)}; after a first chunk of shape {tuple(first)} "
                f"chunks need the same (B, C, H, W) and a multiple of {ft} frames"
            )

    @contextlib.contextmanager
    def _stream(self, part: nn.Module):
        if self._streaming:
            raise ReelmError("this tokenizer is already streaming; finish the other stream first")
        stateful = [m for m in part.modules() if isinstance(m, (CausalConv3d, Downsample, Upsample))]
        self._streaming = True
        for m in stateful:
            m.streaming = True
        try:
            yield
        finally:
            for m in stateful:
                m.reset_stream()
            self._streaming = False


# --- presets (all 8x space, 4x time: 17 x 64 x 64 -> 5 x 8 x 8 codes) -------------------------


def tiny() -> TokenizerConfig:
    """CPU tests and the demo (~2M parameters, 1,024 FSQ codes, shortcuts): learns object colors in a few hundred CPU steps.

    Shortcuts + FSQ, not LFQ: without shortcuts (LFQ or FSQ) the tokenizer returned grey blobs after
    400-900 steps; with shortcuts, LFQ's sign drops the magnitudes the shortcut carries.
    """
    return TokenizerConfig(
        channels=(32, 64, 128),
        patch_size=2,
        res_blocks=1,
        shortcuts=True,
        quantizer=QuantizerConfig(kind="fsq", levels=(8, 8, 4, 4)),
    )


def small() -> TokenizerConfig:
    """One GPU, small data (~11M parameters, 16k codes).

    The full-resolution level is kept narrow (32 channels): it holds few weights but most of the
    FLOPs, and halving it made a CPU training step 1.56x faster (BENCHMARKS.md, Tokenizer).
    """
    return TokenizerConfig(
        channels=(32, 128, 256),
        patch_size=2,
        res_blocks=2,
        quantizer=QuantizerConfig(kind="lfq", codebook_size=2**14, lfq_groups=2),
    )


def base() -> TokenizerConfig:
    """MAGVIT-v2-like, for GPUs (~93M parameters): widths 128-512, 4 residual blocks per level, 2^18 LFQ codes."""
    return TokenizerConfig(
        channels=(128, 256, 256, 512),
        patch_size=1,
        res_blocks=4,
        norm_groups=32,
        quantizer=QuantizerConfig(kind="lfq", codebook_size=2**18, lfq_groups=2),
    )


PRESETS = {"tiny": tiny, "small": small, "base": base}
