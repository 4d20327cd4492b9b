"""The multimodal LM: a Hugging Face Llama causal LM over the token layout's vocabulary.

Text tokens, special tokens and video codes share one vocabulary (owned by
``reelm.data.token_layout``); the model is a ``LlamaForCausalLM``, so ``from_pretrained``,
``generate``, the attention backends and serving engines work on it.

With ``video_positions=True`` it is :class:`VideoLlamaForCausalLM` (model type ``reelm_llama``,
registered with ``AutoModelForCausalLM`` when ``reelm.lm`` is imported): the same Llama plus
learned, factorized latent-frame / row / column embeddings added to every video code's token
embedding, so a code knows which cell of the latent grid it is (1-D RoPE alone only tells
distances, and where the grid starts moves with the caption's length). A code's cell is its
index among the codes since its document's ``<bos>`` (an i2v image or v2v context is frame 0 on),
which the model reads from the ids themselves: training, prefill and ``generate()`` need no extra
input, and the engine's single-token steps pass each row's count. What serving engines lose:
vLLM / TGI know ``llama``, not ``reelm_llama``; a plain-Llama model (``video_positions=False``)
serves anywhere.
The attention implementation is chosen once, when the model is built: ``flash_attention_2``
when flash-attn is installed and the model lives on a GPU, ``sdpa`` otherwise (training in
bf16 on a CPU runs short, narrow attention in fp32, where that is faster:
:func:`training_attention`). Packed sequences need no special model code: position ids restart
at 0 for every document, and transformers turns that into a block-diagonal causal mask
(SDPA/eager) or the varlen kernel (flash-attention), so documents never attend to each other
(training under SDPA feeds one document a row instead: ``reelm.data.packing.split_documents``).

Follows: VideoPoet (one decoder-only LM over text and MAGVIT-v2 video tokens), Llama.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch
from transformers import AttentionInterface, AutoConfig, AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from reelm.core.config import resolve_preset
from reelm.core.device import check_cpu_compile
from reelm.core.errors import ReelmError


@dataclass(kw_only=True)
class LMConfig:
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int | None = None  # None: as many as num_heads (no grouped-query attention)
    intermediate_size: int | None = None  # None: the Llama ratio, 8/3 * hidden rounded up to 64
    max_position_embeddings: int = 2048
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = True
    initializer_range: float = 0.02
    pad_vocab_to_multiple_of: int = 64  # padded ids are never produced by the token layout
    video_positions: bool = False  # learned latent-frame / row / column embeddings on video codes (see above)
    video_positions_init: str = "normal"  # "normal": random, as token embeddings; "sincos": sin-cos of the index


def tiny() -> LMConfig:
    """~2M non-embedding parameters: CPU tests and the demo."""
    return LMConfig(hidden_size=192, num_layers=4, num_heads=4, max_position_embeddings=2048)


def small() -> LMConfig:
    """~42M non-embedding parameters: wide and shallow (768 x 6, heads of 128), so matmuls dominate a CPU step.

    At the same block and batch, 768 x 6 reached a higher share of the reference CPU's fp32 matmul
    peak than 512 x 10 (32M) or 640 x 8 (40M): elementwise work grows with the width, matmuls
    with its square. Heads of 128 made the CPU attention kernel 3 % faster a step than heads of
    64 (BENCHMARKS.md, LM training).
    """
    return LMConfig(hidden_size=768, num_layers=6, num_heads=6, max_position_embeddings=4096)


def base() -> LMConfig:
    """~300M non-embedding parameters."""
    return LMConfig(hidden_size=1024, num_layers=24, num_heads=16, max_position_embeddings=8192)


def large() -> LMConfig:
    """~1B non-embedding parameters."""
    return LMConfig(
        hidden_size=2048, num_layers=20, num_heads=16, num_kv_heads=8, max_position_embeddings=8192,
        tie_word_embeddings=False,
    )


PRESETS = {"tiny": tiny, "small": small, "base": base, "large": large}


def preset(name: str) -> LMConfig:
    return resolve_preset(PRESETS, name, "LM")


def intermediate_size(cfg: LMConfig) -> int:
    if cfg.intermediate_size is not None:
        return cfg.intermediate_size
    return 64 * -(-int(8 * cfg.hidden_size / 3) // 64)


def padded_vocab_size(cfg: LMConfig, vocab_size: int) -> int:
    multiple = max(1, cfg.pad_vocab_to_multiple_of)
    return multiple * -(-vocab_size // multiple)


def select_attention(device: torch.device | str) -> str:
    """``flash_attention_2`` with flash-attn on a GPU, else ``sdpa``."""
    device = torch.device(device)
    if device.type == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


TRAINING_SDPA = "reelm_sdpa"  # SDPA that runs short, narrow attention in fp32 under CPU autocast
FP32_ATTENTION_MAX_HEAD_DIM = 48  # measured on the reference CPU: BENCHMARKS.md, "Training one document a row"
FP32_ATTENTION_MAX_TOKENS = 256


def training_attention(device: torch.device | str, *, bf16: bool) -> str:
    """The attention a training run uses: :func:`select_attention`'s, or :data:`TRAINING_SDPA` in bf16 on CPUs.

    On CPUs under bf16 autocast, PyTorch's SDPA backward in bf16 costs about as much for rows of
    224 tokens as for 1,024 (the reference CPU, 4,096 tokens a call, heads of 32-48: 14-24 ms a
    layer at 224, 20-25 ms at 1,024), while in fp32 it scales with the work: for heads of at most
    48 and rows of 224 the fp32 kernel takes 0.55-0.6x the bf16 one's time forward and backward,
    at 512 0.87-0.99x, for wider heads or longer rows up to 2.4x. :data:`TRAINING_SDPA` is SDPA
    that upcasts its inputs (and casts its output back) where that measured faster: heads of at
    most :data:`FP32_ATTENTION_MAX_HEAD_DIM`, rows of at most :data:`FP32_ATTENTION_MAX_TOKENS`;
    elsewhere, and outside training, attention is plain SDPA.
    """
    base = select_attention(device)
    if base == "sdpa" and torch.device(device).type == "cpu" and bf16:
        return TRAINING_SDPA
    return base


def attention_implementations() -> list[str]:
    """The attention implementations a model can be built with: ``eager`` and transformers' registered ones."""
    return ["eager", *AttentionInterface().valid_keys()]


