"""Constrained decoding as tensors: a batch of the token layout's generation plans, and a LogitsProcessor.

The token layout owns what may follow a prompt (:meth:`TokenLayout.generation_plan` gives
one :class:`GenerationPlan` per prompt); this module turns the plans of a batch into one
set of tables so that each row's constraint is a single integer state:

- ``allowed(states)``: the ``(rows, width)`` mask of ids each row may emit, one gather from
  the masks of the distinct allowed sets, built once;
- ``advance(states, ids)``: the next states, a few gathers and a ``where``, O(1) per row
  and token, with no walk over the prefix and no host sync.

:class:`LayoutLogitsProcessor` applies the same tables inside plain
``model.generate(..., logits_processor=[...])``; :func:`step_schedule` tells a decode loop,
ahead of time and without looking at sampled ids, which id range each step may need.

Follows: nanochat's engine (a small per-row state advanced per token) and the
prefix-constrained decoding of Emu3 / transformers (a logits processor masking what the
grammar forbids), with the walk over the prefix replaced by a table lookup.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import torch
from transformers import LogitsProcessor

from reelm.data.token_layout import AllowedIds, GenerationPlan, LayoutError, TokenLayout


class PlanTable:
    """The generation plans of a batch's rows as tensors on one device.

    States are global: row ``r`` starts at ``start[r]`` (the offset of its plan's states)
    and never leaves its plan's block of states. ``width`` is the logits' width (a model's
    vocabulary may be padded past the layout's; padded ids are never allowed).
    """

    def __init__(self, plans: Sequence[GenerationPlan], width: int, device: torch.device | str = "cpu"):
        distinct: dict[int, int] = {}  # id(plan) -> index into self.plans
        self.plans: list[GenerationPlan] = []
        for plan in plans:
            if id(plan) not in distinct:
                distinct[id(plan)] = len(self.plans)
                self.plans.append(plan)
        sets: dict[AllowedIds, int] = {}
        state_set, next_state, end_id, after_end, offsets = [], [], [], [], []
        for plan in self.plans:
            offset = len(state_set)
            offsets.append(offset)
            for state in range(plan.done_state + 1):
                state_set.append(sets.setdefault(plan.allowed(state), len(sets)))
                next_state.append(offset + min(state + 1, plan.done_state))
                end_id.append(plan.end_id)
                after_end.append(offset + plan.eos_state)
        self.width = width
        self.device = torch.device(device)
        masks = torch.zeros(len(sets), width, dtype=torch.bool)
        for allowed, index in sets.items():
            for lo, hi in allowed.ranges:
                masks[index, lo:min(hi, width)] = True
        as_long = dict(dtype=torch.long, device=self.device)
        self.masks = masks.to(self.device)  # (sets, width)
        self.state_set = torch.tensor(state_set, **as_long)  # (states,)
        self.next_state = torch.tensor(next_state, **as_long)
        self.end_id = torch.tensor(end_id, **as_long)
        self.after_end = torch.tensor(after_end, **as_long)
        self.done = torch.tensor([offset + plan.done_state for offset, plan in zip(offsets, self.plans)], **as_long)
        self.start = torch.tensor([offsets[distinct[id(plan)]] for plan in plans], **as_long)  # (rows,)
        self.row_done = self.done[torch.tensor([distinct[id(plan)] for plan in plans], **as_long)]  # (rows,)

    def allowed(self, states: torch.Tensor) -> torch.Tensor:
        """``(rows, width)`` bool: the ids each row may emit in its state."""
        return self.masks[self.state_set[states]]

    def is_allowed(self, states: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """``(rows,)`` bool: whether each row's id is allowed in its state (O(1) per row)."""
        inside = (ids >= 0) & (ids < self.width)
        return inside & self.masks[self.state_set[states], ids.clamp(0, self.width - 1)]

    def advance(self, states: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """The states after each row emits its id (an allowed one)."""
        return torch.where(ids == self.end_id[states], self.after_end[states], self.next_state[states])


@dataclass(frozen=True)
class StepSchedule:
    """What a batch's step ``t`` may need, known before sampling: its id range, whether it needs a mask or logits.

    ``ranges[t] = (lo, hi)`` bounds the ids any row may emit at step ``t`` (a decoder
    computes logits for ``[lo, hi)`` only); ``exact[t]`` holds when every row may emit
    exactly the ids of that range (no mask needed); ``forced[t]`` when the range is a single
    id, which every row then emits without logits.
    """

    ranges: tuple[tuple[int, int], ...]
    exact: tuple[bool, ...]
    forced: tuple[bool, ...]

    def __len__(self) -> int:
        return len(self.ranges)

    @cached_property
    def last_sampled(self) -> int:
        """The last step that is not forced (-1 if none)."""
        return max((t for t, forced in enumerate(self.forced) if not forced), default=-1)

    def needs_forward(self, t: int) -> bool:
        """Whether a later step than ``t`` samples, so the id of step ``t`` must go through the model."""
        return t < self.last_sampled


def step_schedule(plans: Sequence[GenerationPlan]) -> StepSchedule:
    """The schedule of a batch of rows following ``plans``, from the states each plan can reach at each step."""
    steps = max(plan.max_new_tokens for plan in plans)
    sets: list[set[AllowedIds]] = [set() for _ in range(steps)]  # per step: every set a row may be in
    for plan in {id(plan): plan for plan in plans}.values():
        reachable = {0}
        for t in range(steps):
            sets[t].update(plan.allowed(state) for state in reachable)
            reachable = {after for state in reachable for after in _successors(plan, state)}
    ranges = tuple((min(r[0] for a in step for r in a.ranges), max(r[1] for a in step for r in a.ranges))
                   for step in sets)
    exact = tuple(len(step) == 1 and len(next(iter(step)).ranges) == 1 for step in sets)
    return StepSchedule(ranges, exact, tuple(hi - lo == 1 for lo, hi in ranges))


def _successors(plan: GenerationPlan, state: int) -> set[int]:
    allowed = plan.allowed(state)
    after = {plan.eos_state} if plan.end_id in allowed else set()
    if any(hi - lo > 1 or lo != plan.end_id for lo, hi in allowed.ranges):
        after.add(min(state + 1, plan.done_state))
    return after


class LayoutLogitsProcessor(LogitsProcessor):
    """Keep ``model.generate()`` on the token layout: every row generates exactly its prompt's target block.

    Pass one per ``generate()`` call: ``logits_processor=[LayoutLogitsProcessor(layout,
    frames=N)]`` for video targets (t2v, i2v, v2v, uncond), ``max_text_tokens=M`` for text
    (v2t), with ``max_new_tokens`` at least the plan's
    (``layout.generation_plan(prompt, frames=N).max_new_tokens``). Prompts are read from
    the first call (left padding ignored); each row then keeps its state between calls,
    advanced by the last id and checked against it in O(1) (the id must have been allowed in
    the previous state). If a call does not continue the previous one, the generated ids are
    walked from the prompts once, and ids that leave the layout raise ``LayoutError``.
    """

    def __init__(self, layout: TokenLayout, *, frames: int | None = None, max_text_tokens: int | None = None):
        self.layout = layout
        self.frames = frames
        self.max_text_tokens = max_text_tokens
        self._table: PlanTable | None = None
        self._states: torch.Tensor | None = None
        self._prompt_length = 0
        self._length = 0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        rows, length = input_ids.shape
        fresh = self._table is None or rows != len(self._states) or length <= self._prompt_length
        if fresh or self._table.width != scores.shape[-1]:
            self._begin(input_ids, scores.shape[-1])
        elif length == self._length + 1 and bool(self._table.is_allowed(self._states, input_ids[:, -1]).all()):
            self._states = self._table.advance(self._states, input_ids[:, -1])
        else:
            self._walk(input_ids)
        self._length = length
        return scores.masked_fill(~self._table.allowed(self._states), float("-inf"))

    def _begin(self, input_ids: torch.Tensor, width: int) -> None:
        prompts = input_ids.cpu().numpy()
        plans = []
        for row, prompt in enumerate(prompts):
            try:
                plans.append(self.layout.generation_plan(prompt, frames=self.frames,
                                                         max_text_tokens=self.max_text_tokens))
            except LayoutError as exc:
                raise LayoutError(f"LayoutLogitsProcessor: row {row}: {exc}") from None
        self._table = PlanTable(plans, width, input_ids.device)
        self._states = self._table.start.clone()
        self._prompt_length = input_ids.shape[1]

    def _walk(self, input_ids: torch.Tensor) -> None:
        states = self._table.start.clone()
        for position in range(self._prompt_length, input_ids.shape[1]):
            ids = input_ids[:, position]
            bad = torch.nonzero(~self._table.is_allowed(states, ids))
            if len(bad):
                row = int(bad[0, 0])
                raise LayoutError(
                    f"LayoutLogitsProcessor: row {row}: {self.layout.token_name(int(ids[row]))} at position {position} "
                    f"does not follow the token layout; use one processor per generate() call"
                )
            states = self._table.advance(states, ids)
        self._states = states
