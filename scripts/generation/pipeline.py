"""The generation pipeline: prompts, first frames and clips in; videos and captions out, from one model folder.

Three lines, in the shape Hugging Face ``diffusers`` users know::

    from reelm.generation import VideoPipeline
    pipe = VideoPipeline.from_pretrained("runs/lm")                  # a local run or step folder (never the Hub)
    out = pipe("a red circle moves to the left", generator=torch.Generator().manual_seed(0))
    export_to_video(out.frames[0], "circle.mp4", fps=8)            # out.frames: (B, T, H, W, 3) floats in [0, 1]

The call takes diffusers' names — ``negative_prompt``, ``generator`` (one, or one per video),
``num_videos_per_prompt``, ``num_frames``, ``guidance_scale``, ``output_type`` (``"np"``,
``"pil"``, ``"pt"``) — and returns ``.frames`` in that type (``.videos`` keeps the uint8 arrays);
``from_pretrained(..., torch_dtype=torch.bfloat16)`` and ``pipe.to("cuda")`` as there.

One :class:`VideoPipeline` does the four jobs of one pretrained model:

- text-to-video: ``pipe(prompt)`` / :meth:`VideoPipeline.text_to_video` (a list of prompts is batched);
- image-to-video: ``pipe(prompt, image=...)``: the image is encoded as the first latent frame
  and kept, the model generates the frames after it;
- continuation: ``pipe(prompt, video=...)``: the last ``context_frames`` latent frames of the
  clip are kept and extended;
- captioning: :meth:`VideoPipeline.caption`: a clip in, text out;

and stories: :meth:`VideoPipeline.story`, a timed sequence of prompts made into one video, each
segment continuing the frames before it (:mod:`reelm.generation.story_generation`).

The pipeline joins the video tokenizer (pixels <-> codes) and the LM's generation engine
(:mod:`reelm.lm.engine`: token ids in and out, KV cache, batched classifier-free guidance,
constrained decoding). Videos longer than the training clips (``num_frames``) are made by
sliding-window continuation: the last latent frames' pixels are re-encoded as the context of
the next window (so the context starts with an image latent, as in training), the model
generates the frames after it, and only the new frames are kept; each window costs the same,
whatever the length.

Follows: the pipeline objects of Hugging Face diffusers (``from_pretrained``, call with a
prompt and a generator/seed, frames out); Emu3's processor pairing a text and a visual
tokenizer; VideoPoet's task prompts and its continuation of long videos window by window.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from reelm.data.token_layout import Task, continuation_context
from reelm.data.video_read import fit_frames, frames_to_tensor, iter_frames, read_video, tensor_to_frames
from reelm.core.device import torch_threads
from reelm.core.seeds import derive_seed, text_key
from reelm.core.errors import ReelmError
from reelm.generation.model_folder import ModelFolder, lm_dtype, load_model_folder
from reelm.lm.engine import GenerationEngine, GenerationError, Progress, Request
from reelm.lm.sampling import Sampling

# Chosen on the demo's model (BENCHMARKS.md, "Sampling defaults"): guidance 2 moves 86 % of text-to-video objects the
# prompt's way against 83 % without guidance and 72 % at 3 (stronger guidance scatters where objects are); a
# temperature of 0.8 (at guidance 3) moved 74 %, no better than 1 (72 %).
DEFAULT_GUIDANCE = 2.0  # classifier-free guidance scale
DEFAULT_SAMPLING = Sampling(temperature=1.0, top_k=None, top_p=None)
DEFAULT_CAPTION_TOKENS = 48  # text ids at most in a caption
DEFAULT_BATCH = 8  # prompts per engine call
DECODE_BATCH = 8  # clips per tokenizer decode
# Token-by-token decoding of a small LM on CPUs runs on one thread: its matmuls are too small to split, and with
# two threads OpenMP's spinning made a generation eval 9x slower whenever another process used a core
# (BENCHMARKS.md, generation). None: the caller's thread count.
CPU_DECODE_THREADS = 1


class PipelineInputError(ReelmError):
    """A prompt, image, clip or setting the pipeline cannot use."""


OUTPUT_TYPES = ("np", "pil", "pt")  # diffusers' names for what .frames holds


@dataclass(frozen=True, eq=False)
class VideoPipelineOutput:
    """Generated videos, sample after sample (each prompt's ``num_samples`` together), with their tokens.

    ``frames`` is the videos in the call's ``output_type``, as diffusers returns them: ``"np"`` a
    ``(B, T, H, W, 3)`` float32 array in [0, 1], ``"pil"`` a list of lists of ``PIL.Image``,
    ``"pt"`` a ``(B, T, 3, H, W)`` float32 tensor in [0, 1]. ``videos`` holds the same frames as
    ``(T, H, W, 3)`` uint8 arrays whatever the type.
    """

    videos: list[np.ndarray]  # (T, H, W, 3) uint8 each
    codes: list[np.ndarray]  # (t, h, w) latent code grid of each video
    sequences: list[np.ndarray]  # token ids of each sample's first window: prompt + generated block
    prompts: list[str | None]  # the prompt of each sample
    info: dict = field(default_factory=dict)  # settings, model identity, token counts, timings
    frames: object = None  # the videos as output_type says (see above)


@dataclass(frozen=True, eq=False)
class CaptionOutput:
    captions: list[str]
    sequences: list[np.ndarray]  # prompt + generated text block of each
    info: dict = field(default_factory=dict)


class VideoPipeline:
    """Generation from one model folder (see the module docstring). ``step`` picks the engine's decode step,
    ``weights`` the format its decode steps read the LM's weights in (``"model"``, ``"fp16"``, ``"int8"``:
    :mod:`reelm.lm.decode_weights`)."""

    def __init__(self, model: ModelFolder, *, step: str = "auto", weights: str = "model",
                 threads: int | None = CPU_DECODE_THREADS):
        self.model = model
        self._step, self._threads = step, threads
        self.weights = weights
        self.threads = threads if model.device.type == "cpu" else None
        self.layout = model.layout
        self.tokenizer = model.video_tokenizer
        self.engine = self._engine()

    @classmethod
    def from_pretrained(cls, path: str | Path, *, video_tokenizer: str | Path | None = None, device: str = "auto",
                        clip=None, step: str = "auto", torch_dtype: torch.dtype | str | None = None,
                        weights: str = "model") -> VideoPipeline:
        """Open a run folder (its latest checkpoint) or a ``step-NNNNNN`` folder; see :func:`load_model_folder`.

        ``torch_dtype`` (``torch.bfloat16``, ``"float32"``, ...; None or ``"auto"``: bf16 on GPUs that
        support it, fp32 elsewhere) is the LM's; the video tokenizer stays in fp32. ``weights``: ``"fp16"``
        or ``"int8"`` decode from packed copies of the weights (CPUs; half or a quarter of fp32's bytes a
        token), ``"model"`` (the default) from the LM's own."""
        return cls(load_model_folder(path, video_tokenizer=video_tokenizer, device=device, clip=clip,
                                     dtype=torch_dtype), step=step, weights=weights)

    def _engine(self) -> GenerationEngine:
        try:
            return GenerationEngine(self.model.lm, self.layout, step=self._step, weights=self.weights)
        except GenerationError as exc:
            raise PipelineInputError(str(exc)) from None

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        """The LM's dtype."""
        return next(self.model.lm.parameters()).dtype

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | str | None = None) -> VideoPipeline:
        """Move the LM and the video tokenizer to ``device`` (and the LM to ``dtype``), as diffusers' ``.to``; returns self."""
        from reelm.core.device import resolve_device

        chosen = resolve_device(device) if device is not None else self.model.device
        self.model.lm.to(device=chosen, dtype=lm_dtype(dtype) if dtype is not None else None)
        self.model.video_tokenizer.to(chosen)
        self.model = dataclasses.replace(self.model, device=chosen)
        self.threads = self._threads if chosen.type == "cpu" else None
        self.engine = self._engine()  # its masks (and packed weights) live on the device
        return self

    # --- the four jobs, and stories -----------------------------------------------------------

    def __call__(self, prompt: str | Sequence[str] | None = None, *, image=None, video=None,
                 num_videos_per_prompt: int | None = None, **kwargs):
        """Text-to-video, or image-to-video with ``image``, or continuation with ``video``.

        Keywords: ``num_frames``, ``guidance_scale``, ``negative_prompt``, ``generator`` (a
        ``torch.Generator``, or a list with one per video; it wins over ``seed``), ``seed`` (an int:
        reelm's own per-sample seeding), ``num_videos_per_prompt`` (= ``num_samples``),
        ``output_type`` (``"np"``, ``"pil"``, ``"pt"``), ``sampling``, ``batch_size``, ``progress``."""
        if num_videos_per_prompt is not None:
            if kwargs.get("num_samples", num_videos_per_prompt) != num_videos_per_prompt:
                raise PipelineInputError("num_videos_per_prompt and num_samples say different things: give one")
            kwargs["num_samples"] = num_videos_per_prompt
        if image is not None and video is not None:
            raise PipelineInputError("give an image (image-to-video) or a video (continuation), not both")
        if image is not None:
            return self.image_to_video(image, prompt, **kwargs)
        if video is not None:
            return self.continue_video(video, prompt, **kwargs)
        if prompt is None:
            raise PipelineInputError("nothing to generate from: give a prompt, an image or a video")
        return self.text_to_video(prompt, **kwargs)

    def text_to_video(self, prompts: str | Sequence[str], **kwargs) -> VideoPipelineOutput:
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        return self._generate(Task.T2V, prompts, [None] * len(prompts), **kwargs)

    def image_to_video(self, image, prompt: str | None = None, **kwargs) -> VideoPipelineOutput:
        """``image``: a path or an ``(H, W, 3)`` uint8 array, resized and center-cropped to the model's size."""
        frames = self._read(image, what="image", last=1) if isinstance(image, (str, Path)) else np.asarray(image)
        codes = self.encode(self.prepare_frames(frames[-1:] if frames.ndim == 4 else frames, what="image"))
        return self._generate(Task.I2V, [prompt], [codes], **kwargs)

    def continue_video(self, video, prompt: str | None = None, *, context_frames: int | None = None,
                       **kwargs) -> VideoPipelineOutput:
        """``video``: a path (read at the model's frame rate) or ``(T, H, W, 3)`` uint8 frames.

        ``context_frames``: latent frames of the clip's end to keep and extend (default:
        :func:`reelm.data.token_layout.continuation_context`, the context the model was trained with).
        """
        k = context_frames if context_frames is not None else continuation_context(self.model.latent_frames)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < self.model.latent_frames:
            raise PipelineInputError(f"context_frames {k!r}: expected 1 .. {self.model.latent_frames - 1} latent "
                                     f"frames (the model continues clips of {self.model.latent_frames})")
        needed = self.tokenizer.pixel_frames(k)
        frames = self._read(video, what="video", last=needed) if isinstance(video, (str, Path)) else \
            np.asarray(video)[-needed:]
        frames = self.prepare_frames(frames, what=str(video) if isinstance(video, (str, Path)) else "video")
        return self._generate(Task.V2V, [prompt], [self.encode(frames)], **kwargs)

    @torch.inference_mode()
    def caption(self, videos, *, max_tokens: int = DEFAULT_CAPTION_TOKENS, seed: int | None = 0,
                sampling: Sampling | None = None, batch_size: int = DEFAULT_BATCH,
                progress: Callable[[int], None] | None = None) -> CaptionOutput:
        """Captions of clips (paths, or ``(T, H, W, 3)`` uint8 arrays); greedy unless ``sampling`` says otherwise."""
        videos = [videos] if isinstance(videos, (str, Path)) or (isinstance(videos, np.ndarray) and videos.ndim == 4) \
            else list(videos)
        sampling = sampling or Sampling(greedy=True)
        began = time.perf_counter()
        grids = [self.encode(self._clip_frames(v)) for v in videos]
        encode_s = time.perf_counter() - began
        captions, sequences, stats = [], [], []
        for start in range(0, len(grids), batch_size):
            requests = [Request(self.layout.prompt(Task.V2T, video=g), max_text_tokens=max_tokens)
                        for g in grids[start:start + batch_size]]
            with torch_threads(self.threads):
                seeds = None if seed is None else [sample_seed(seed, Task.V2T, None, start + j)
                                                    for j in range(len(requests))]
                result = self.engine.generate(requests, sampling=sampling, seed=seeds,
                                              progress=_progress_hook(progress))
            stats.append(result.stats.to_dict())
            for sample in result.samples:
                parsed = self.layout.parse(sample.sequence)
                captions.append(parsed.text)
                sequences.append(sample.sequence)
        info = {"task": Task.V2T.value, "max_tokens": max_tokens, "sampling": sampling.to_dict(), "seed": seed,
                "batch_size": batch_size, "model": self.model.identity(), "weights": self.weights,
                "tokens": sum(s["tokens"] for s in stats),
                "timings": {"encode_s": encode_s, "generate_s": sum(s["total_s"] for s in stats)}}
        return CaptionOutput(captions, sequences, info)

    def story(self, segments, *, seed: int | None = 0, guidance_scale: float = DEFAULT_GUIDANCE,
              sampling: Sampling | None = None, negative_prompt: str | None = None, image=None,
              progress: Callable[[int], None] | None = None, context: str = "pixels", candidates: int = 1,
              choose=None):
        """One video from a story: ``segments`` (a story file's path, or a list of
        :class:`reelm.generation.story.StorySegment`), each continuing the frames before it under its own prompt
        (:mod:`reelm.generation.story_generation`; ``context="codes"``: each window is given the model's own
        codes; ``candidates`` and ``choose``: each continuation window the best of N by a critic, the caller's
        function or a name from :data:`reelm.generation.story_critics.STORY_CRITICS`, e.g. ``"outline"``).
        Returns a ``StoryOutput`` (the video, each segment's frames, seed and contexts, the settings);
        :meth:`iter_story` yields it window by window instead, in flat memory."""
        from reelm.generation.story_generation import StoryOutput, StoryRecorder, story_info

        settings = dict(seed=seed, guidance_scale=guidance_scale, sampling=sampling, negative_prompt=negative_prompt,
                        image=image, context=context, candidates=candidates, choose=choose)
        recorder, frames = StoryRecorder(self.model.clip.fps, seed), []
        for piece in self.iter_story(segments, progress=progress, **settings):
            recorder.add(piece)
            frames.append(piece.frames)
        return StoryOutput(np.concatenate(frames), recorder.segments, story_info(self, **settings))

    def iter_story(self, segments, **kwargs):
        """The story's windows as :class:`reelm.generation.story_generation.StoryPiece` (see :meth:`story`)."""
        from reelm.generation.story import read_story
        from reelm.generation.story_generation import iter_story

        if isinstance(segments, (str, Path)):
            segments = read_story(segments)
        return iter_story(self, list(segments), **kwargs)

    # --- generation ------------------------------------------------------------------------------

    def continue_codes(self, codes, prompt: str | None = None, **kwargs) -> VideoPipelineOutput:
        """Continue a ``(t, h, w)`` code grid of this model's video tokenizer (``1 <= t <`` the model's latent frames)
        without decoding and re-encoding it: a story continues the model's own codes this way
        (:func:`reelm.generation.story_generation.iter_story`, ``context="codes"``)."""
        grid = np.asarray(codes)
        h, w = self.layout.latent_hw
        if grid.ndim != 3 or grid.shape[1:] != (h, w) or not 1 <= len(grid) < self.model.latent_frames \
                or not np.issubdtype(grid.dtype, np.integer):
            raise PipelineInputError(f"codes of shape {grid.shape} ({grid.dtype}): expected integer codes of shape "
                                     f"(t, {h}, {w}) with 1 <= t < {self.model.latent_frames}")
        if grid.min() < 0 or grid.max() >= self.tokenizer.codebook_size:
            raise PipelineInputError(f"codes outside the codebook [0, {self.tokenizer.codebook_size})")
        return self._generate(Task.V2V, [prompt], [grid.astype(np.int64)], **kwargs)

    @torch.inference_mode()
    def _generate(self, task: Task, prompts: list[str | None], conditions: list[np.ndarray | None], *,
                  num_frames: int | None = None, num_samples: int = 1, seed: int | None = 0,
                  guidance_scale: float = DEFAULT_GUIDANCE, sampling: Sampling | None = None,
                  batch_size: int = DEFAULT_BATCH, negative_prompt: str | Sequence[str] | None = None,
                  sample_numbers: Sequence[int] | None = None, generator=None, output_type: str = "np",
                  progress: Callable[[int], None] | None = None) -> VideoPipelineOutput:
        """``negative_prompt``: the text of guidance's other branch (one for all prompts, or one per prompt);
        ``None``: the empty text the model was trained to drop captions to.

        ``sample_numbers`` (with ``num_samples=1``): which sample of its prompt each output is, one number per
        prompt (a single prompt, image or clip is repeated for each number); sample ``n`` of a prompt is the
        same video whether it is made with ``num_samples > n`` or alone, so a batch job can make any
        (prompt, sample) on its own, e.g. the ones a killed run did not finish."""
        sampling = sampling or DEFAULT_SAMPLING
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise PipelineInputError(f"num_samples {num_samples!r}: expected a positive integer")
        if sample_numbers is not None:
            prompts, conditions, numbers = _numbered(prompts, conditions, sample_numbers, num_samples)
        else:
            numbers = [n for _ in prompts for n in range(num_samples)]
        negatives = _negatives(negative_prompt, len(prompts))
        if output_type not in OUTPUT_TYPES:
            raise PipelineInputError(f"output_type {output_type!r}: choose from {', '.join(OUTPUT_TYPES)}")
        seed, bases = generator_seeds(generator, seed, len(prompts) * num_samples)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise PipelineInputError(f"batch_size {batch_size!r}: expected a positive integer")
        for prompt in prompts:
            if prompt is not None and not isinstance(prompt, str):
                raise PipelineInputError(f"prompt {prompt!r}: expected text")
        num_frames = num_frames or self.model.clip.num_frames
        total = self._latents_for(num_frames)
        have = 0 if conditions[0] is None else len(conditions[0])
        if total <= have:
            raise PipelineInputError(f"{num_frames} frames make {total} latent frames, no more than the "
                                     f"{have} given as the condition: ask for more frames")
        window = self.model.latent_frames
        first_new = min(total, max(window, have + 1)) - have
        timings = collections.Counter()
        began = time.perf_counter()
        samples, stats = self._window(task, prompts, conditions, negatives, first_new, num_samples=num_samples,
                                      seed=seed, window=0, guidance_scale=guidance_scale, sampling=sampling,
                                      batch_size=batch_size, progress=progress,
                                      sample_numbers=numbers if sample_numbers is not None else None, bases=bases)
        grids = [codes if conditions[i] is None else np.concatenate([conditions[i], codes]) for i, codes, _ in samples]
        sequences = [sequence for _, _, sequence in samples]
        timings["generate_s"] += time.perf_counter() - began
        sample_prompts = [p for p in prompts for _ in range(num_samples)]
        decode_began = time.perf_counter()
        videos = self.decode(grids)
        timings["decode_s"] += time.perf_counter() - decode_began
        windows = 1
        while len(grids[0]) < total:
            videos, grids, more = self._slide(videos, grids, sample_prompts, total, seed, windows, guidance_scale,
                                              sampling, batch_size, progress, timings,
                                              [n for n in negatives for _ in range(num_samples)], numbers, bases)
            stats += more
            windows += 1
        videos = [v[:num_frames] for v in videos]
        info = {
            "task": task.value, "num_frames": num_frames, "latent_frames": total, "windows": windows,
            "trained_latent_frames": window, "num_samples": num_samples, "seed": seed,
            "sample_numbers": numbers, "generator": None if generator is None else
            ("one per video" if bases is not None else "one for the call"),
            "sample_seeds": [sample_seed(bases[k] if bases is not None else seed, task, p, 0 if bases else n)
                             for k, (p, n) in enumerate(zip(sample_prompts, numbers))],
            "guidance_scale": guidance_scale, "negative_prompt": negative_prompt,
            "sampling": sampling.to_dict(), "batch_size": batch_size,
            "fps": self.model.clip.fps, "model": self.model.identity(), "weights": self.weights,
            "tokens": {"generated": sum(s["tokens"] for s in stats),
                       "per_video": int(total * self.layout.codes_per_frame)},
            "engine": stats, "timings": {**timings, "total_s": time.perf_counter() - began},
        }
        return VideoPipelineOutput(videos, grids, sequences, sample_prompts, info,
                                   frames=frames_as(videos, output_type))

    def _slide(self, videos, grids, prompts, total, seed, window_index, guidance_scale, sampling, batch_size,
               progress, timings, negatives, sample_numbers, bases):
        """One more window for every sample: re-encode the end as context, generate what follows, keep the new frames."""
        window, ft = self.model.latent_frames, self.tokenizer.temporal_downsample
        k = continuation_context(window)
        new = min(window - k, total - len(grids[0]))
        began = time.perf_counter()
        contexts = [self.encode(video[-self.tokenizer.pixel_frames(k):]) for video in videos]
        timings["encode_s"] += time.perf_counter() - began
        began = time.perf_counter()
        samples, stats = self._window(Task.V2V, prompts, contexts, negatives, new, num_samples=1, seed=seed,
                                      window=window_index, guidance_scale=guidance_scale, sampling=sampling,
                                      batch_size=batch_size, progress=progress,
                                      sample_numbers=sample_numbers, bases=bases)
        window_codes = [np.concatenate([contexts[i], codes]) for i, codes, _ in samples]
        timings["generate_s"] += time.perf_counter() - began
        began = time.perf_counter()
        decoded = self.decode(window_codes)
        timings["decode_s"] += time.perf_counter() - began
        videos = [np.concatenate([video, frames[-ft * new:]]) for video, frames in zip(videos, decoded)]
        grids = [np.concatenate([grid, codes[-new:]]) for grid, codes in zip(grids, window_codes)]
        return videos, grids, stats

    def _window(self, task: Task, prompts, conditions, negatives, frames: int, *, num_samples: int, seed, window: int,
                guidance_scale: float, sampling: Sampling, batch_size: int, progress,
                sample_numbers: list[int] | None = None, bases: list[int] | None = None):
        """``frames`` new latent frames for every prompt (``num_samples`` each), in batches of ``batch_size`` prompts:
        ``(samples, engine stats)``, each sample ``(prompt index, its new codes, its sequence)``, in order.

        Each sample draws from a generator of its own, seeded by :func:`sample_seed` from the seed, the
        task, its prompt, its sample number (``sample_numbers[i]`` for prompt ``i`` when its samples were
        expanded into prompts) and the window, so it does not depend on the rest of its batch. ``bases``
        (one seed per sample, drawn from the caller's generators) replace the seed and the sample number."""
        samples, stats = [], []
        for start in range(0, len(prompts), batch_size):
            stop = start + batch_size
            numbers = [[sample_numbers[i]] if sample_numbers else list(range(num_samples))
                       for i in range(start, min(stop, len(prompts)))]
            if bases is not None:
                seeds = [sample_seed(bases[(start + j) * num_samples + m], task, prompts[start + j], 0, window)
                         for j, ns in enumerate(numbers) for m in range(len(ns))]
            else:
                seeds = None if seed is None else [sample_seed(seed, task, prompts[start + j], n, window)
                                                    for j, ns in enumerate(numbers) for n in ns]
            requests = [self._request(task, prompt, condition, frames, negative)
                        for prompt, condition, negative in zip(prompts[start:stop], conditions[start:stop],
                                                               negatives[start:stop])]
            scale = guidance_scale if any(p is not None for p in prompts[start:stop]) else 1.0
            with torch_threads(self.threads):
                result = self.engine.generate(requests, sampling=sampling, cfg_scale=scale, num_samples=num_samples,
                                              seed=seeds, progress=_progress_hook(progress))
            stats.append(result.stats.to_dict())
            for sample in result.samples:
                codes = self.layout.ids_to_codes(sample.ids[: frames * self.layout.codes_per_frame])
                samples.append((start + sample.request, codes, sample.sequence))
        return samples, stats

    def _request(self, task: Task, prompt: str | None, condition: np.ndarray | None, frames: int,
                 negative: str | None = None) -> Request:
        text = self.layout.encode_text(prompt) if prompt is not None else None
        condition_name = {Task.I2V: "image", Task.V2V: "context"}.get(task)
        inputs = {condition_name: condition} if condition_name else {}
        unconditional = None if negative is None else \
            self.layout.prompt(task, text=self.layout.encode_text(negative), **inputs)
        return Request(self.layout.prompt(task, text=text, **inputs), frames=frames,
                       unconditional_prompt=unconditional)

    # --- pixels <-> codes --------------------------------------------------------------------------

    def _latents_for(self, num_frames: int) -> int:
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
            raise PipelineInputError(f"num_frames {num_frames!r}: expected a positive integer")
        return self.tokenizer.latent_frames(num_frames)

    def prepare_frames(self, frames: np.ndarray, *, what: str = "frames") -> np.ndarray:
        """``(T, H, W, 3)`` (or one ``(H, W, 3)``) uint8 frames resized and center-cropped to the model's size."""
        return fit_frames(frames, self.model.clip.size, what=what)

    @torch.inference_mode()
    def encode(self, frames: np.ndarray) -> np.ndarray:
        """``(T, S, S, 3)`` uint8 frames at the model's size (cut to ``1 + f k``) -> their ``(t, h, w)`` codes."""
        frames = frames[: self.tokenizer.usable_frames(len(frames))]
        video = frames_to_tensor(frames)[None].to(self.model.device)  # (1, 3, T, S, S)
        return self.tokenizer.encode(video).indices[0].cpu().numpy().astype(np.int64)

    @torch.inference_mode()
    def decode(self, grids: list[np.ndarray]) -> list[np.ndarray]:
        """``(T, S, S, 3)`` uint8 frames of each ``(t, h, w)`` code grid (grids of one shape decode together)."""
        videos: list[np.ndarray | None] = [None] * len(grids)
        by_shape = collections.defaultdict(list)
        for i, grid in enumerate(grids):
            by_shape[grid.shape].append(i)
        for indices in by_shape.values():
            for start in range(0, len(indices), DECODE_BATCH):
                chunk = indices[start:start + DECODE_BATCH]
                codes = torch.as_tensor(np.stack([grids[i] for i in chunk]), device=self.model.device)
                frames = tensor_to_frames(self.tokenizer.decode_from_code_indices(codes).float().cpu())
                for i, video in zip(chunk, frames):
                    videos[i] = video
        return videos

    def _clip_frames(self, video) -> np.ndarray:
        """The first training-length window of a clip, at the model's frame rate and size."""
        clip = self.model.clip
        if isinstance(video, (str, Path)):
            return read_video(video, fps=clip.fps, num_frames=clip.num_frames, size=clip.size, crop=clip.size)
        return self.prepare_frames(np.asarray(video)[: clip.num_frames], what="video")

    def _read(self, path: str | Path, *, what: str, last: int) -> np.ndarray:
        """The last ``last`` frames of a file at the model's frame rate (streamed: the rest is never held)."""
        tail = collections.deque(iter_frames(path, fps=self.model.clip.fps), maxlen=last)
        if not tail:
            raise PipelineInputError(f"{path}: no frames to use as the {what}")
        return np.stack(tail)


