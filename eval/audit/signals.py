"""Per-frame signals of one clip, gathered as its frames stream past: the audit's raw measurements.

:class:`FrameSignals` takes ``(H, W, 3)`` uint8 frames one at a time (already at the audit's
analysis size) and keeps a few numbers per frame and a few arrays per row and column, never
the frames: memory is flat in the clip's length but for those scalars. What it keeps:

- luma mean and colour range (the widest channel's 0.5th to 99.5th percentile) per frame (black, white,
  faded frames: a red object on a grey wall of the same luma still shows);
- per frame pair: the mean |RGB difference| of its most-changed 8 x 8 cell (motion, frozen runs: a
  small object moving on a still wall counts, and a blue one on a grey wall of the same luma), the common brightness
  change (the median change of 8 x 8 cell means: flicker), and a cut score (half the colour-
  histogram distance plus half the mean RGB change over 64 levels, and the histogram part alone),
  with the score from the frame before to the frame after (a one-frame flash is not a cut);
- how soft the steepest edges are (:func:`blur_metric`) on frames sampled ``blur_per_second`` a second;
- per row and column, the brightest mean and largest spread over time, and how often the row
  shows content (bars);
- a 64-bit DCT perceptual hash and an 8 x 8 colour thumbnail of frames sampled every
  ``hash_every`` frames, thinned by half whenever more than ``MAX_HASHES`` pile up.

Follows: Marziliano, Dufaux, Winkler & Ebrahimi (2002), "A no-reference perceptual blur metric" (blur as
the width of edges, here as the steepness of each edge against its span); Zauner (2010) pHash; PySceneDetect's
content detector (histogram and pixel change with an adaptive threshold).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.fft import dctn
from scipy.ndimage import maximum_filter, minimum_filter, zoom

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
GRID = 8  # cells a side for the common brightness change
HIST_BINS = 16
EDGE_WINDOW, EDGE_RANGE, MIN_EDGE_PIXELS = 5, 10.0, 8  # what counts as an edge for the blur measure
BLANK_RANGE = 20.0  # a frame spanning fewer colour levels shows nothing to be sharp (exposure's default)
HASH_SIDE, HASH_BITS_SIDE = 32, 8
MAX_HASHES = 64
CONTENT_MARGIN = 8.0  # a pixel this far above the bar level shows content


def luma(frame: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 -> ``(H, W)`` float32 luma (BT.601)."""
    return frame.astype(np.float32) @ LUMA


def blur_metric(gray: np.ndarray) -> float | None:
    """How soft a ``(H, W)`` luma frame's edges are, 0 (every edge steps between two pixels) to 1 (no edges left).

    At each edge pixel (its 5 x 5 neighbourhood spans at least ``EDGE_RANGE`` levels) the largest step to a
    neighbour is divided by that span: a sharp edge makes its whole step at once (ratio 1), a blurred one spreads
    it over several pixels (Gaussian blur of sigma s: about ``1 / (2.5 s)``). The value is one minus the 95th
    percentile of the ratios, the frame's steepest edges, so flat regions, textures and how many edges there are
    do not count. Luma only: a codec keeps it at full resolution, while its half-resolution colour makes false
    steps. ``None`` for a frame with no edge at all.
    """
    step = np.zeros_like(gray)
    step[:, :-1] = np.abs(np.diff(gray, axis=1))
    step[:-1, :] = np.maximum(step[:-1, :], np.abs(np.diff(gray, axis=0)))
    span = maximum_filter(gray, EDGE_WINDOW) - minimum_filter(gray, EDGE_WINDOW)
    edges = span >= EDGE_RANGE
    if edges.sum() < MIN_EDGE_PIXELS:
        return None
    return float(1.0 - np.percentile(step[edges] / span[edges], 95))


def perceptual_hash(gray: np.ndarray) -> int:
    """The 64-bit DCT hash of a luma frame: signs of its 8 x 8 lowest frequencies (but DC) against their median."""
    h, w = gray.shape
    small = zoom(gray, (HASH_SIDE / h, HASH_SIDE / w), order=1)[:HASH_SIDE, :HASH_SIDE]
    low = dctn(small, norm="ortho")[:HASH_BITS_SIDE, :HASH_BITS_SIDE].ravel()
    bits = low > np.median(low[1:])
    return int(sum(1 << i for i, bit in enumerate(bits) if bit))


def thumbnail(frame: np.ndarray) -> np.ndarray:
    """An 8 x 8 colour thumbnail ``(8, 8, 3)`` uint8 (block means)."""
    h, w = frame.shape[:2]
    ys = np.linspace(0, h, 9).astype(int)
    xs = np.linspace(0, w, 9).astype(int)
    cells = np.add.reduceat(np.add.reduceat(frame.astype(np.float32), ys[:-1], axis=0), xs[:-1], axis=1)
    counts = np.outer(np.diff(ys), np.diff(xs))[..., None]
    return np.rint(cells / counts).astype(np.uint8)


