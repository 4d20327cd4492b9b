"""One decoding step of reelm's Llama over a preallocated cache: one id per row in, final hidden states out.

Both steps work on the Hugging Face ``StaticCache`` the model's own forward filled at
prefill (keys and values ``(rows, kv_heads, max_len, head_dim)`` per layer), with every
row writing the same cache slot per step (prompts are left-padded, pads masked out):

- :class:`LeanLlamaStep` (the default): the Llama decoder layer written out for a single
  query token over the model's own weights. It skips what a general forward pays for on
  every token (mask construction, module hooks and keyword plumbing, a cache update that
  builds index tensors), keeps the hidden states 2-D, reads rotary angles from a
  table the model's rotary module fills once, writes keys and values in place and attends
  over the filled part of the cache only (``scripts/bench/bench_generate.py`` measures it
  against the next one as path ``reelm_layers``). Its projections come from
  :mod:`reelm.lm.decode_weights`: the model's own weights, or packed copies in fp16 or int8
  (a layer's query, key and value as one product, its gate and up as another).
- :class:`LayerStep`: the model's own decoder layers, for configurations the lean step
  does not cover (biases, other activations, rotary scaling that changes with length).

Follows: gpt-fast / LlamaGen (a static preallocated cache and a lean single-token step);
the Hugging Face Llama (``modeling_llama``) for the arithmetic, which the tests check
against the model's own forward.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from transformers import LlamaForCausalLM, StaticCache

from reelm.core.errors import ReelmError
from reelm.lm.decode_weights import DecodeWeights

CACHE_ARGUMENT = "cache" if "cache" in inspect.signature(LlamaForCausalLM.forward).parameters else "past_key_values"
STEP_KINDS = ("auto", "lean", "layers")


class DecodeStepError(ReelmError):
    """A model the decode steps cannot run."""


def lean_unsupported(model) -> str | None:
    """Why :class:`LeanLlamaStep` cannot run ``model`` (``None`` when it can)."""
    config = model.config
    if config.model_type not in ("llama", "reelm_llama"):
        return f"model type {config.model_type!r} is not llama"
    if getattr(config, "hidden_act", "silu") != "silu":
        return f"activation {config.hidden_act!r} is not silu"
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        return "the model has attention or MLP biases"
    rope_type = (getattr(config, "rope_parameters", None) or {}).get("rope_type", "default")
    if "dynamic" in rope_type:
        return f"rotary scaling {rope_type!r} changes with the sequence length"
    return None


def packed_unsupported(kind: str, model, weights: str) -> str | None:
    """Why the step ``kind`` cannot read weights in format ``weights`` for ``model`` (``None`` when it can)."""
    if weights == "model":
        return None
    why = "the model's own layers read the model's weights" if kind == "layers" else lean_unsupported(model)
    return None if why is None else f"weights {weights}: only the lean decode step reads them ({why}); use model"


def make_step(kind: str, model, cache: StaticCache, max_positions: int, weights: DecodeWeights | None = None):
    """The step named ``kind`` (``auto``: lean where the model allows it, else the model's layers).

    ``weights``: the projections in the chosen format (:mod:`reelm.lm.decode_weights`; None: the
    model's own). Only the lean step reads packed formats.
    """
    if kind not in STEP_KINDS:
        raise DecodeStepError(f"decode step {kind!r}: choose from {list(STEP_KINDS)}")
    reason = lean_unsupported(model)
    if kind == "lean" and reason:
        raise DecodeStepError(f"decode step 'lean': {reason}; use 'layers' or 'auto'")
    unreadable = packed_unsupported(kind, model, "model" if weights is None else weights.format)
    if unreadable:
        raise DecodeStepError(unreadable)
    if kind == "layers" or reason:
        return LayerStep(model, cache)
    return LeanLlamaStep(model, cache, max_positions, weights)


class LeanLlamaStep:
    """The Llama decoder for one query token per row, over the model's weights and a filled ``StaticCache``."""

    kind = "lean"

    def __init__(self, model, cache: StaticCache, max_positions: int, weights: DecodeWeights | None = None):
        inner = model.model
        self.embed = inner.embed_tokens.weight
        self.cell_positions = _cell_table(getattr(model, "video_positions", None))
        self.norm = inner.norm
        self.cache = cache
        weights = weights if weights is not None else DecodeWeights(model, "model")
        self.packed = weights.format != "model"  # [qkv, o, gate_up, down] instead of the seven projections
        self.layers = [(layer, layer.self_attn, projections) for layer, projections in zip(inner.layers, weights.layers)]
        attention = self.layers[0][1]
        self.head_dim = attention.head_dim
        self.num_heads = model.config.num_attention_heads
        self.num_kv_heads = model.config.num_key_value_heads
        self.gqa = self.num_kv_heads != self.num_heads
        anchor = self.embed[:1]  # the rotary module takes dtype and device from it
        positions = torch.arange(max_positions, device=self.embed.device)[None]
        cos, sin = inner.rotary_emb(anchor, position_ids=positions)  # (1, max_positions, head_dim)
        half = self.head_dim // 2
        self.cos = cos[0]
        self.sin = torch.cat([-sin[0, :, :half], sin[0, :, half:]], dim=-1)  # rotate_half's sign folded in

    def __call__(self, ids: torch.Tensor, positions: torch.Tensor, slot: int,
                 key_bias: torch.Tensor | None, grid_index: torch.Tensor | None = None) -> torch.Tensor:
        """``(rows, hidden)``: the final-norm hidden state of each row's id at its position, written at ``slot``.

        ``key_bias`` ``(rows, 1, 1, >= slot + 1)`` is added to the attention scores: 0 for the
        cache slots a row attends to, ``-inf`` for the others (``None``: all of ``[0, slot]``).
        ``grid_index`` ``(rows,)``: each id's cell in its video grid (-1: not a code), for a model
        with video positions.
        """
        rows, heads, kv_heads, head_dim = ids.shape[0], self.num_heads, self.num_kv_heads, self.head_dim
        hidden = F.embedding(ids, self.embed)  # (rows, hidden)
        if self.cell_positions is not None:
            hidden = hidden + self.cell_positions[grid_index]  # index -1 (not a code) is the table's zero row
        cos = self.cos[positions][:, None]  # (rows, 1, head_dim): the same angles for every head
        sin = self.sin[positions][:, None]
        bias = None if key_bias is None else key_bias[..., : slot + 1]
        for index, (layer, attention, projections) in enumerate(self.layers):
            x = _rms_norm(hidden, layer.input_layernorm)
            if self.packed:
                qkv, o_proj, gate_up, down = projections
                q, k, v = qkv.split(qkv(x))
            else:
                q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down = projections
                q, k, v = q_proj(x), k_proj(x), v_proj(x)
            q = _rotate(q.view(rows, heads, head_dim), cos, sin)
            cached = self.cache.layers[index]
            cached.keys[:, :, slot] = _rotate(k.view(rows, kv_heads, head_dim), cos, sin)
            cached.values[:, :, slot] = v.view(rows, kv_heads, head_dim)
            out = F.scaled_dot_product_attention(
                q[:, :, None], cached.keys[:, :, : slot + 1], cached.values[:, :, : slot + 1], attn_mask=bias,
                scale=attention.scaling, enable_gqa=self.gqa,
            )  # (rows, heads, 1, head_dim)
            hidden = hidden + o_proj(out.reshape(rows, heads * head_dim))
            x = _rms_norm(hidden, layer.post_attention_layernorm)
            gate, up = gate_up.split(gate_up(x)) if self.packed else (gate_proj(x), up_proj(x))
            hidden = hidden + down(F.silu(gate) * up)
        return _rms_norm(hidden, self.norm)

    def select_rows(self, index: torch.Tensor) -> None:
        self.cache.reorder_cache(index)


class LayerStep:
    """The model's own decoder layers for one query token per row, over a filled ``StaticCache``."""

    kind = "layers"

    def __init__(self, model, cache: StaticCache):
        self.model = model.model
        self.video_positions = getattr(model, "video_positions", None)
        self.cache = cache

    def __call__(self, ids: torch.Tensor, positions: torch.Tensor, slot: int,
                 key_bias: torch.Tensor | None, grid_index: torch.Tensor | None = None) -> torch.Tensor:
        """As :meth:`LeanLlamaStep.__call__`, but ``key_bias`` must cover the whole cache (later slots ``-inf``).

        The layers write at the cache's own count of filled slots, which is ``slot`` when
        every step since prefill went through this one.
        """
        inner = self.model
        hidden = inner.embed_tokens(ids[:, None])  # (rows, 1, hidden)
        if self.video_positions is not None:
            hidden = hidden + self.video_positions(grid_index[:, None])
        position_ids = positions[:, None]
        embeddings = inner.rotary_emb(hidden, position_ids=position_ids)
        for layer in inner.layers[: inner.config.num_hidden_layers]:
            hidden = layer(hidden, attention_mask=key_bias, position_ids=position_ids,
                           position_embeddings=embeddings, **{CACHE_ARGUMENT: self.cache})
        return inner.norm(hidden)[:, 0]

    def select_rows(self, index: torch.Tensor) -> None:
        self.cache.reorder_cache(index)


def _cell_table(video_positions) -> torch.Tensor | None:
    """``(cells + 1, hidden)``: the video-position embedding of every grid cell, then a zero row for non-codes,
    so a step adds a code's position with one index instead of three lookups (``None``: no video positions)."""
    if video_positions is None:
        return None
    frame = video_positions.frame.weight
    cells = torch.arange(video_positions.frames * video_positions.h * video_positions.w, device=frame.device)
    table = video_positions(cells)  # (cells, hidden)
    return torch.cat([table, table.new_zeros(1, table.shape[1])])


def _rms_norm(x: torch.Tensor, norm) -> torch.Tensor:
    """``LlamaRMSNorm`` as its forward computes it (in float32, scaled in the input dtype), without module dispatch."""
    normed = x.float()
    variance = normed.pow(2).sum(-1, keepdim=True).div_(x.shape[-1])  # as torch.mean computes it
    normed = normed * torch.rsqrt(variance + norm.variance_epsilon)
    return norm.weight * normed.to(x.dtype)


def _rotate(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """Llama's rotary embedding ``x * cos + rotate_half(x) * sin`` with ``rotate_half``'s sign in ``signed_sin``:
    the halves of the last dimension swapped by one flip."""
    half = x.shape[-1] // 2
    return x * cos + x.unflatten(-1, (2, half)).flip(-2).flatten(-2) * signed_sin
