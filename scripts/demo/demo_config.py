"""What ``reelm demo`` does at each stage, and how its steps scale with the time budget.

The training steps are the ones measured to fit the whole pipeline into 15 minutes on the
reference 2-core CPU without a GPU (13.4 minutes from a fresh clone on a 2-core Xeon with AMX
before the training stories were added, BENCHMARKS.md "Prompts followed: the time saved, spent on
steps"): 64 x 64 clips of 9 frames at 8 fps (3 latent frames of 8 x 8 codes) of the demo's world
(:func:`demo_world`), 300 training stories after its 4,000 clips, the ``tiny`` video tokenizer and
LM (with video positions, loss on every token but the text prompts', captions weighted 3, no
unconditional task), both trained in bf16 where the CPU multiplies bf16 natively (``precision=auto``; the reference machine has AMX) and the LM's
layers compiled: on a CPU without native bf16 the same steps take about 1.5x as long (use
``--budget-minutes`` to fit a budget there).
``--budget-minutes B`` scales the two training stages' steps (and the training set) by
``B / 15``; everything else keeps its size, so a small budget is a quick smoke run and a
larger one buys better models.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from reelm.data.clip_sampling import ClipSpec
from reelm.data.lm_data import MixtureConfig
from reelm.data.synthetic.world import WorldOptions
from reelm.lm.model import LMConfig, preset as lm_preset
from reelm.lm.train import LMTrainConfig
from reelm.tokenizer.model import PRESETS as TOKENIZER_PRESETS, TokenizerConfig
from reelm.tokenizer.train import TokenizerTrainConfig, training_preset

REFERENCE_BUDGET = 15.0  # minutes the default steps are measured for
MIN_STEPS = 4  # the least training a budget scales down to
MIN_CLIPS = 16


def demo_world() -> WorldOptions:
    """The demo's world: one large object (circle, square or triangle, any of the 8 colors) on a plain background,
    moving left, right, up or down at one speed (1 latent cell a latent frame) or staying still, starting in one
    central region whatever its motion. Why, by measurement: BENCHMARKS.md ("Prompts followed")."""
    return WorldOptions(max_objects=1, textured_backgrounds=False, shapes=("circle", "square", "triangle"),
                        sizes=("large",), motions=("left", "right", "up", "down", "static"), speeds=("slow",),
                        start_positions="independent")


def demo_tokenizer() -> TokenizerConfig:
    """The demo's video tokenizer: the ``tiny`` preset."""
    return TOKENIZER_PRESETS["tiny"]()


def demo_tokenizer_training() -> TokenizerTrainConfig:
    """How the demo trains it (its clip, world and seed come from :class:`DemoConfig`)."""
    return dataclasses.replace(training_preset("tiny"), steps=900, batch_size=8, checkpoint_every=50)


def demo_lm() -> LMConfig:
    """The demo's LM: ``tiny`` with learned video positions (BENCHMARKS.md, "Prompts followed")."""
    return dataclasses.replace(lm_preset("tiny"), video_positions=True)


def demo_lm_training() -> LMTrainConfig:
    """How the demo trains it: loss on every token but the text prompts' (captions are learned from video-to-text
    alone, so the captioner does not echo the caption prior: BENCHMARKS.md, "Captions, a third pass"), the
    captions' loss weighted 3, no unconditional task, ZeRO stage 0 (one process has nothing to shard;
    BENCHMARKS.md, "DeepSpeed in bf16 against the bare loop"), 2,800 steps: the time one-document rows and fp32
    attention saved (BENCHMARKS.md, "Prompts followed: the time saved, spent on steps") (its seed comes from
    :class:`DemoConfig`)."""
    return LMTrainConfig(steps=2800, block_size=512, micro_batch_size=8, lr=2e-3, warmup_steps=30,
                         checkpoint_every=50, val_every=100, log_every=10, compile=True, zero_stage=0,
                         mixture=MixtureConfig(loss_on="all_but_prompt_text", uncond=0.0, caption_weight=3.0))


@dataclass(kw_only=True)
class DemoConfig:
    # the world and the clips
    clip: ClipSpec = field(default_factory=lambda: ClipSpec(num_frames=9, fps=8.0, size=64))
    world: WorldOptions = field(default_factory=lambda: demo_world())
    seed: int = 0
    heldout_clips: int = 48  # rendered to MP4 per held-out set (seen and held-out combinations)
    # the video tokenizer
    tokenizer: TokenizerConfig = field(default_factory=demo_tokenizer)
    tokenizer_train: TokenizerTrainConfig = field(default_factory=demo_tokenizer_training)
    tokenizer_eval_clips: int = 48
    # text tokenizer and shards
    train_clips: int = 4000
    text_vocab_size: int = 512
    chunk_rows: int = 500
    story_clips: int = 300  # training stories after the training clips (reelm.data.sources.StoryRows): 300 keep every
    # other target, 600 do not (BENCHMARKS.md, "Training for stories")
    # the LM
    lm: LMConfig = field(default_factory=demo_lm)
    lm_train: LMTrainConfig = field(default_factory=demo_lm_training)
    # generation and eval
    eval_prompts: int = 48  # per group: seen and held-out combinations
    eval_samples: int = 2
    image_to_video: int = 32
    continuation: int = 32
    captions: int = 32
    binding_clips: int = 96  # the prompt-binding diagnostic's val clips (reelm.eval.prompt_binding)
    guidance_scale: float | None = None  # None: the pipeline's default
    budget_minutes: float = REFERENCE_BUDGET

    def scaled(self, budget_minutes: float) -> DemoConfig:
        """These settings with the training steps and the training set scaled to ``budget_minutes``."""
        factor = budget_minutes / REFERENCE_BUDGET
        return dataclasses.replace(
            self, budget_minutes=budget_minutes,
            tokenizer_train=dataclasses.replace(self.tokenizer_train,
                                                steps=max(MIN_STEPS, round(self.tokenizer_train.steps * factor))),
            lm_train=dataclasses.replace(self.lm_train, steps=max(MIN_STEPS, round(self.lm_train.steps * factor))),
            train_clips=max(MIN_CLIPS, round(self.train_clips * min(1.0, factor))),
            story_clips=round(self.story_clips * min(1.0, factor)),
        )
