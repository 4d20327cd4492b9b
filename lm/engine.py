"""The generation engine: prompts as token ids in, constrained samples as token ids out.

The engine knows the token layout's ids but nothing of pixels or text: a caller builds
prompts with :meth:`TokenLayout.prompt` and reads samples with :meth:`TokenLayout.parse`.
One :meth:`GenerationEngine.generate` call:

1. plans each request with the layout (:meth:`TokenLayout.generation_plan`: a video
   target of exactly ``frames`` latent frames then ``<eov> <eos>``, or at most
   ``max_text_tokens`` text ids then ``<eot> <eos>``);
2. prefills every distinct prompt once, in one forward of the model (left-padded), into
   a preallocated Hugging Face ``StaticCache``, and copies each prompt's cache rows to its
   ``num_samples`` rows;
3. decodes one id per row per step with a lean single-token step
   (:mod:`reelm.lm.decode_step`), computing logits only for the id range the step may
   emit (inside a video block: the codes) and masking them, where rows may differ, with
   each row's constraint state (:mod:`reelm.lm.constraints`), advanced in O(1) per id, so
   that every sample follows the layout without repair;
4. with classifier-free guidance, runs the unconditional prompts (the layout's empty-text
   form unless given) as a second half of the same batch, conditional rows first, and
   samples from ``uncond + scale * (cond - uncond)``; scale 1 is no guidance (no
   unconditional rows at all);
5. drops rows that finished (text targets end early) from the batch at regular checks,
   and stops when every row has its ``<eos>``; the ids after a row's ``<eos>`` are
   ``<pad>``.

The same seed and settings give the same ids; under greedy decoding a prompt gives the
same ids alone or in a batch.

Follows: nanochat's ``engine.py`` (token ids in and out; one prefill whose cache is copied
to each sample's row; a per-row state advanced per token) and LlamaGen's ``generate.py``
(guidance by doubling the batch, conditional rows then unconditional rows, through prefill
and every step, logits combined before sampling).
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from transformers import StaticCache

from reelm.data.token_layout import GenerationPlan, LayoutError, TokenLayout
from reelm.core.device import synchronize
from reelm.core.errors import ReelmError
from reelm.lm.constraints import PlanTable, step_schedule
from reelm.lm.decode_step import (CACHE_ARGUMENT, STEP_KINDS, DecodeStepError, lean_unsupported, make_step,
                                  packed_unsupported)
from reelm.lm.decode_weights import DecodeWeights, WeightFormatError, check_format
from reelm.lm.sampling import Sampling, sample


class GenerationError(ReelmError):
    """A request, setting or model the engine cannot generate with."""


@dataclass(frozen=True)
class Request:
    """One prompt and what to generate after it.

    ``prompt``: a whole prompt of the layout (1-D ids ending with the target block's begin
    marker). A video target (t2v, i2v, v2v, uncond) takes ``frames`` latent frames: for i2v
    and v2v the frames after the image or context. A text target (v2t) takes at most
    ``max_text_tokens`` text ids. ``unconditional_prompt`` is used with guidance; by default
    the layout's empty-text form of ``prompt``.
    """

    prompt: Any
    frames: int | None = None
    max_text_tokens: int | None = None
    unconditional_prompt: Any = None


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields, not objects
class Sample:
    """One generated row: ``ids`` is the target block, its end marker and ``<eos>``; ``sequence`` the whole."""

    request: int
    sample: int
    ids: np.ndarray  # (n,) int64
    sequence: np.ndarray  # (prompt + n,) int64


@dataclass(frozen=True)
class GenerationStats:
    """Counts and timings of one call, for a sidecar."""

    samples: int  # rows generated: requests x num_samples
    model_rows: int  # rows through the model (twice the samples with guidance)
    tokens: int  # ids generated over all samples, <eos> included, padding not
    steps: int  # decode steps (the longest sample)
    forwards: int  # model forwards, the prefill included
    prefill_s: float
    decode_s: float
    step: str  # the decode step: "lean" or "layers"
    weights: str  # the format the decode steps read the weights in: "model", "fp16" or "int8"
    cfg_scale: float
    seed: int | list[int] | None  # one seed for the batch, or one per sample
    sampling: dict

    @property
    def total_s(self) -> float:
        return self.prefill_s + self.decode_s

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.total_s if self.total_s > 0 else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "total_s": self.total_s, "tokens_per_s": self.tokens_per_s}


@dataclass(frozen=True, eq=False)
class GenerationResult:
    """Samples request by request (request 0's samples first), the padded id grid and the stats."""

    samples: list[Sample]
    ids: np.ndarray  # (samples, steps) int64, <pad> after each <eos>
    stats: GenerationStats


@dataclass(frozen=True)
class Progress:
    """Where a call stands after each step, for a progress bar (ids per second: ``rows`` per step over time)."""

    step: int
    steps: int  # the most steps this call can take
    rows: int  # samples still generating, as of the last check
    elapsed_s: float


class GenerationEngine:
    """Generates from a Hugging Face Llama (``reelm.lm.model``) over a token layout; see the module docstring.

    ``step``: ``"auto"`` (the lean step where the model allows it), ``"lean"`` or
    ``"layers"`` (the model's own decoder layers). ``weights``: the format the decode steps
    read the weights in (:mod:`reelm.lm.decode_weights`: ``"model"``, ``"fp16"``, ``"int8"``;
    the packed ones are copied at the first decode and need the lean step; the prefill always
    runs the model's own weights). ``check_every``: steps between the checks that drop
    finished rows (only batches with text targets finish early).
    """

    def __init__(self, model, layout: TokenLayout, *, step: str = "auto", weights: str = "model",
                 check_every: int = 16):
        if getattr(model.config, "model_type", None) not in ("llama", "reelm_llama"):
            raise GenerationError(f"model type {getattr(model.config, 'model_type', None)!r}: "
                                  "the engine runs reelm's Llama LMs")
        if model.config.vocab_size < layout.vocab_size:
            raise GenerationError(f"the model's vocabulary ({model.config.vocab_size}) is smaller than the token "
                                  f"layout's ({layout.vocab_size})")
        if step not in STEP_KINDS:
            raise GenerationError(f"step {step!r}: choose from {list(STEP_KINDS)}")
        if step == "lean" and lean_unsupported(model):
            raise GenerationError(f"step 'lean': {lean_unsupported(model)}; use 'layers' or 'auto'")
        if check_every < 1:
            raise GenerationError(f"check_every {check_every}: expected a positive integer")
        try:
            check_format(weights, next(model.parameters()).device)
        except WeightFormatError as exc:
            raise GenerationError(str(exc)) from None
        if packed_unsupported(step, model, weights):
            raise GenerationError(packed_unsupported(step, model, weights))
        self.model = model
        self.layout = layout
        self.step_kind = step
        self.weights = weights
        self.check_every = check_every
        self._head_weight = model.get_output_embeddings().weight
        self._packed: DecodeWeights | None = None  # packed weights, made at the first decode

    @property
    def device(self) -> torch.device:
        return self._head_weight.device

    @torch.inference_mode()
    def generate(
        self,
        requests: Sequence[Request],
        *,
        sampling: Sampling = Sampling(),
        cfg_scale: float = 1.0,
        num_samples: int = 1,
        seed: int | Sequence[int] | None = None,
        generator: torch.Generator | None = None,
        progress: Callable[[Progress], None] | None = None,
    ) -> GenerationResult:
        """Generate ``num_samples`` samples per request (see :class:`Request`).

        ``seed`` seeds a new generator on the model's device (``generator`` uses the
        caller's instead; with neither, a random seed is drawn and reported in the stats).
        A sequence of seeds, one per sample (request-major: request 0's samples first), gives
        every sample a generator of its own, so its ids do not depend on what else is in the
        batch. ``progress`` is called after every step.
        """
        requests = list(requests)
        _check_arguments(requests, sampling, cfg_scale, num_samples)
        guided = cfg_scale != 1
        samples = len(requests) * num_samples
        if isinstance(seed, Sequence):
            seed = [int(s) for s in seed]
            if len(seed) != samples:
                raise GenerationError(f"seed: {len(seed)} seeds for {samples} samples; give one per sample")
            generator = [torch.Generator(device=self.device).manual_seed(s) for s in seed]
        elif generator is None:
            seed = secrets.randbits(63) if seed is None else seed
            generator = torch.Generator(device=self.device).manual_seed(seed)
        else:
            seed = None
        prompts, plans = self._plan(requests)
        unconditional = self._unconditional(requests, prompts, plans) if guided else []
        steps = max(plan.max_new_tokens for plan in plans)
        start = time.perf_counter()
        rows = torch.arange(samples, device=self.device) // num_samples  # (samples,) request of each row
        expand = torch.cat([rows, rows + len(requests)]) if guided else rows  # (model rows,) prompt of each
        weights = self._decode_weights()
        decode, logits, positions, key_bias, width = self._prefill(prompts + unconditional, expand, steps, weights)
        codes_seen = self._codes_seen(prompts + unconditional, expand)  # (model rows,) or None: no video positions
        codes = self.layout.code_range
        synchronize(self.device)
        prefill_s = time.perf_counter() - start

        start = time.perf_counter()
        row_plans = [plans[r] for r in range(len(requests)) for _ in range(num_samples)]
        table = PlanTable(row_plans, logits.shape[-1], self.device)
        schedule = step_schedule(row_plans)
        states = table.start.clone()  # (samples,) of the rows still generating
        row_done = table.row_done
        live = torch.arange(samples, device=self.device)  # (live rows,) their sample index
        ids = torch.full((samples, steps), self.layout.pad_id, dtype=torch.long, device=self.device)
        finishes_early = any(plan.kind == "text" for plan in plans)
        forwards, taken = 1, 0
        for t in range(steps):
            lo, hi = schedule.ranges[t]
            if schedule.forced[t]:
                chosen = torch.full_like(states, lo)
            else:
                step_logits = logits[:, lo:hi] if t == 0 else weights.head(hidden, lo, hi)  # (model rows, hi - lo)
                if guided:
                    cond, uncond = step_logits.float().chunk(2)
                    step_logits = uncond + cfg_scale * (cond - uncond)
                if not schedule.exact[t]:
                    step_logits = step_logits.masked_fill(~table.allowed(states)[:, lo:hi], float("-inf"))
                chosen = sample(step_logits, sampling, generator) + lo  # (live rows,)
            if len(live) == samples:
                ids[:, t] = chosen
            else:
                ids[live, t] = chosen
            states = table.advance(states, chosen)
            taken = t + 1
            if finishes_early and taken % self.check_every == 0:
                keep = torch.nonzero(states != row_done)[:, 0]
                if len(keep) == 0:
                    break
                if len(keep) < len(live):
                    model_keep = torch.cat([keep, keep + len(live)]) if guided else keep
                    live, states, row_done, chosen = live[keep], states[keep], row_done[keep], chosen[keep]
                    if isinstance(generator, list):
                        generator = [generator[k] for k in keep.tolist()]
                    decode.select_rows(model_keep)
                    positions = positions[model_keep]
                    codes_seen = None if codes_seen is None else codes_seen[model_keep]
                    key_bias = None if key_bias is None else key_bias[model_keep]
            if schedule.needs_forward(t):
                slot = width + t
                if key_bias is not None:
                    key_bias[..., slot] = 0.0
                step_ids = torch.cat([chosen, chosen]) if guided else chosen
                grid_index = None
                if codes_seen is not None:  # the fed id's cell in its video grid, for video positions
                    is_code = (step_ids >= codes.start) & (step_ids < codes.stop)  # the layout's is_code, on device
                    grid_index = torch.where(is_code, codes_seen, -1)
                    codes_seen = codes_seen + is_code
                hidden = decode(step_ids, positions, slot, key_bias, grid_index)  # (model rows, hidden)
                positions = positions + 1
                forwards += 1
            if progress is not None:
                progress(Progress(taken, steps, len(live), time.perf_counter() - start))
        synchronize(self.device)
        decode_s = time.perf_counter() - start

        grid = ids[:, :taken].cpu().numpy()
        results = self._samples(grid, prompts, num_samples)
        stats = GenerationStats(
            samples=samples, model_rows=len(expand), tokens=sum(len(s.ids) for s in results), steps=taken,
            forwards=forwards, prefill_s=prefill_s, decode_s=decode_s, step=decode.kind, weights=weights.format,
            cfg_scale=float(cfg_scale), seed=seed, sampling=sampling.to_dict(),
        )
        return GenerationResult(results, grid, stats)

    def _prefill(self, prompts: list[np.ndarray], expand: torch.Tensor, steps: int, weights: DecodeWeights):
        """One forward of the distinct ``prompts`` (left-padded) into a new cache, whose rows are then copied to
        the model rows (``expand``: the prompt of each).

        Returns the decode step over that cache, each row's logits for its first id, its next
        position, the additive key bias (``None`` when no row needs one) and the padded prompt width.
        """
        prompt_ids, lengths = _left_pad(prompts, self.layout.pad_id, self.device)
        width = prompt_ids.shape[1]
        if width + steps > self.model.config.max_position_embeddings:
            raise GenerationError(f"prompt ({width} ids) + generation ({steps} ids) exceed the model's "
                                  f"{self.model.config.max_position_embeddings} positions")
        cache = StaticCache(config=self.model.config, max_cache_len=width + steps)
        valid = prompt_ids != self.layout.pad_id if any(len(p) != width for p in prompts) else None
        positions = torch.arange(width, device=self.device).expand(len(prompts), -1)
        if valid is not None:
            positions = (valid.long().cumsum(-1) - 1).clamp(min=0)  # (prompts, width): left pads at 0
        out = self.model(input_ids=prompt_ids, attention_mask=None if valid is None else valid.long(),
                         position_ids=positions, use_cache=True, logits_to_keep=1, **{CACHE_ARGUMENT: cache})
        cache.reorder_cache(expand)
        decode = make_step(self.step_kind, self.model, cache, width + steps, weights)
        key_bias = None  # (model rows, 1, 1, cache) additive: 0 where a row attends, -inf elsewhere
        if valid is not None or decode.kind == "layers":
            key_bias = torch.full((len(expand), 1, 1, width + steps), float("-inf"), dtype=self._head_weight.dtype,
                                  device=self.device)
            key_bias[..., :width] = 0.0
            if valid is not None:
                key_bias[:, 0, 0, :width].masked_fill_(~valid[expand], float("-inf"))
        return decode, out.logits[:, -1][expand], lengths[expand], key_bias, width

    def _codes_seen(self, prompts: list[np.ndarray], expand: torch.Tensor) -> torch.Tensor | None:
        """``(model rows,)`` video codes in each row's prompt (after its ``<bos>``), for a model with video positions."""
        if getattr(self.model, "video_positions", None) is None:
            return None
        counts = [int(self.layout.is_code(p).sum()) for p in prompts]
        return torch.tensor(counts, dtype=torch.long, device=self.device)[expand]

    def _samples(self, grid: np.ndarray, prompts: list[np.ndarray], num_samples: int) -> list[Sample]:
        samples = []
        for row, generated in enumerate(grid):
            request = row // num_samples
            end = int(np.flatnonzero(generated == self.layout.eos_id)[0]) + 1
            samples.append(Sample(request, row % num_samples, generated[:end].copy(),
                                  np.concatenate([prompts[request], generated[:end]])))
        return samples

    def _plan(self, requests: list[Request]) -> tuple[list[np.ndarray], list[GenerationPlan]]:
        prompts, plans = [], []
        for index, request in enumerate(requests):
            if not isinstance(request, Request):
                raise GenerationError(f"request {index}: expected a reelm.lm.engine.Request, "
                                      f"got {type(request).__name__}")
            try:
                plans.append(self.layout.generation_plan(request.prompt, frames=request.frames,
                                                         max_text_tokens=request.max_text_tokens))
            except LayoutError as exc:
                raise GenerationError(f"request {index}: {exc}") from None
            prompts.append(self.layout.strip_pads(request.prompt, trailing=False))
        return prompts, plans

    def _unconditional(self, requests: list[Request], prompts: list[np.ndarray],
                       plans: list[GenerationPlan]) -> list[np.ndarray]:
        unconditional = []
        for index, (request, prompt, plan) in enumerate(zip(requests, prompts, plans)):
            try:
                if request.unconditional_prompt is None:
                    uncond = self.layout.unconditional_prompt(prompt)
                else:
                    uncond = self.layout.strip_pads(request.unconditional_prompt, trailing=False)
                    other = self.layout.generation_plan(uncond, frames=request.frames,
                                                        max_text_tokens=request.max_text_tokens)
                    if other.task != plan.task:
                        raise LayoutError(f"unconditional prompt: task {other.task.value}, "
                                          f"the prompt's is {plan.task.value}")
            except LayoutError as exc:
                raise GenerationError(f"request {index}: classifier-free guidance: {exc}") from None
            unconditional.append(uncond)
        return unconditional

    def _decode_weights(self) -> DecodeWeights:
        """The decode steps' weights: views of the model's own, made afresh each call (so a moved or updated model
        is read as it is now), or the packed copies, made once."""
        if self.weights == "model":
            return DecodeWeights(self.model, "model")
        if self._packed is None:
            self._packed = DecodeWeights(self.model, self.weights)
        return self._packed


def _check_arguments(requests: list, sampling, cfg_scale, num_samples) -> None:
    """One :class:`GenerationError` line for arguments :meth:`GenerationEngine.generate` cannot take."""
    if not requests:
        raise GenerationError("no requests to generate")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise GenerationError(f"num_samples {num_samples!r}: expected a positive integer")
    if not isinstance(cfg_scale, (int, float)) or not math.isfinite(cfg_scale) or cfg_scale < 0:
        raise GenerationError(f"cfg_scale {cfg_scale!r}: expected a finite number >= 0")
    if not isinstance(sampling, Sampling):
        raise GenerationError(f"sampling: expected a reelm.lm.sampling.Sampling, got {type(sampling).__name__}")


def _left_pad(prompts: list[np.ndarray], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(prompts, width)`` ids, left-padded, and each prompt's length."""
    width = max(len(p) for p in prompts)
    grid = np.full((len(prompts), width), pad_id, dtype=np.int64)
    for row, prompt in enumerate(prompts):
        grid[row, width - len(prompt):] = prompt
    lengths = torch.tensor([len(p) for p in prompts], dtype=torch.long, device=device)
    return torch.from_numpy(grid).to(device), lengths


__all__ = ["GenerationEngine", "GenerationError", "GenerationResult", "GenerationStats", "Progress", "Request",
           "Sample", "Sampling", "DecodeStepError"]
