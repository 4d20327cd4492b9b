"""The weights a decode step multiplies by, in the format generation reads them in: the model's own, fp16 or int8.

A decode step multiplies one activation row per sample by every projection of the model, so on
CPUs its time is mostly the bytes of weights it reads (BENCHMARKS.md, "Generation at the
bandwidth bound"). Reading fewer of them is the lever; the formats (``WEIGHT_FORMATS``):

- ``model``: the model's own tensors (fp32 on CPUs, bf16 where it was loaded in bf16), multiplied
  with ``torch.mm`` over transposed views: nothing is copied. Every other format is measured
  against it, and the token-for-token tests against ``generate()`` run on it.
- ``fp16``: half of fp32's bytes, arithmetic in fp32: FBGEMM's packed fp16 GEMM
  (``quantized::linear_prepack_fp16`` / ``linear_dynamic_fp16``), which widens the weights as it
  reads them. Rounding weights to fp16 (11 significant bits) moves a projection's output by
  about 2e-4 of its norm.
- ``int8``: a quarter of fp32's bytes, weight-only: each output channel's weights scaled to
  [-127, 127] by one scale of its own (symmetric), activations rounded to bf16, and
  ``torch._weight_int8pack_mm`` (PyTorch's own weight-only int8 kernel). About 1 % of a
  projection's output norm. Reading a quarter of the bytes pays only where the kernel keeps up:
  on an AVX2 CPU it multiplies about 5 G weights/s, so a ``small`` step gains less than with
  ``fp16`` (BENCHMARKS.md). FBGEMM's dynamic int8 (activations quantized too) was measured and
  left out: no faster than ``fp16`` at ``small``, twice as slow at ``tiny`` (a fixed ~0.1 ms a
  call), twice ``int8``'s error, and its activation range is shared across a batch.

The packed formats are CPU formats (FBGEMM and the int8 kernel's CPU build); on GPUs, load the
model in bf16 instead. Every row is computed on its own (no activation statistics shared across
a batch, as dynamic activation quantization would share them), so a sample's result depends on
its batch only by float rounding, as with the fp32 matrix product. Projections that read the same input are packed as one (a layer's
query, key and value; its gate and up), so a packed step makes four products a layer, not seven.

Follows: gpt-fast's weight-only int8 decoding (per-channel symmetric scales, the matmul reading
int8); FBGEMM's fp16 GEMM as PyTorch's dynamic-quantization ``Linear`` uses it.
"""

from __future__ import annotations

from typing import Sequence

import torch

from reelm.core.errors import ReelmError

WEIGHT_FORMATS = ("model", "fp16", "int8")
PACKED_FORMATS = ("fp16", "int8")


class WeightFormatError(ReelmError):
    """A weight format this machine or model cannot decode with."""


def check_format(weights: str, device: torch.device | str) -> None:
    """One :class:`WeightFormatError` line where ``weights`` cannot run on ``device``."""
    if weights not in WEIGHT_FORMATS:
        raise WeightFormatError(f"weights {weights!r}: choose from {', '.join(WEIGHT_FORMATS)}")
    if weights == "model":
        return
    device = torch.device(device)
    if device.type != "cpu":
        raise WeightFormatError(f"weights {weights}: a CPU format; on a {device.type.upper()}, load the model in "
                                "bf16 (torch_dtype=torch.bfloat16) instead")
    if weights == "fp16" and "fbgemm" not in torch.backends.quantized.supported_engines:
        raise WeightFormatError("weights fp16: this PyTorch has no FBGEMM (x86 CPUs only); use model or int8")