def _histogram(frame: np.ndarray) -> np.ndarray:
    """Per-channel histograms ``(3, HIST_BINS)``, each summing to 1."""
    bins = (frame.reshape(-1, 3) // (256 // HIST_BINS)).astype(np.int64)
    hist = np.stack([np.bincount(bins[:, c], minlength=HIST_BINS) for c in range(3)]).astype(np.float32)
    return hist / hist.sum(axis=1, keepdims=True)


def _cells(gray: np.ndarray) -> np.ndarray:
    h, w = gray.shape
    ys = np.linspace(0, h, GRID + 1).astype(int)
    xs = np.linspace(0, w, GRID + 1).astype(int)
    sums = np.add.reduceat(np.add.reduceat(gray, ys[:-1], axis=0), xs[:-1], axis=1)
    return sums / np.outer(np.maximum(np.diff(ys), 1), np.maximum(np.diff(xs), 1))


def _colour_change(a: tuple, b: tuple) -> float:
    """The colour-histogram distance (0-1) between two frames' (histogram, RGB) summaries."""
    return 0.5 * float(np.abs(a[0] - b[0]).sum(axis=1).mean())


def _change(a: tuple, b: tuple) -> float:
    """The cut score between two frames' (histogram, RGB) summaries."""
    pixels = float(np.abs(a[1] - b[1]).mean()) / 64.0
    return 0.5 * _colour_change(a, b) + 0.5 * min(1.0, pixels)


class FrameSignals:
    def __init__(self, *, fps: float, bar_level: float, blur_every: int = 1, hash_every: int = 1):
        self.fps = fps
        self.bar_level = bar_level
        self.blur_every = max(1, int(blur_every))
        self.hash_every = max(1, int(hash_every))
        self.count = 0
        self.shape: tuple[int, int] | None = None
        self.mean: list[float] = []
        self.spread: list[float] = []  # the widest channel's range between its 0.5th and 99.5th percentiles
        self.motion: list[float] = []  # pair t-1 -> t at index t-1: the largest 8 x 8 cell's mean |RGB change|
        self.common: list[float] = []
        self.cut: list[float] = []
        self.cut_across: list[float] = []  # frame t-1 -> t+1 at index t-1 (one shorter than cut)
        self.cut_colour: list[float] = []  # the cut score's colour-histogram part alone, per pair
        self.blur: list[tuple[int, float]] = []
        self.hashes: list[tuple[int, int, np.ndarray]] = []
        self._previous: tuple | None = None  # (cells, (hist, rgb)) of the last frame
        self._before: tuple | None = None  # (hist, rgb) of the frame before it
        self.rows: dict[str, np.ndarray] = {}
        self.cols: dict[str, np.ndarray] = {}

    def add(self, frame: np.ndarray) -> None:
        """One ``(H, W, 3)`` uint8 frame, in order."""
        gray = luma(frame)
        if self.shape is None:
            self.shape = gray.shape
            self.rows = self._lines(gray.shape[0])
            self.cols = self._lines(gray.shape[1])
        elif gray.shape != self.shape:
            raise ValueError(f"frame {self.count} is {gray.shape}, the clip's frames are {self.shape}")
        index = self.count
        self.mean.append(float(gray.mean()))
        low, high = np.percentile(frame.reshape(-1, 3), (0.5, 99.5), axis=0)  # (3,) each
        self.spread.append(float((high - low).max()))
        cells = _cells(gray)
        summary = (_histogram(frame), frame.astype(np.float32))
        if self._previous is not None:
            last_cells, last_summary = self._previous
            self.motion.append(float(_cells(np.abs(summary[1] - last_summary[1]).mean(axis=-1)).max()))
            self.common.append(float(np.median(cells - last_cells)))
            self.cut.append(_change(last_summary, summary))
            self.cut_colour.append(_colour_change(last_summary, summary))
            if self._before is not None:
                self.cut_across.append(_change(self._before, summary))
            self._before = last_summary
        self._previous = (cells, summary)
        if index % self.blur_every == 0:
            value = blur_metric(gray)
            if value is not None:
                self.blur.append((index, value))
            elif self.spread[-1] >= BLANK_RANGE:  # colour and contrast but no edge: blurred away
                self.blur.append((index, 1.0))
        if index % self.hash_every == 0:
            self.hashes.append((index, perceptual_hash(gray), thumbnail(frame)))
            if len(self.hashes) > MAX_HASHES:
                self.hashes = self.hashes[::2]
                self.hash_every *= 2
        self._track_lines(self.rows, gray, axis=1)
        self._track_lines(self.cols, gray, axis=0)
        self.count += 1

    @staticmethod
    def _lines(n: int) -> dict[str, np.ndarray]:
        return {"max_mean": np.zeros(n, np.float32), "max_spread": np.zeros(n, np.float32),
                "content": np.zeros(n, np.float64)}

    def _track_lines(self, lines: dict, gray: np.ndarray, axis: int) -> None:
        """Per row (``axis=1`` reduces across it) or column: the brightest mean, the widest spread, content seen."""
        np.maximum(lines["max_mean"], gray.mean(axis=axis), out=lines["max_mean"])
        np.maximum(lines["max_spread"], gray.max(axis=axis) - gray.min(axis=axis), out=lines["max_spread"])
        lines["content"] += (gray > self.bar_level + CONTENT_MARGIN).mean(axis=axis)

    def sampled_hashes(self, count: int) -> list[dict]:
        """``count`` of the kept hashes, spread evenly over the clip: ``{"frame", "hash", "thumb"}``."""
        if not self.hashes:
            return []
        picks = np.unique(np.linspace(0, len(self.hashes) - 1, min(count, len(self.hashes))).round().astype(int))
        return [{"frame": self.hashes[i][0], "hash": f"{self.hashes[i][1]:016x}",
                 "thumb": self.hashes[i][2].ravel().tolist()} for i in picks]


def stride(fps: float | None, per_second: float) -> int:
    """Every how many frames to sample to take ``per_second`` frames a second (1 when unknown)."""
    if not fps or not per_second or per_second <= 0:
        return 1
    return max(1, int(math.floor(fps / per_second)))