def _numbered(prompts: list, conditions: list, sample_numbers, num_samples: int) -> tuple[list, list, list[int]]:
    """Prompts and conditions, one per requested sample number (a single one repeated), and the numbers."""
    numbers = list(sample_numbers)
    if num_samples != 1:
        raise PipelineInputError(f"sample_numbers with num_samples={num_samples}: give one or the other")
    if not numbers or any(isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0 for n in numbers):
        raise PipelineInputError(f"sample_numbers {sample_numbers!r}: expected non-negative integers")
    if len(prompts) == 1:
        prompts, conditions = prompts * len(numbers), conditions * len(numbers)
    if len(numbers) != len(prompts):
        raise PipelineInputError(f"sample_numbers: {len(numbers)} numbers for {len(prompts)} prompts; give one per "
                                 "prompt")
    return prompts, conditions, [int(n) for n in numbers]


def generator_seeds(generator, seed: int | None, count: int) -> tuple[int | None, list[int] | None]:
    """``(seed, per-video seeds)`` from diffusers' ``generator``: one generator gives the call's seed, a list (one
    per video, ``count`` of them) a seed per video; each draw advances its generator, as sampling from it would."""
    if generator is None:
        return seed, None
    if isinstance(generator, torch.Generator):
        return _draw(generator), None
    generators = list(generator) if isinstance(generator, (list, tuple)) else None
    if not generators or not all(isinstance(g, torch.Generator) for g in generators):
        raise PipelineInputError(f"generator: expected a torch.Generator or a list of them, got {generator!r}")
    if len(generators) != count:
        raise PipelineInputError(f"generator: {len(generators)} generators for {count} videos (prompts x "
                                 "num_videos_per_prompt); give one, or one per video")
    return seed, [_draw(g) for g in generators]


