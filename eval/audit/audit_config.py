"""The audit's settings: one small config per dimension, each threshold with the reason for its default.

Every threshold can be set with ``--set DIMENSION.KEY=VALUE`` or a config file
(``reelm data audit --config audit.yaml``), and every record says which values were used.
``drop`` says whether failing the dimension keeps a clip out of the cleaned manifest; a
dimension that does not drop is still measured, reported and flagged. Values are on the
0-255 scale of 8-bit luma unless said otherwise, measured on frames whose shorter side is at
most :attr:`AuditConfig.analysis_size`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reelm.data.clip_sampling import ClipSpec
from reelm.data.sources import SourceOptions
from reelm.data.synthetic.world import WorldOptions


@dataclass(kw_only=True)
class SpecCheck:
    """Duration, frame rate and resolution against the clip spec the next stage cuts (``--num-frames``, ``--fps``,
    ``--size``): a clip shorter than one window, slower than the spec's rate (its frames would repeat) or smaller
    than its side (it would be upscaled) cannot give a clean clip. ``min_fps_share``: the share of the spec's rate a
    clip may fall to (0.95 lets 29.97 stand for 30)."""

    drop: bool = True
    min_fps_share: float = 0.95


@dataclass(kw_only=True)
class FrozenCheck:
    """Frozen segments: a run of frames that repeat (no 8 x 8 cell's mean |frame difference| reaches
    ``max_change``) lasting at least ``min_seconds``, in a clip that moves elsewhere (a shot between cuts that
    does not move at all is a still shot, not a stall). 2 levels is above what an
    encoder's requantization moves in a repeated frame (up to 1.1 measured on H.264 at CRF 18) and far under the
    edge of any moving object (20-60); 0.3 s is where a viewer sees a stall. ``max_share``: a clip may hold that
    share of frozen frames before it fails."""

    drop: bool = True
    max_change: float = 2.0
    min_seconds: float = 0.3
    max_share: float = 0.0


@dataclass(kw_only=True)
class StaticCheck:
    """Still clips: no 8 x 8 cell of any pair of frames changes by ``min_motion`` (mean |frame difference|), the
    frozen check's level. Flagged, not dropped, by default: a still scene can be what the caption describes
    ("... stays still"); a slideshow set drops it. The first pair of frames counts as motion only from
    ``first_pair_motion``: an encoder's first P-frame re-quantizes the keyframe, which moved a still clip's
    bright objects by 2.5-5.2 levels on H.264 at CRF 18 (the demo world's still squares), where a moving edge
    moves 20-60; without it, such a still clip reads as moving once and then frozen."""

    drop: bool = False
    min_motion: float = 2.0
    first_pair_motion: float = 6.0


@dataclass(kw_only=True)
class ExposureCheck:
    """Black, white and faded frames: frames whose widest colour channel spans less than ``min_range`` levels
    (1st to 99th percentile), black when their mean is below ``black_level``, white above ``white_level``, faded between.
    16 and 235 are the limits of video range; a frame spanning under 20 levels shows almost nothing (a dark
    scene with one lit object spans far more). ``max_share``: the share of such frames a clip may hold (one
    frame of fade in ten passes)."""

    drop: bool = True
    black_level: float = 16.0
    white_level: float = 235.0
    min_range: float = 20.0
    max_share: float = 0.1


@dataclass(kw_only=True)
class FlickerCheck:
    """Flicker: how far the frame's common brightness change reverses from one frame to the next (the median
    luma change of its 8 x 8 cells, so moving objects are set aside; a fade changes it steadily, flicker flips
    it). 2 levels is where a flat wall visibly pulses."""

    drop: bool = True
    max_flicker: float = 2.0


@dataclass(kw_only=True)
class BlurCheck:
    """Blur: how soft the clip's steepest edges are (:func:`reelm.eval.audit.signals.blur_metric`, 0 sharp to 1
    no edges), the median over its sampled frames. On 200 clean world clips (64 x 64, H.264): median 0.07, 95 %
    under 0.38, 99 % under 0.48, the softest 0.60 (a blue object on a mottled grey wall of nearly its luma); a
    Gaussian blur of 0.8 pixel gives a median of 0.56, 1.9 pixels 0.68. ``max_blur`` 0.5 is an edge spread over
    more than about two pixels at the analysis size."""

    drop: bool = True
    max_blur: float = 0.5


@dataclass(kw_only=True)
class CutCheck:
    """Scene cuts inside a clip: a frame pair whose change (half the colour-histogram distance plus half the
    mean pixel change over 64 levels) is at least ``min_score`` and ``min_ratio`` times the clip's usual change
    nearby, where the frames on either side of it differ as much (so a one-frame flash is not a cut). The audit
    suggests splitting the clip there; ``drop`` keeps the whole clip out of the cleaned manifest."""

    drop: bool = True
    min_score: float = 0.1
    min_ratio: float = 3.0


@dataclass(kw_only=True)
class BarsCheck:
    """Letterbox and pillarbox bars: rows (columns) at both edges of the frame that are dark (luma at most
    ``max_level``) and flat in every frame, next to content, the two bars within a factor of 2 of each other
    (a dark stripe at one edge is scenery); they fail past ``max_share`` of the side. Bars under 3 % are
    overscan; 24 levels allows for a codec's ringing."""

    drop: bool = True
    max_level: float = 24.0
    max_share: float = 0.03


