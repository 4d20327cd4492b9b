"""A story made into one video: each segment continues the frames before it under its own prompt.

:func:`iter_story` walks a story's planned segments (:func:`reelm.generation.story.plan_segments`)
window by window. The first window is text-to-video (or image-to-video from a first frame); every
later one is a continuation: the last latent frames made so far are re-encoded as its context (as
the pipeline's own sliding windows do, so the context starts with an image latent, as in
training) and the model generates what follows under the prompt of the segment it falls in, with
guidance on that prompt. A boundary between segments is only a change of prompt: the objects in
the context carry over unless the new prompt changes them.

With ``context="codes"`` a window is given the model's own codes instead, all but the context's
first latent frame (which a causal tokenizer encodes as an image, so it is the one re-encoded
from the decoded frame): no decode-and-encode round trip between windows. On the demo
trained with 600 stories it follows more of the segments' directions (BENCHMARKS.md, "Training for
stories").

With ``context="anchor"`` a window's context starts with the story's first frame (an identity
anchor: its image latent) in place of the first of its last frames, the rest as with ``pixels``.
A model learns to use it from anchored training stories (``reelm data tokenize
--story-anchor-windows``); BENCHMARKS.md, "Where the missing continuity is lost", says what it keeps.

With ``candidates=N`` (and ``choose``) every continuation window is sampled ``N`` times in one batch and
``choose`` picks the one kept from a :class:`WindowCandidates` (the frames before, the story's first frame,
and each candidate's new frames and codes): a critic of the user's own, or the name of one in
:mod:`reelm.generation.story_critics` (``"outline"``: the object keeps its outline, for plain-background
scenes such as the synthetic world's). Sample 0 is the window ``candidates=1`` makes. BENCHMARKS.md, "Best
of N windows", compares the critics tried (``scripts/bench/bench_story_rerank.py``).

It yields a :class:`StoryPiece` for each window, holding only that window's new frames, and keeps
only the context's frames between windows, so memory stays flat in the story's length.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from reelm.core.seeds import derive_seed, text_key
from reelm.data.token_layout import continuation_context
from reelm.generation.story import STORY_CONTEXTS, PlannedSegment, StorySegment, plan_segments


@dataclass(frozen=True, eq=False)
class StoryPiece:
    """One window of a story: its new frames, the segment they belong to, and what the model was given."""

    segment: PlannedSegment
    frames: np.ndarray  # (t, H, W, 3) uint8: the window's new frames, in story order
    start: int  # the story frame the new frames start at
    window: int  # the window's number within its segment
    seed: int | None
    task: str  # "t2v", "i2v" or "v2v"
    context: dict | None  # the story frames the window's context covers (and how many of its latent frames were
    # the model's own codes, "own_codes"; with candidates, which was kept, "candidate": [i, N]), None for the first
    seconds: float
    tokens: int

    @property
    def last(self) -> bool:
        """Whether this window ends its segment."""
        return self.start + len(self.frames) >= self.segment.end


@dataclass(frozen=True, eq=False)
class StoryOutput:
    """A whole story in memory (:meth:`reelm.generation.VideoPipeline.story`); the CLI streams it instead."""

    video: np.ndarray  # (T, H, W, 3) uint8
    segments: list[dict]  # each segment's bookkeeping, as the sidecar records it
    info: dict = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class WindowCandidates:
    """A continuation window's samples, for ``iter_story``'s ``choose``: it returns the index of the one to keep."""

    prompt: str  # the segment's prompt
    before: np.ndarray  # (t, H, W, 3) uint8: the story's last frames made so far (at least the context's)
    frames: list[np.ndarray]  # each candidate's new frames, (t', H, W, 3) uint8
    codes: list[np.ndarray]  # each candidate's window as a code grid: the context's latent frames, then the new
    context_latent_frames: int  # how many of ``codes``' latent frames are the context
    first: np.ndarray | None = None  # (H, W, 3) uint8: the story's first frame, a reference for what it showed


def segment_seed(seed: int | None, index: int) -> int | None:
    """Segment ``index``'s seed, from the story's: the same story and seed give the same video."""
    return None if seed is None else derive_seed(seed, text_key("story"), index)


def iter_story(pipe, segments: list[StorySegment], *, seed: int | None = 0, guidance_scale: float | None = None,
               sampling=None, negative_prompt: str | None = None, image=None,
               progress: Callable[[int], None] | None = None, context: str = "pixels", candidates: int = 1,
               choose: Callable[[WindowCandidates], int] | None = None) -> Iterator[StoryPiece]:
    """The story's windows, in order (see the module docstring). ``image``: the story's first frame (a path or an
    ``(H, W, 3)`` uint8 array): the first window is then image-to-video. ``candidates`` / ``choose``: best of N
    continuation windows, by the caller's critic."""
    from reelm.generation.pipeline import DEFAULT_GUIDANCE, PipelineInputError

    if context not in STORY_CONTEXTS:
        raise PipelineInputError(f"story context {context!r}: choose from {', '.join(STORY_CONTEXTS)}")
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1:
        raise PipelineInputError(f"candidates {candidates!r}: expected a positive integer")
    if candidates > 1 and choose is None:
        raise PipelineInputError(f"candidates={candidates} needs a choose function to pick each window's")
    if isinstance(choose, str):
        from reelm.generation.story_critics import STORY_CRITICS

        if choose not in STORY_CRITICS:
            raise PipelineInputError(f"choose {choose!r}: give a function, or one of {', '.join(STORY_CRITICS)}")
        choose = STORY_CRITICS[choose]
    tokenizer = pipe.tokenizer
    planned = plan_segments(segments, pipe.model.clip.fps, tokenizer.temporal_downsample)
    window_latents = pipe.model.latent_frames
    k = continuation_context(window_latents)
    settings = dict(guidance_scale=DEFAULT_GUIDANCE if guidance_scale is None else guidance_scale,
                    sampling=sampling, negative_prompt=negative_prompt, progress=progress)
    tail: np.ndarray | None = None  # the last frames made, as many as a context needs
    codes: np.ndarray | None = None  # the last latent frames the model generated (context="codes")
    first: np.ndarray | None = None  # the story's first frame (context="anchor")
    made = 0  # story frames made so far
    for segment in planned:
        remaining, window = segment.latent_frames, 0
        base = segment_seed(seed, segment.index)
        while remaining:
            chunk_seed = None if base is None else derive_seed(base, window)
            prompt = segment.segment.prompt
            began = time.perf_counter()
            if tail is None:
                new = min(remaining, window_latents)
                frames = tokenizer.pixel_frames(new)
                if image is not None:
                    out = pipe.image_to_video(image, prompt, num_frames=frames, seed=chunk_seed, **settings)
                else:
                    out = pipe.text_to_video(prompt, num_frames=frames, seed=chunk_seed, **settings)
                task, given, video, pick = out.info["task"], None, out.videos[0], 0  # no candidates
            else:
                have = min(k, tokenizer.latent_frames(len(tail)))
                context_frames = tail[-tokenizer.pixel_frames(have):]
                anchored = context == "anchor" and have > 1
                if anchored:  # the story's first frame in place of the context's first (its image latent)
                    context_frames = np.concatenate([first, context_frames[1:]])
                new = min(remaining, window_latents - have)
                own = have - 1 if context == "codes" else 0  # latent frames given as the model's own codes
                if own:
                    grid = np.concatenate([pipe.encode(context_frames[:1]), codes[-own:]])
                    out = pipe.continue_codes(grid, prompt, num_frames=tokenizer.pixel_frames(have + new),
                                              seed=chunk_seed, num_samples=candidates, **settings)
                else:
                    out = pipe.continue_video(context_frames, prompt, context_frames=have,
                                              num_frames=tokenizer.pixel_frames(have + new), seed=chunk_seed,
                                              num_samples=candidates, **settings)
                task = out.info["task"]
                made_frames = [v[len(context_frames):] for v in out.videos]
                pick = 0 if candidates == 1 else _chosen(choose, WindowCandidates(
                    prompt, tail, made_frames, list(out.codes), have, first[0]), candidates)
                recent = len(context_frames) - 1 if anchored else len(context_frames)  # the story's last frames given
                given = {"latent_frames": have, "frames": [made - recent, made],
                         **({"own_codes": own} if own else {}), **({"anchor_frame": 0} if anchored else {}),
                         **({"candidate": [pick, candidates]} if candidates > 1 else {})}
                video = made_frames[pick]
            codes = out.codes[pick]
            first = video[:1] if first is None else first
            piece = StoryPiece(segment, video, made, window, chunk_seed, task, given,
                               time.perf_counter() - began, int(out.info["tokens"]["generated"]))
            yield piece
            made += len(video)
            keep = tokenizer.pixel_frames(k)
            tail = video[-keep:] if tail is None else np.concatenate([tail, video])[-keep:]
            remaining -= new
            window += 1


