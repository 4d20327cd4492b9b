"""The token layout: the one owner of LM token ids (text, special tokens, video codes).

Data building (pre-tokenized shards), training (loss masks) and sampling (prompts,
constrained decoding, parsing samples) all go through :class:`TokenLayout`.

Id plan, one vocabulary of ``vocab_size = code_offset + codebook_size``::

    [0, text_vocab_size)              text: the text tokenizer's ids, unchanged
    [text_vocab_size, code_offset)    special tokens, in SPECIAL_TOKENS order, as "<|name|>"
    [code_offset, vocab_size)         video codes: id = code_offset + code

Codes are an id range, not added tokens: ``tokenizer.json`` holds text and special
tokens only (codebooks reach 2**18), ``token_layout.json`` records the range.

Sequences, one template per task; the block the model generates is always the last::

    t2v     <bos> <t2v> <bot> text <eot> <bov> video <eov> <eos>
    i2v     <bos> <i2v> <bot> text <eot> <boi> image <eoi> <bov> video <eov> <eos>
    v2v     <bos> <v2v> <bot> text <eot> <bov> context <eov> <bov> video <eov> <eos>
    v2t     <bos> <v2t> <bov> video <eov> <bot> text <eot> <eos>
    uncond  <bos> <uncond> <bov> video <eov> <eos>

- The *prompt* is everything up to and including the last block's begin marker; the
  model continues from there. With ``loss_on="target"`` the loss mask covers what comes
  after the prompt (the generated block, its end marker and ``<eos>``); with ``"all"`` it
  covers every token but ``<bos>``. ``loss_mask[i]`` marks ``input_ids[i]`` as a target:
  it is aligned with ``input_ids``, as Hugging Face causal LMs take ``labels``.
  ``"all_but_prompt_text"`` is ``"all"`` without the text block's ids and ``<eot>`` where the
  text is a condition (t2v, i2v, v2v): the model then learns captions only from v2t, where
  they follow the video, never as text from nothing that a captioner's prior would echo.
- Video blocks hold latent frames in raster order, frame after frame. There are no shape
  tokens: the latent grid ``(h, w)`` is fixed per layout (the video tokenizer runs at
  one resolution) and recorded in it, and ``t`` is the code count over ``h * w``. The
  position of every code is then known from its offset after ``<bov>``, a sequence
  cannot carry a shape that disagrees with its codes, and the generator picks the
  clip length by how many frames it samples before ``<eov>``.
- i2v and v2v condition on the first latent frames of a causal video tokenizer (the
  image is a 1-frame clip, the context a t-frame one); ``video`` then holds only the
  frames after them, never a repeat. :meth:`ParsedSequence.full_video` joins the two.
- Classifier-free guidance: the unconditional form of a conditional sequence is the same
  task with an empty text block (``text=None``: ``<bot> <eot>``). It keeps every other
  position and the visual condition of i2v / v2v, so one rule serves every task; caption
  dropout in training is the same call. The ``uncond`` task is separate: video from
  nothing at all.

- Stories (text tied to the moment it describes): the text of a v2v sequence describes the
  generated block, not its context. A story is then a chain of continuations, each with its
  segment's text, and needs no template of its own: a training story (a clip whose motion or
  color changes where the context ends, :class:`reelm.data.sources.StoryRows`) is a v2v
  sequence whose context shows the first segment and whose text is the second segment's
  caption ("then it moves up"); generation (``reelm generate --story``) gives each window the
  prompt of the segment it falls in. An *anchored* training story (``--story-anchor-windows``) is
  the same v2v sequence whose context's first latent frame (the image latent) is the story's
  first frame and whose second shows the frames just before the change, as a window made with
  ``--story-context anchor`` sees it. Every other task's sequences are unchanged.

Follows: VideoPoet's task-prefixed multimodal sequences and Emu3's processor (visual
codes in their own id range between begin/end markers, prefix-constrained decoding).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from einops import rearrange
from tokenizers import AddedToken, Tokenizer

from reelm.core.config import load_json, save_json
from reelm.data.text_tokenizer import TOKENIZER_FILE, load_text_tokenizer, save_text_tokenizer
from reelm.core.errors import ReelmError

LAYOUT_VERSION = 1
LAYOUT_FILE = "token_layout.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"


class LayoutError(ReelmError):
    """A sequence, code grid or layout folder that does not fit the token layout."""


class Task(str, Enum):
    T2V = "t2v"
    I2V = "i2v"
    V2V = "v2v"
    V2T = "v2t"
    UNCOND = "uncond"


TASKS = tuple(Task)  # the one task order: special-token ids, mixture weights and per-task metrics follow it
IGNORE_INDEX = -100  # a label that is no target (PyTorch's cross-entropy default, as Hugging Face LMs use)
MARKERS = ("bos", "eos", "pad", "bot", "eot", "bov", "eov", "boi", "eoi")
SPECIAL_TOKENS = MARKERS + tuple(task.value for task in TASKS)
BLOCK_MARKERS = {"text": ("bot", "eot"), "image": ("boi", "eoi"), "video": ("bov", "eov")}
TEMPLATES: dict[Task, tuple[tuple[str, str], ...]] = {  # (input name, block kind), target last
    Task.T2V: (("text", "text"), ("video", "video")),
    Task.I2V: (("text", "text"), ("image", "image"), ("video", "video")),
    Task.V2V: (("text", "text"), ("context", "video"), ("video", "video")),
    Task.V2T: (("video", "video"), ("text", "text")),
    Task.UNCOND: (("video", "video"),),
}
LOSS_ON = ("target", "all", "all_but_prompt_text")
LAYOUT_KEYS = ("layout_version", "text_vocab_size", "special_tokens", "code_offset", "codebook_size",
               "vocab_size", "latent_hw", "video_tokenizer")


def continuation_context(latent_frames: int) -> int:
    """Latent frames of context a continuation (v2v) of a ``latent_frames``-frame clip keeps: half, rounded up,
    and at least one frame left to generate. Training, the pipeline and the eval all use this one rule, so a
    3-frame clip is continued from 2 frames: the context shows motion, not only a first frame."""
    return max(1, min(latent_frames - 1, (latent_frames + 1) // 2))


def special_token(name: str) -> str:
    """The string of a special token in ``tokenizer.json``: ``"bos"`` -> ``"<|bos|>"``."""
    return f"<|{name}|>"


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields, not objects
class TokenSequence:
    """One training sequence: ids, which ids are targets, and where the prompt ends."""

    input_ids: np.ndarray  # (L,) int64
    loss_mask: np.ndarray  # (L,) bool, True where input_ids[i] is a target
    prompt_length: int
    task: Task

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def prompt(self) -> np.ndarray:
        return self.input_ids[: self.prompt_length]

    def labels(self) -> np.ndarray:
        """``input_ids`` with non-targets set to ``IGNORE_INDEX``: the ``labels`` of a HF causal LM."""
        return labels_of(self.input_ids, self.loss_mask)


def labels_of(input_ids: np.ndarray, loss_mask: np.ndarray) -> np.ndarray:
    """The labels of ids whose targets ``loss_mask`` marks: the id where True, ``IGNORE_INDEX`` elsewhere."""
    return np.where(loss_mask, input_ids, IGNORE_INDEX)


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields, not objects
class ParsedSequence:
    """A sequence split back into its inputs; ``inputs()`` rebuilds it with :meth:`TokenLayout.sequence`."""

    task: Task
    text: str | None = None
    text_ids: np.ndarray | None = None  # (n,) int64
    video: np.ndarray | None = None  # (t, h, w) int64 codes
    image: np.ndarray | None = None  # (1, h, w)
    context: np.ndarray | None = None  # (t, h, w)

    def inputs(self) -> dict[str, Any]:
        """The keyword arguments of :meth:`TokenLayout.sequence` that give back these ids."""
        names = {name for name, _ in TEMPLATES[self.task]}
        values = {"text": self.text_ids, "video": self.video, "image": self.image, "context": self.context}
        return {name: value for name, value in values.items() if name in names}

    def full_video(self) -> np.ndarray | None:
        """The whole clip ``(t, h, w)``: the image or context frames followed by ``video``."""
        condition = self.image if self.image is not None else self.context
        if condition is None or self.video is None:
            return self.video
        return np.concatenate([condition, self.video], axis=0)


@dataclass(frozen=True)
class AllowedIds:
    """The ids a constrained decoder may emit next: a union of half-open ``[lo, hi)`` ranges."""

    ranges: tuple[tuple[int, int], ...]

    def __contains__(self, token_id: int) -> bool:
        return any(lo <= token_id < hi for lo, hi in self.ranges)

    def mask(self, vocab_size: int) -> np.ndarray:
        """``(vocab_size,)`` bool, True for allowed ids (to mask logits with)."""
        allowed = np.zeros(vocab_size, dtype=bool)
        for lo, hi in self.ranges:
            allowed[lo:hi] = True
        return allowed


@dataclass(frozen=True, eq=False)  # holds an array: compare fields, not objects
class GenerationPlan:
    """What a constrained decoder may emit after one prompt, position by position: a table to index.

    Made by :meth:`TokenLayout.generation_plan`. The decoder keeps one integer *state* per
    row, starting at 0: states ``0 .. eos_state - 1`` are the positions of the target
    block (its content, then its end marker), ``eos_state`` allows only ``<eos>``, and
    ``done_state`` (after ``<eos>``) only ``<pad>``, forever. Emitting ``end_id`` moves to
    ``eos_state``; any other id moves to the next state. The ids allowed in state ``s`` are
    ``sets[state_set[s]]``; ``sets`` holds each distinct set once, so a decoder precomputes
    one vocabulary mask per set and indexes it.
    """

    task: Task
    kind: str  # the target block: "video" or "text"
    sets: tuple[AllowedIds, ...]
    state_set: np.ndarray  # (done_state + 1,) int64 index into sets
    end_id: int  # the target block's end marker
    eos_state: int
    done_state: int

    @property
    def max_new_tokens(self) -> int:
        """The most ids a row generates, ``<eos>`` included (a video's exact length)."""
        return self.done_state

    def allowed(self, state: int) -> AllowedIds:
        return self.sets[int(self.state_set[state])]

    def advance(self, state: int, token_id: int) -> int:
        """The state after emitting ``token_id`` in ``state``; raises unless the id is allowed there."""
        if token_id not in self.allowed(state):
            raise LayoutError(f"generated id {token_id} is not allowed at step {state} of a {self.task.value} "
                              f"{self.kind} block (allowed: {self.allowed(state).ranges})")
        if token_id == self.end_id:
            return self.eos_state
        return min(state + 1, self.done_state)


@dataclass(frozen=True)
class _Span:
    name: str
    kind: str
    start: int  # content is ids[start:stop]
    stop: int | None  # None: the block is still open at the end of the ids


class TokenLayout:
    """Text tokenizer + special tokens + a video code range: ids, sequences, parsing, files.

    Make one with :meth:`build` (from a text tokenizer) or :meth:`load` (from a folder).
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        *,
        text_vocab_size: int,
        codebook_size: int,
        latent_hw: Sequence[int],
        video_tokenizer: Mapping[str, Any] | None = None,
    ):
        """Wrap ``tokenizer``: text ids below ``text_vocab_size``, the special tokens right after."""
        self.text_vocab_size = _positive_int(text_vocab_size, "text_vocab_size")
        self.codebook_size = _positive_int(codebook_size, "codebook_size")
        if len(latent_hw) != 2:
            raise LayoutError(f"latent_hw: expected (h, w), got {tuple(latent_hw)}")
        self.latent_hw = (_positive_int(latent_hw[0], "latent_hw"), _positive_int(latent_hw[1], "latent_hw"))
        self.special_ids = {name: self.text_vocab_size + i for i, name in enumerate(SPECIAL_TOKENS)}
        self.code_offset = self.text_vocab_size + len(SPECIAL_TOKENS)
        self.vocab_size = self.code_offset + self.codebook_size
        for name, expected in self.special_ids.items():
            found = tokenizer.token_to_id(special_token(name))
            if found != expected:
                raise LayoutError(
                    f"tokenizer: special token {special_token(name)} has id {found}, the layout expects {expected}"
                )
        held = tokenizer.get_vocab_size(with_added_tokens=True)
        if held != self.code_offset:
            raise LayoutError(f"tokenizer: holds {held} tokens, the layout expects {self.code_offset} (text + special)")
        self.video_tokenizer = _json_dict(video_tokenizer or {}, "video tokenizer identity")
        if self.video_tokenizer:
            self.check_video_tokenizer(self.video_tokenizer)
        tokenizer.no_padding()
        tokenizer.no_truncation()
        tokenizer.encode_special_tokens = True  # a caption spelling "<|bov|>" stays text
        self._tokenizer = tokenizer
        ids = self.special_ids
        self.bos_id, self.eos_id, self.pad_id = ids["bos"], ids["eos"], ids["pad"]
        self.bot_id, self.eot_id = ids["bot"], ids["eot"]
        self.bov_id, self.eov_id = ids["bov"], ids["eov"]
        self.boi_id, self.eoi_id = ids["boi"], ids["eoi"]

    @classmethod
    def build(
        cls,
        text_tokenizer: Tokenizer,
        *,
        codebook_size: int,
        latent_hw: Sequence[int],
        video_tokenizer: Mapping[str, Any] | None = None,
    ) -> TokenLayout:
        """A layout over ``text_tokenizer`` (left unchanged) for ``codebook_size`` codes on a ``latent_hw`` grid."""
        vocab = text_tokenizer.get_vocab(with_added_tokens=True)
        taken = sorted(set(vocab) & {special_token(name) for name in SPECIAL_TOKENS})
        if taken:
            raise LayoutError(
                f"text tokenizer already holds reelm special tokens {taken}: it is a token layout's; pass a plain "
                "text tokenizer, or the layout's folder (TokenLayout.load; 'reelm data tokenize --text-tokenizer' "
                "reuses the layout when its token_layout.json sits beside the tokenizer.json)"
            )
        if not vocab:
            raise LayoutError("text tokenizer: its vocabulary is empty")
        tokenizer = Tokenizer.from_str(text_tokenizer.to_str())
        tokenizer.add_special_tokens(
            [AddedToken(special_token(name), special=True, normalized=False) for name in SPECIAL_TOKENS]
        )
        return cls(tokenizer, text_vocab_size=max(vocab.values()) + 1, codebook_size=codebook_size,
                   latent_hw=latent_hw, video_tokenizer=video_tokenizer)

    def __repr__(self) -> str:
        return (f"TokenLayout(text_vocab_size={self.text_vocab_size}, codebook_size={self.codebook_size}, "
                f"latent_hw={self.latent_hw}, vocab_size={self.vocab_size})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TokenLayout):
            return NotImplemented
        return self.to_dict() == other.to_dict() and self._tokenizer.to_str() == other._tokenizer.to_str()

    # ---- ids

    @property
    def text_range(self) -> range:
        return range(0, self.text_vocab_size)

    @property
    def code_range(self) -> range:
        return range(self.code_offset, self.vocab_size)

    @property
    def codes_per_frame(self) -> int:
        return self.latent_hw[0] * self.latent_hw[1]

    def is_code(self, ids) -> np.ndarray:
        ids = np.asarray(ids)
        return (ids >= self.code_offset) & (ids < self.vocab_size)

    def is_text(self, ids) -> np.ndarray:
        ids = np.asarray(ids)
        return (ids >= 0) & (ids < self.text_vocab_size)

    def task_id(self, task: Task | str) -> int:
        return self.special_ids[_task(task).value]

    def token_name(self, token_id: int) -> str:
        """A readable name of one id, for messages: ``<|bov|>``, ``code 17``, ``text 42``."""
        token_id = int(token_id)
        if 0 <= token_id < self.text_vocab_size:
            return f"text {token_id}"
        if self.text_vocab_size <= token_id < self.code_offset:
            return special_token(SPECIAL_TOKENS[token_id - self.text_vocab_size])
        if self.code_offset <= token_id < self.vocab_size:
            return f"code {token_id - self.code_offset}"
        return f"id {token_id} (outside the vocabulary of {self.vocab_size})"

    # ---- text and codes

    def encode_text(self, text: str) -> np.ndarray:
        """``(n,)`` int64 text ids; special-token spellings in ``text`` stay plain text."""
        if not isinstance(text, str):
            raise LayoutError(f"text: expected a string, got {type(text).__name__}")
        return np.asarray(self._tokenizer.encode(text, add_special_tokens=False).ids, dtype=np.int64)

    def decode_text(self, ids) -> str:
        ids = self._text_ids(ids, "text ids")
        return self._tokenizer.decode(ids.tolist(), skip_special_tokens=False)

    def codes_to_ids(self, codes) -> np.ndarray:
        """A code grid ``(t, h, w)`` as ``(t*h*w,)`` LM ids, frame after frame in raster order."""
        grid = self._grid(codes, "codes")
        return rearrange(grid, "t h w -> (t h w)") + self.code_offset

    def ids_to_codes(self, ids, t: int | None = None) -> np.ndarray:
        """LM ids of whole latent frames back to the ``(t, h, w)`` code grid (``t`` checked when given)."""
        return self._codes_of(ids, "video ids", t)

    # ---- sequences

    def sequence(self, task: Task | str, *, text=None, video=None, image=None, context=None,
                 loss_on: str = "target") -> TokenSequence:
        """The full sequence of ``task`` (see the module docstring for each template).

        ``text`` is a string or text ids; ``None`` gives the empty text block (the CFG
        unconditional form) where text is a condition. ``video`` / ``image`` /
        ``context`` are code grids ``(t, h, w)``; ``image`` has ``t = 1``.
        """
        if loss_on not in LOSS_ON:
            raise LayoutError(f"loss_on {loss_on!r}: choose from {list(LOSS_ON)}")
        task = _task(task)
        inputs = {"text": text, "video": video, "image": image, "context": context}
        ids, prompt_length = self._assemble(task, inputs, with_target=True)
        loss_mask = np.zeros(len(ids), dtype=bool)
        loss_mask[prompt_length if loss_on == "target" else 1:] = True
        if loss_on == "all_but_prompt_text" and TEMPLATES[task][-1][1] != "text" and \
                any(kind == "text" for _, kind in TEMPLATES[task]):
            begin = int(np.flatnonzero(ids == self.special_ids["bot"])[0])
            end = int(np.flatnonzero(ids == self.special_ids["eot"])[0])
            loss_mask[begin + 1:end + 1] = False  # the caption's ids and <eot>; <bot> follows from the task
        return TokenSequence(ids, loss_mask, prompt_length, task)

    def prompt(self, task: Task | str, *, text=None, video=None, image=None, context=None) -> np.ndarray:
        """The prefix the model continues: the sequence without its target (same inputs, target left out)."""
        task = _task(task)
        inputs = {"text": text, "video": video, "image": image, "context": context}
        return self._assemble(task, inputs, with_target=False)[0]

    def parse(self, ids) -> ParsedSequence:
        """Split a complete sequence (pads around it ignored) into task, text and code grids."""
        ids = self.strip_pads(self._ids(ids, "sequence"))
        task, spans, end = self._walk(ids)
        template = TEMPLATES[task]
        if len(spans) < len(template) or spans[-1].stop is None:
            missing = template[len(spans) - 1] if spans and spans[-1].stop is None else template[len(spans)]
            raise LayoutError(f"sequence ({task.value}): ends inside or before its {missing[0]} block")
        if end == len(ids):
            raise LayoutError(f"sequence ({task.value}): ends before its {special_token('eos')}")
        if end != len(ids) - 1:
            raise LayoutError(f"sequence ({task.value}): {len(ids) - 1 - end} tokens after {special_token('eos')}")
        fields: dict[str, Any] = {}
        for span in spans:
            content = ids[span.start:span.stop]
            what = f"sequence ({task.value}) {span.name} block at position {span.start}"
            if span.kind == "text":
                fields["text_ids"] = self._text_ids(content, what)
                fields["text"] = self.decode_text(fields["text_ids"])
            else:
                fields[span.name] = self._codes_of(content, what, 1 if span.kind == "image" else None)
        return ParsedSequence(task, **fields)

    def allowed_next(self, prefix, *, frames: int | None = None, max_text_tokens: int | None = None) -> AllowedIds:
        """The ids that keep ``prefix`` a valid sequence: the rule of prefix-constrained decoding.

        Inside a video block: codes, and ``<eov>`` once the block holds whole latent
        frames (with ``frames``: exactly that many frames of codes, then only ``<eov>``).
        Inside an image block: one frame of codes, then ``<eoi>``. Inside a text block:
        text ids or ``<eot>`` (with ``max_text_tokens``: at most that many text ids, then
        only ``<eot>``). Between blocks: the marker the task's template puts next.
        After ``<eos>``: ``<pad>``.
        """
        ids = self.strip_pads(self._ids(prefix, "prefix"), trailing=False)
        if len(ids) == 0:
            return self._only(self.bos_id)
        if len(ids) == 1 and ids[0] == self.bos_id:
            first = self.task_id(TASKS[0])
            return AllowedIds(((first, first + len(TASKS)),))
        task, spans, end = self._walk(ids)
        template = TEMPLATES[task]
        if spans and spans[-1].stop is None:
            return self._inside(spans[-1].kind, len(ids) - spans[-1].start, frames, max_text_tokens)
        if len(spans) < len(template):
            return self._only(self.special_ids[BLOCK_MARKERS[template[len(spans)][1]][0]])
        return self._only(self.eos_id if end == len(ids) else self.pad_id)

    def generation_plan(self, prompt, *, frames: int | None = None,
                        max_text_tokens: int | None = None) -> GenerationPlan:
        """The :class:`GenerationPlan` of what follows ``prompt`` (a whole prompt, leading pads ignored).

        A video target takes exactly ``frames`` latent frames, a text target at most
        ``max_text_tokens`` text ids; in every state the plan allows what :meth:`allowed_next`
        allows for the same prefix and arguments.
        """
        ids, task, _ = self._prompt_spans(prompt)
        kind = TEMPLATES[task][-1][1]
        given = {"frames": frames, "max_text_tokens": max_text_tokens}
        needed = "frames" if kind == "video" else "max_text_tokens"
        for name, value in given.items():
            if name == needed:
                _positive_int(value, f"{task.value} prompt: {name}")
            elif value is not None:
                raise LayoutError(f"{task.value} prompt: {name} is for a {'text' if kind == 'video' else 'video'} "
                                  f"target; this prompt's target is {kind}")
        limit = frames * self.codes_per_frame if kind == "video" else max_text_tokens
        per_state = [self._inside(kind, count, frames, max_text_tokens) for count in range(limit + 1)]
        per_state += [self._only(self.eos_id), self._only(self.pad_id)]
        sets = tuple(dict.fromkeys(per_state))
        index = {allowed: i for i, allowed in enumerate(sets)}
        end_id = self.special_ids[BLOCK_MARKERS[kind][1]]
        return GenerationPlan(task, kind, sets, np.array([index[a] for a in per_state], dtype=np.int64), end_id,
                              eos_state=limit + 1, done_state=limit + 2)

    def unconditional_prompt(self, prompt) -> np.ndarray:
        """The classifier-free guidance form of ``prompt``: the same prompt with its text block emptied.

        Equal to :meth:`prompt` of the same task and inputs with ``text=None``; raises for
        prompts without a text condition (``v2t``, ``uncond``).
        """
        ids, task, spans = self._prompt_spans(prompt)
        text = [span for span in spans[:-1] if span.kind == "text"]
        if not text:
            raise LayoutError(f"{task.value} prompt: has no text condition to leave out for classifier-free guidance")
        return np.concatenate([ids[: text[0].start], ids[text[0].stop:]])

    # ---- files

    def to_dict(self) -> dict[str, Any]:
        """The content of ``token_layout.json``."""
        return {
            "layout_version": LAYOUT_VERSION,
            "text_vocab_size": self.text_vocab_size,
            "special_tokens": dict(self.special_ids),
            "code_offset": self.code_offset,
            "codebook_size": self.codebook_size,
            "vocab_size": self.vocab_size,
            "latent_hw": list(self.latent_hw),
            "video_tokenizer": dict(self.video_tokenizer),
        }

    def save(self, folder: str | Path) -> Path:
        """Write ``token_layout.json`` beside ``tokenizer.json`` + ``tokenizer_config.json``.

        The two tokenizer files are what ``PreTrainedTokenizerFast.from_pretrained`` reads.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_text_tokenizer(self._tokenizer, folder)
        save_json(folder / TOKENIZER_CONFIG_FILE, self._hf_tokenizer_config())
        save_json(folder / LAYOUT_FILE, self.to_dict())
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> TokenLayout:
        folder = Path(folder)
        path = folder / LAYOUT_FILE
        if not path.is_file():
            raise LayoutError(f"{path}: not found; {folder} is not a token layout folder")
        meta = load_json(path)
        if not isinstance(meta, dict):
            raise LayoutError(f"{path}: expected a JSON object")
        if meta.get("layout_version") != LAYOUT_VERSION:
            version = meta.get("layout_version")
            raise LayoutError(f"{path}: layout version {version!r}, this reelm reads version {LAYOUT_VERSION}")
        missing = [key for key in LAYOUT_KEYS if key not in meta]
        if missing:
            raise LayoutError(f"{path}: missing keys {missing}")
        tokenizer = load_text_tokenizer(folder / TOKENIZER_FILE)
        try:
            layout = cls(tokenizer, text_vocab_size=meta["text_vocab_size"], codebook_size=meta["codebook_size"],
                         latent_hw=meta["latent_hw"], video_tokenizer=meta["video_tokenizer"])
        except (LayoutError, TypeError) as exc:
            raise LayoutError(f"{folder}: {exc}") from None
        derived = layout.to_dict()
        for key in ("special_tokens", "code_offset", "vocab_size"):
            if meta[key] != derived[key]:
                raise LayoutError(f"{path}: {key} {meta[key]} disagrees with the layout it describes ({derived[key]})")
        return layout

    def check_video_tokenizer(self, identity: Mapping[str, Any]) -> None:
        """Raise unless codes of the video tokenizer described by ``identity`` fit this layout.

        ``identity`` must hold ``codebook_size``; ``latent_hw``, when present, must equal
        the layout's; any other key it shares with the identity recorded at build time
        (e.g. ``fingerprint``) must be equal.
        """
        given = _json_dict(identity, "video tokenizer identity")
        if "codebook_size" not in given:
            raise LayoutError(f"video tokenizer identity {sorted(given)}: has no codebook_size")
        if given["codebook_size"] != self.codebook_size:
            raise LayoutError(
                f"video tokenizer codebook size {given['codebook_size']} does not match the token layout's "
                f"{self.codebook_size}; rebuild the layout for this tokenizer"
            )
        if "latent_hw" in given and given["latent_hw"] != list(self.latent_hw):
            raise LayoutError(
                f"video tokenizer latent grid {tuple(given['latent_hw'])} does not match "
                f"the token layout's {self.latent_hw}"
            )
        for key in sorted(set(given) & set(self.video_tokenizer) - {"codebook_size", "latent_hw"}):
            if given[key] != self.video_tokenizer[key]:
                raise LayoutError(
                    f"video tokenizer {key} {given[key]!r} does not match "
                    f"the token layout's {self.video_tokenizer[key]!r}"
                )

    # ---- internals

    def _hf_tokenizer_config(self) -> dict[str, Any]:
        return {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": special_token("bos"),
            "eos_token": special_token("eos"),
            "pad_token": special_token("pad"),
            "extra_special_tokens": [special_token(n) for n in SPECIAL_TOKENS if n not in ("bos", "eos", "pad")],
            "add_bos_token": False,
            "add_eos_token": False,
            "clean_up_tokenization_spaces": False,
        }

    def _assemble(self, task: Task, inputs: dict[str, Any], *, with_target: bool) -> tuple[np.ndarray, int]:
        template = TEMPLATES[task]
        target = template[-1][0]
        takes = {name for name, _ in template} - (set() if with_target else {target})
        extra = sorted(name for name, value in inputs.items() if value is not None and name not in takes)
        if extra:
            what = "sequence" if with_target else "prompt"
            raise LayoutError(f"{task.value} {what}: unexpected {extra}; it takes {sorted(takes)}")
        pieces = [np.array([self.bos_id, self.task_id(task)], dtype=np.int64)]
        prompt_length = 0
        for name, kind in template:
            begin, end = (self.special_ids[marker] for marker in BLOCK_MARKERS[kind])
            pieces.append(np.array([begin], dtype=np.int64))
            if name == target:
                prompt_length = sum(len(piece) for piece in pieces)
                if not with_target:
                    break
            content = self._block(task, name, kind, inputs[name], is_target=name == target)
            pieces += [content, np.array([end], dtype=np.int64)]
        else:
            pieces.append(np.array([self.eos_id], dtype=np.int64))
        return np.concatenate(pieces), prompt_length

    def _block(self, task: Task, name: str, kind: str, value, *, is_target: bool) -> np.ndarray:
        if value is None and (kind != "text" or is_target):
            raise LayoutError(f"{task.value} sequence: missing {name}")
        if kind != "text":
            return self.codes_to_ids(self._grid(value, name, 1 if kind == "image" else None))
        if value is None:
            return np.zeros(0, dtype=np.int64)
        return self.encode_text(value) if isinstance(value, str) else self._text_ids(value, name)

    def _walk(self, ids: np.ndarray) -> tuple[Task, list[_Span], int]:
        """Follow ``ids`` along its task's template as far as they go.

        Returns the task, the blocks found (the last may still be open) and the position
        after them, which holds ``<eos>`` when the ids go on.
        """
        if not len(ids) or ids[0] != self.bos_id:
            found = self.token_name(ids[0]) if len(ids) else "nothing"
            raise LayoutError(f"sequence: expected {special_token('bos')} at position 0, found {found}")
        if len(ids) == 1:
            raise LayoutError(f"sequence: ends after {special_token('bos')}, before its task token")
        names = {self.special_ids[task.value]: task for task in Task}
        task = names.get(int(ids[1]))
        if task is None:
            raise LayoutError(f"sequence: expected a task token at position 1, found {self.token_name(ids[1])}")
        spans, pos = [], 2
        for name, kind in TEMPLATES[task]:
            if pos == len(ids):
                break
            begin, end = (self.special_ids[marker] for marker in BLOCK_MARKERS[kind])
            if ids[pos] != begin:
                raise LayoutError(
                    f"sequence ({task.value}): expected {self.token_name(begin)} at position {pos}, "
                    f"found {self.token_name(ids[pos])}"
                )
            stops = np.flatnonzero(ids[pos + 1:] == end)
            if not stops.size:
                spans.append(_Span(name, kind, pos + 1, None))
                return task, spans, len(ids)
            stop = pos + 1 + int(stops[0])
            spans.append(_Span(name, kind, pos + 1, stop))
            pos = stop + 1
        if pos < len(ids) and ids[pos] != self.eos_id:
            raise LayoutError(
                f"sequence ({task.value}): expected {special_token('eos')} at position {pos}, "
                f"found {self.token_name(ids[pos])}"
            )
        return task, spans, pos

    def _prompt_spans(self, prompt) -> tuple[np.ndarray, Task, list[_Span]]:
        """A whole prompt's ids (leading pads dropped), task and blocks; raises unless it ends at its target's begin."""
        ids = self.strip_pads(self._ids(prompt, "prompt"), trailing=False)
        task, spans, _ = self._walk(ids)
        template = TEMPLATES[task]
        if len(spans) != len(template) or spans[-1].stop is not None or spans[-1].start != len(ids):
            begin = special_token(BLOCK_MARKERS[template[-1][1]][0])
            raise LayoutError(f"{task.value} prompt: must end with the {begin} of its {template[-1][0]} block, "
                              f"right after its other blocks")
        return ids, task, spans

    def _inside(self, kind: str, count: int, frames: int | None, max_text_tokens: int | None = None) -> AllowedIds:
        codes = (self.code_offset, self.vocab_size)
        if kind == "text":
            if max_text_tokens is not None and count >= max_text_tokens:
                return self._only(self.eot_id)
            return AllowedIds(((0, self.text_vocab_size), (self.eot_id, self.eot_id + 1)))
        end = self.eoi_id if kind == "image" else self.eov_id
        limit = self.codes_per_frame if kind == "image" else (frames * self.codes_per_frame if frames else None)
        if limit is not None:
            return AllowedIds((codes,)) if count < limit else self._only(end)
        if count and count % self.codes_per_frame == 0:
            return AllowedIds((codes, (end, end + 1)))
        return AllowedIds((codes,))

    def _only(self, token_id: int) -> AllowedIds:
        return AllowedIds(((token_id, token_id + 1),))

    def strip_pads(self, ids, trailing: bool = True) -> np.ndarray:
        """``ids`` without the pad ids before the first other id (and, with ``trailing``, after the last)."""
        ids = np.asarray(ids, dtype=np.int64)
        kept = np.flatnonzero(ids != self.pad_id)
        if not kept.size:
            return ids[:0]
        return ids[kept[0]: kept[-1] + 1] if trailing else ids[kept[0]:]

    def _ids(self, ids, what: str) -> np.ndarray:
        array = np.asarray(ids)
        if array.size == 0:
            return np.zeros(0, dtype=np.int64)
        if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
            raise LayoutError(f"{what}: expected a 1-D array of integer ids, got {array.dtype} of shape {array.shape}")
        return array.astype(np.int64)

    def _text_ids(self, ids, what: str) -> np.ndarray:
        ids = self._ids(ids, what)
        bad = np.flatnonzero(~self.is_text(ids))
        if bad.size:
            raise LayoutError(
                f"{what}: {self.token_name(ids[bad[0]])} at index {bad[0]} is not a text id "
                f"(text is [0, {self.text_vocab_size}))"
            )
        return ids

    def _codes_of(self, ids, what: str, t: int | None) -> np.ndarray:
        ids = self._ids(ids, what)
        bad = np.flatnonzero(~self.is_code(ids))
        if bad.size:
            raise LayoutError(
                f"{what}: {self.token_name(ids[bad[0]])} at index {bad[0]} is not a video code "
                f"(codes are ids [{self.code_offset}, {self.vocab_size}))"
            )
        h, w = self.latent_hw
        if len(ids) == 0 or len(ids) % self.codes_per_frame:
            raise LayoutError(
                f"{what}: {len(ids)} codes are not whole {h}x{w} latent frames ({self.codes_per_frame} codes each)"
            )
        if t is not None and len(ids) != t * self.codes_per_frame:
            raise LayoutError(f"{what}: {len(ids) // self.codes_per_frame} latent frames, expected {t}")
        return rearrange(ids - self.code_offset, "(t h w) -> t h w", h=h, w=w)

    def _grid(self, codes, what: str, t: int | None = None) -> np.ndarray:
        grid = np.asarray(codes)
        h, w = self.latent_hw
        if grid.ndim != 3 or grid.shape[1:] != self.latent_hw or grid.shape[0] == 0:
            raise LayoutError(f"{what}: expected a (t, {h}, {w}) code grid with t >= 1, got shape {tuple(grid.shape)}")
        if t is not None and grid.shape[0] != t:
            raise LayoutError(f"{what}: expected {t} latent frame(s), got {grid.shape[0]}")
        if not np.issubdtype(grid.dtype, np.integer):
            raise LayoutError(f"{what}: codes must be integers, got {grid.dtype}")
        low, high = int(grid.min()), int(grid.max())
        if low < 0 or high >= self.codebook_size:
            bad = low if low < 0 else high
            raise LayoutError(f"{what}: code {bad} is outside the codebook [0, {self.codebook_size})")
        return grid.astype(np.int64)


def _task(task: Task | str) -> Task:
    try:
        return Task(task)
    except ValueError:
        raise LayoutError(f"unknown task {task!r}; choose from {[t.value for t in Task]}") from None


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise LayoutError(f"{what}: expected a positive integer, got {value!r}")
    return int(value)


def _json_dict(value: Mapping[str, Any], what: str) -> dict[str, Any]:
    """``value`` as plain JSON data (tuples become lists), so identities compare as they are stored."""
    if not isinstance(value, Mapping):
        raise LayoutError(f"{what}: expected a dict, got {type(value).__name__}")
    try:
        return json.loads(json.dumps(dict(value), sort_keys=True, default=_json_default))
    except (TypeError, ValueError) as exc:
        raise LayoutError(f"{what}: not JSON data ({exc})") from None


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