class Projection:
    """``y = x @ W.T`` for ``x`` ``(rows, in)``: one or several weight matrices ``(out_i, in)`` side by side."""

    def __init__(self, weights: Sequence[torch.Tensor], fmt: str):
        self.format = fmt
        self.sizes = [w.shape[0] for w in weights]
        if fmt == "model":
            if len(weights) != 1:
                raise ValueError("the model format keeps each weight as it is: one matrix a projection")
            self._weight = weights[0].t()  # (in, out) view, for torch.mm
            self.nbytes = weights[0].numel() * weights[0].element_size()
            return
        weight = torch.cat([w.detach().float() for w in weights]) if len(weights) > 1 else weights[0].detach().float()
        if fmt == "fp16":
            self._packed = torch.ops.quantized.linear_prepack_fp16(weight, None)
            self.nbytes = weight.numel() * 2
        elif fmt == "int8":
            scale = weight.abs().amax(dim=1).clamp_min(1e-12) / 127  # (out,): one per output channel
            self._int8 = torch.round(weight / scale[:, None]).clamp_(-127, 127).to(torch.int8).contiguous()
            self._scale = scale.to(torch.bfloat16)
            self.nbytes = self._int8.numel() + self._scale.numel() * 2
        else:
            raise WeightFormatError(f"weights {fmt!r}: choose from {', '.join(WEIGHT_FORMATS)}")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``(rows, sum of out_i)`` in ``x``'s dtype."""
        if self.format == "model":
            return torch.mm(x, self._weight)
        if self.format == "fp16":
            return torch.ops.quantized.linear_dynamic_fp16(x.float(), self._packed).to(x.dtype)
        return torch._weight_int8pack_mm(x.to(torch.bfloat16), self._int8, self._scale).to(x.dtype)

    def split(self, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The outputs of each packed matrix, in order."""
        return y.split(self.sizes, dim=-1)


def layer_projections(layer, fmt: str) -> list[Projection]:
    """A Llama decoder layer's projections for a decode step: ``[q, k, v, o, gate, up, down]`` as the model
    holds them, or packed ``[qkv, o, gate_up, down]``."""
    attention, mlp = layer.self_attn, layer.mlp
    if fmt == "model":
        return [Projection([module.weight], fmt) for module in (attention.q_proj, attention.k_proj, attention.v_proj,
                                                                 attention.o_proj, mlp.gate_proj, mlp.up_proj,
                                                                 mlp.down_proj)]
    return [Projection([attention.q_proj.weight, attention.k_proj.weight, attention.v_proj.weight], fmt),
            Projection([attention.o_proj.weight], fmt),
            Projection([mlp.gate_proj.weight, mlp.up_proj.weight], fmt),
            Projection([mlp.down_proj.weight], fmt)]


class HeadRows:
    """The output head's rows ``[lo, hi)`` (a step's allowed id range), packed once per range and kept."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, fmt: str):
        self.weight, self.bias, self.format = weight, bias, fmt
        self._packed: dict[tuple[int, int], Projection] = {}

    def __call__(self, hidden: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        """``(rows, hi - lo)`` logits."""
        if self.format == "model":
            bias = None if self.bias is None else self.bias[lo:hi]
            return torch.nn.functional.linear(hidden, self.weight[lo:hi], bias)
        packed = self._packed.get((lo, hi))
        if packed is None:
            packed = self._packed[(lo, hi)] = Projection([self.weight[lo:hi]], self.format)
        logits = packed(hidden)
        return logits if self.bias is None else logits + self.bias[lo:hi]


class DecodeWeights:
    """Every decoder layer's projections (:func:`layer_projections`) and the head (:class:`HeadRows`) in one format.

    Packed formats copy the weights when this is built: an engine builds it once, at its first
    decode, so weights changed after that (training on) are not seen by that engine.
    """

    def __init__(self, model, fmt: str):
        self.format = fmt
        self.layers = [layer_projections(layer, fmt) for layer in model.model.layers]
        head = model.get_output_embeddings()
        self.head = HeadRows(head.weight, head.bias, fmt)


def bytes_per_weight(fmt: str, model_dtype: torch.dtype) -> float:
    """Bytes a weight takes in format ``fmt`` (int8's per-channel scales left out: one bf16 a row)."""
    return {"fp16": 2.0, "int8": 1.0}.get(fmt, torch.empty((), dtype=model_dtype).element_size())


__all__ = ["DecodeWeights", "HeadRows", "PACKED_FORMATS", "Projection", "WEIGHT_FORMATS", "WeightFormatError",
           "bytes_per_weight", "check_format", "layer_projections"]