def _chosen(choose: Callable[[WindowCandidates], int], window: WindowCandidates, candidates: int) -> int:
    from reelm.generation.pipeline import PipelineInputError

    pick = choose(window)
    if isinstance(pick, bool) or not isinstance(pick, (int, np.integer)) or not 0 <= pick < candidates:
        raise PipelineInputError(f"choose returned {pick!r}: expected a candidate's index, 0 .. {candidates - 1}")
    return int(pick)


class StoryRecorder:
    """Each segment's bookkeeping from the pieces as they pass: frames, seconds, seed, its windows' contexts."""

    def __init__(self, fps: float, seed: int | None):
        self.fps, self.seed = fps, seed
        self.segments: list[dict] = []

    def add(self, piece: StoryPiece) -> None:
        segment = piece.segment
        if piece.window == 0:
            self.segments.append({
                "index": segment.index, "prompt": segment.segment.prompt, "requested": segment.segment.requested(),
                "start_frame": segment.start, "end_frame": segment.end, "frames": segment.frames,
                "start_s": round(segment.start / self.fps, 4), "seconds": round(segment.frames / self.fps, 4),
                "latent_frames": segment.latent_frames, "seed": segment_seed(self.seed, segment.index),
                "windows": [], "tokens": 0, "generate_s": 0.0})
        record = self.segments[-1]
        record["windows"].append({"task": piece.task, "frames": [piece.start, piece.start + len(piece.frames)],
                                  "seed": piece.seed, "context": piece.context})
        record["tokens"] += piece.tokens
        record["generate_s"] = round(record["generate_s"] + piece.seconds, 3)


def story_info(pipe, *, seed, guidance_scale, sampling, negative_prompt, image, context: str = "pixels",
               candidates: int = 1, choose=None) -> dict:
    """The settings a story sidecar records beside its segments."""
    from reelm.generation.pipeline import DEFAULT_GUIDANCE, DEFAULT_SAMPLING

    return {"task": "story", "seed": seed, "guidance_scale": DEFAULT_GUIDANCE if guidance_scale is None else
            guidance_scale, "sampling": (sampling or DEFAULT_SAMPLING).to_dict(), "negative_prompt": negative_prompt,
            "image": str(image) if isinstance(image, (str, Path)) else (None if image is None else "an array"), "fps": pipe.model.clip.fps, "trained_latent_frames": pipe.model.latent_frames,
            "context_latent_frames": continuation_context(pipe.model.latent_frames), "context": context,
            **({"candidates": candidates, "choose": choose if isinstance(choose, str) else
                getattr(choose, "__name__", repr(choose))} if candidates > 1 else {}),
            "model": pipe.model.identity(), "weights": pipe.weights}