def _draw(generator: torch.Generator) -> int:
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())


def frames_as(videos: list[np.ndarray], output_type: str):
    """The uint8 ``(T, H, W, 3)`` videos as diffusers' ``output_type`` returns them (see :class:`VideoPipelineOutput`)."""
    if output_type == "pil":
        from PIL import Image

        return [[Image.fromarray(frame) for frame in video] for video in videos]
    stacked = np.stack(videos).astype(np.float32) / 255.0  # (B, T, H, W, 3)
    if output_type == "pt":
        return torch.from_numpy(stacked).permute(0, 1, 4, 2, 3).contiguous()  # (B, T, 3, H, W)
    return stacked


def _negatives(negative_prompt, count: int) -> list[str | None]:
    """One negative prompt (or None) per prompt."""
    if negative_prompt is None or isinstance(negative_prompt, str):
        return [negative_prompt] * count
    negatives = list(negative_prompt)
    if len(negatives) != count or not all(n is None or isinstance(n, str) for n in negatives):
        raise PipelineInputError(f"negative_prompt: expected one text, or one per prompt ({count}), "
                                 f"got {negative_prompt!r}")
    return negatives


def sample_seed(seed: int | None, task: Task, prompt: str | None, sample: int, window: int = 0) -> int | None:
    """The seed of one sample's generator in one window: from the call's seed, the task, the prompt's text and
    the sample's number, so the same (seed, prompt, sample) gives the same video alone or in any batch."""
    if seed is None:
        return None
    return derive_seed(seed, text_key(f"{task.value}:{prompt or ''}"), sample, window)


def _progress_hook(progress: Callable[[int], None] | None):
    """The engine's per-step callback as ``progress(ids_generated_this_step)`` (one per row still generating)."""
    if progress is None:
        return None

    def hook(state: Progress) -> None:
        progress(state.rows)

    return hook
