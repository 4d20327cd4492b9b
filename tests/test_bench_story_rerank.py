"""The rerank bench's template critic compares the object's soft silhouette with the story's first frame's."""

import numpy as np

from conftest import load_bench_script


def _frame(shape: str, cy: float, cx: float, color=(220, 40, 40), r: float = 5.0) -> np.ndarray:
    """A 64 x 64 frame with one anti-aliased object on a plain background (4 x 4 supersampled)."""
    y, x = (np.mgrid[:256, :256] + 0.5) / 4
    inside = (np.maximum(np.abs(y - cy), np.abs(x - cx)) <= 0.85 * r if shape == "square"
              else (y - cy) ** 2 + (x - cx) ** 2 <= r * r)
    cover = inside.reshape(64, 4, 64, 4).mean(axis=(1, 3))[..., None]
    background = np.array((40, 40, 60), dtype=np.float64)
    return np.round(background + cover * (np.array(color) - background)).astype(np.uint8)


def test_the_template_score_sees_the_shape_wherever_and_in_whatever_color():
    bench = load_bench_script("bench_story_rerank")
    first = _frame("square", 20.0, 20.0)
    reference = bench.centered_patch(bench.silhouette(first))
    square = np.stack([_frame("square", 40.3, 31.6 + t, color=(40, 200, 220)) for t in range(4)])  # moved, recolored
    circle = np.stack([_frame("circle", 40.3, 31.6 + t) for t in range(4)])
    kept, redrawn = bench.template_score(reference, square), bench.template_score(reference, circle)
    assert kept > 0.93 and redrawn < kept - 0.03  # measured: 0.956 and 0.901
    empty = np.full((4, 64, 64, 3), 40, dtype=np.uint8)
    assert bench.template_score(reference, empty) == 0.0
    assert bench.template_score(bench.centered_patch(bench.silhouette(empty[0])), square) == 0.0  # no reference
    assert bench.silhouette(first).max() == 1.0 and bench.silhouette(first)[0, 0] == 0.0