def attention_in_fp32(query: torch.Tensor) -> bool:
    """Whether :data:`TRAINING_SDPA` runs this ``(B, heads, L, head_dim)`` query's attention in fp32."""
    return (query.device.type == "cpu" and torch.is_autocast_enabled("cpu")
            and query.shape[-1] <= FP32_ATTENTION_MAX_HEAD_DIM and query.shape[-2] <= FP32_ATTENTION_MAX_TOKENS)


def training_sdpa_forward(module, query, key, value, attention_mask, **kwargs):
    """Transformers' SDPA attention, in fp32 where :func:`attention_in_fp32` says so."""
    if not attention_in_fp32(query):
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    with torch.autocast("cpu", enabled=False):
        out, weights = sdpa_attention_forward(module, query.float(), key.float(), value.float(), attention_mask,
                                              **kwargs)
    return out.to(query.dtype), weights


AttentionInterface.register(TRAINING_SDPA, training_sdpa_forward)
AttentionMaskInterface.register(TRAINING_SDPA, sdpa_mask)  # the same masks (and causal skips) as SDPA's


@dataclass(frozen=True)
class VideoGrid:
    """Where video codes are in the vocabulary and the latent grid they fill (from the token layout)."""

    code_offset: int
    codebook_size: int
    latent_hw: tuple[int, int]


def layout_grid(layout) -> VideoGrid:
    """The :class:`VideoGrid` of a :class:`reelm.data.token_layout.TokenLayout`."""
    return VideoGrid(code_offset=layout.code_offset, codebook_size=layout.codebook_size,
                     latent_hw=tuple(layout.latent_hw))