@dataclass(kw_only=True)
class DuplicateCheck:
    """Near-duplicates across the dataset: clips whose sampled frames' 64-bit perceptual hashes differ by at most
    ``max_bits`` on average and whose 8 x 8 colour thumbnails differ by at most ``max_color`` levels (the hash is
    grey, the thumbnail tells a red clip from a blue one). The first clip of a group is kept, the rest dropped.
    A re-encode flips 0-4 bits; different clips differ by about 20."""

    drop: bool = True
    max_bits: float = 6.0
    max_color: float = 8.0
    frames: int = 5  # frames sampled evenly from each clip


@dataclass(kw_only=True)
class CaptionCheck:
    """Caption-clip agreement. With local CLIP weights (``--clip-model``): the cosine similarity of the caption to
    the clip's sampled frames, at least ``min_clip_similarity`` (CLIP ViT-B/32 gives matching captions about 0.3,
    unrelated ones under 0.2). Without them, captions in the synthetic world's vocabulary are checked by reading
    the clip (:mod:`reelm.eval.adherence`): at least ``min_read_accuracy`` of the attributes the caption names must
    be what the frames show. Other captions are not checked (``not applicable``)."""

    drop: bool = True
    min_read_accuracy: float = 0.5
    min_clip_similarity: float = 0.2


@dataclass(kw_only=True)
class AuditConfig:
    clip: ClipSpec = field(default_factory=ClipSpec)  # what the next stage cuts: num_frames, fps, size
    spec: SpecCheck = field(default_factory=SpecCheck)
    frozen: FrozenCheck = field(default_factory=FrozenCheck)
    static: StaticCheck = field(default_factory=StaticCheck)
    exposure: ExposureCheck = field(default_factory=ExposureCheck)
    flicker: FlickerCheck = field(default_factory=FlickerCheck)
    blur: BlurCheck = field(default_factory=BlurCheck)
    cut: CutCheck = field(default_factory=CutCheck)
    bars: BarsCheck = field(default_factory=BarsCheck)
    duplicate: DuplicateCheck = field(default_factory=DuplicateCheck)
    caption: CaptionCheck = field(default_factory=CaptionCheck)
    analysis_size: int = 128  # frames are measured with their shorter side at most this (flat cost per frame)
    blur_per_second: float = 4.0  # frames a second the blur metric samples (every frame of short clips)
    num_clips: int | None = None  # synthetic clips (with data "synthetic")
    world: WorldOptions = field(default_factory=WorldOptions)
    seed: int = 0
    source: SourceOptions = field(default_factory=SourceOptions)


DIMENSIONS = ("decode", "spec", "frozen", "static", "exposure", "flicker", "blur", "cut", "bars", "duplicate",
              "caption")