class VideoLlamaConfig(LlamaConfig):
    """A Llama config plus the video grid of :class:`VideoLlamaForCausalLM`."""

    model_type = "reelm_llama"

    def __init__(self, code_offset: int = 0, codebook_size: int = 0, latent_hw: tuple[int, int] | list = (1, 1),
                 max_latent_frames: int = 1, **kwargs):
        self.code_offset = code_offset
        self.codebook_size = codebook_size
        self.latent_hw = list(latent_hw)
        self.max_latent_frames = max_latent_frames
        super().__init__(**kwargs)


def video_grid_index(input_ids: torch.Tensor, config) -> torch.Tensor:
    """``(B, L)`` the index of each video code among the codes since its document's ``<bos>``; -1 elsewhere."""
    is_code = (input_ids >= config.code_offset) & (input_ids < config.code_offset + config.codebook_size)
    seen = is_code.long().cumsum(-1)  # (B, L) codes up to and including each position
    at_bos = torch.where(input_ids == config.bos_token_id, seen, torch.zeros_like(seen))
    base = at_bos.cummax(-1).values  # codes before the latest <bos>
    return torch.where(is_code, seen - base - 1, torch.full_like(seen, -1))


class VideoPositions(torch.nn.Module):
    """Factorized learned embeddings of a code's latent frame, row and column, summed: ``(B, L, hidden)``."""

    def __init__(self, config: VideoLlamaConfig):
        super().__init__()
        h, w = config.latent_hw
        self.h, self.w, self.frames = h, w, config.max_latent_frames
        self.frame = torch.nn.Embedding(config.max_latent_frames, config.hidden_size)
        self.row = torch.nn.Embedding(h, config.hidden_size)
        self.column = torch.nn.Embedding(w, config.hidden_size)

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        """``index``: a code's index in its grid (-1: not a code, which gets zeros)."""
        cell = index.clamp(min=0)
        frame = (cell // (self.h * self.w)).clamp(max=self.frames - 1)
        out = self.frame(frame) + self.row(cell // self.w % self.h) + self.column(cell % self.w)
        return out * (index >= 0).unsqueeze(-1).to(out.dtype)


class VideoLlamaForCausalLM(LlamaForCausalLM):
    """``LlamaForCausalLM`` with :class:`VideoPositions` added to the token embeddings of video codes."""

    config_class = VideoLlamaConfig

    def __init__(self, config: VideoLlamaConfig):
        super().__init__(config)
        self.video_positions = VideoPositions(config)
        for table in (self.video_positions.frame, self.video_positions.row, self.video_positions.column):
            torch.nn.init.normal_(table.weight, std=config.initializer_range)  # as Llama's token embeddings

    def embed(self, input_ids: torch.Tensor, grid_index: torch.Tensor | None = None) -> torch.Tensor:
        """Token embeddings plus video positions; ``grid_index`` defaults to :func:`video_grid_index` of the ids."""
        if grid_index is None:
            grid_index = video_grid_index(input_ids, self.config)
        return self.model.embed_tokens(input_ids) + self.video_positions(grid_index)

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, labels=None, *,
                grid_index=None, **kwargs):
        if inputs_embeds is None and input_ids is not None:
            inputs_embeds, input_ids = self.embed(input_ids, grid_index), None
        return super().forward(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                               inputs_embeds=inputs_embeds, labels=labels, **kwargs)

    def prepare_inputs_for_generation(self, input_ids, *args, **kwargs):
        """``generate()``: the grid index of the ids fed this step, read from the whole sequence so far."""
        inputs = super().prepare_inputs_for_generation(input_ids, *args, **kwargs)
        if inputs.get("input_ids") is not None:
            inputs["grid_index"] = video_grid_index(input_ids, self.config)[:, -inputs["input_ids"].shape[1]:]
        return inputs


AutoConfig.register(VideoLlamaConfig.model_type, VideoLlamaConfig)
AutoModelForCausalLM.register(VideoLlamaConfig, VideoLlamaForCausalLM)


def hf_config(cfg: LMConfig, vocab_size: int, *, bos_id: int, eos_id: int, pad_id: int,
              grid: VideoGrid | None = None) -> LlamaConfig:
    """The Hugging Face config of ``cfg``: a ``VideoLlamaConfig`` over ``grid`` with video positions, else Llama's."""
    if cfg.video_positions:
        if grid is None:
            raise ReelmError("video_positions=true needs the token layout's video grid")
        h, w = grid.latent_hw
        return VideoLlamaConfig(code_offset=grid.code_offset, codebook_size=grid.codebook_size, latent_hw=(h, w),
                                max_latent_frames=-(-cfg.max_position_embeddings // (h * w)),
                                **_llama_kwargs(cfg, vocab_size, bos_id=bos_id, eos_id=eos_id, pad_id=pad_id))
    return LlamaConfig(**_llama_kwargs(cfg, vocab_size, bos_id=bos_id, eos_id=eos_id, pad_id=pad_id))


def _llama_kwargs(cfg: LMConfig, vocab_size: int, *, bos_id: int, eos_id: int, pad_id: int) -> dict:
    return dict(
        vocab_size=padded_vocab_size(cfg, vocab_size),
        hidden_size=cfg.hidden_size,
        intermediate_size=intermediate_size(cfg),
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads or cfg.num_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        tie_word_embeddings=cfg.tie_word_embeddings,
        initializer_range=cfg.initializer_range,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
    )


def build_model(
    cfg: LMConfig,
    vocab_size: int,
    *,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    device: torch.device | str = "cpu",
    attn_implementation: str | None = None,
    dtype: torch.dtype = torch.float32,
    grid: VideoGrid | None = None,
) -> LlamaForCausalLM:
    """A freshly initialised model; the attention backend is resolved here, once."""
    if cfg.video_positions_init not in VIDEO_POSITION_INITS:
        raise ReelmError(f"LM config: video_positions_init {cfg.video_positions_init!r} is not one of "
                         f"{list(VIDEO_POSITION_INITS)}")
    config = hf_config(cfg, vocab_size, bos_id=bos_id, eos_id=eos_id, pad_id=pad_id, grid=grid)
    config._attn_implementation = attn_implementation or select_attention(device)
    model = (VideoLlamaForCausalLM if cfg.video_positions else LlamaForCausalLM)(config)
    if cfg.video_positions and cfg.video_positions_init == "sincos":
        sincos_init(model.video_positions, config.initializer_range)
    return model.to(device=device, dtype=dtype)


VIDEO_POSITION_INITS = ("normal", "sincos")


def sincos_init(positions: VideoPositions, std: float) -> None:
    """Each of the frame / row / column tables set to sin-cos features of its index, scaled to ``std``.

    Neighbouring rows (columns, frames) then start with similar embeddings and an index is a
    smooth function of them, so comparing where a cell is across frames has structure from the
    first step; the tables stay learned. Follows Cosmos-Predict1's 3-D sin-cos embedding, used here
    as the initial value of learned tables.
    """
    for table in (positions.frame, positions.row, positions.column):
        count, dim = table.weight.shape
        index = torch.arange(count, dtype=torch.float64)[:, None]
        freq = 1.0 / (max(count, 2) ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))  # 1 down to ~1 / count
        angles = index * freq  # radians a step: periods from 2 pi steps to 2 pi times the table's length
        features = torch.zeros(count, dim, dtype=torch.float64)
        features[:, 0::2] = torch.sin(angles)[:, : (dim + 1) // 2]
        features[:, 1::2] = torch.cos(angles)[:, : dim // 2]
        with torch.no_grad():
            table.weight.copy_((features * std * 2 ** 0.5).to(table.weight.dtype))


def compile_layers(model: LlamaForCausalLM) -> None:
    """Compile every decoder layer and the final norm in place with ``torch.compile`` (regional compilation).

    Inductor fuses the elementwise work between the matmuls (RMSNorm, rotary, SwiGLU, residuals)
    forward and backward; the matmuls and the attention kernel stay library calls. One layer's
    code is compiled once and reused by the others, so the cost is seconds, at the first step.
    Parameter names, state dicts and checkpoints are unchanged. On CPUs inductor needs a C++
    compiler; without one this raises before any work is done.
    """
    check_cpu_compile(next(model.parameters()).device, "compile=true")
    for layer in model.model.layers:
        layer.compile()
    model.model.norm.compile()
