"""Does the caption fit the clip? Two readers, one result layout.

- :class:`ClipAgreement` (local CLIP weights): the mean cosine similarity of the caption's text
  embedding to the embeddings of up to ``FRAMES`` frames sampled from the clip
  (:class:`reelm.eval.clip_score.ClipScorer`, never a download).
- :class:`ReaderAgreement` (no weights): for captions in the synthetic world's vocabulary, the
  share of the attributes the caption names that the scene reader finds in the frames
  (:func:`reelm.eval.adherence.score_against`). A caption that names none of the world's
  shapes and colours, or frames in which no object can be read, give ``n/a``.

Either is called as ``check(frames, fps, caption) -> result`` on the audit's analysis frames.
"""

from __future__ import annotations

import numpy as np

from reelm.eval.audit.audit_config import CaptionCheck
from reelm.eval.audit.dimensions import result

FRAMES = 8  # frames sampled for CLIP


class ReaderAgreement:
    method = "scene reader"

    def __init__(self, cfg: CaptionCheck):
        self.cfg = cfg

    def __call__(self, frames: np.ndarray, fps: float | None, caption: str | None) -> dict:
        from reelm.data.synthetic.captions import parse_caption
        from reelm.eval.adherence import ClipReadError, read_clip, score_against

        threshold = self.cfg.min_read_accuracy
        if not caption:
            return result(None, threshold, None, method=self.method, why="no caption")
        expected = parse_caption(caption)
        named = [o for o in expected["objects"] if o.get("color") and o.get("shape")]
        if not named or len(frames) < 2 or not fps:
            return result(None, threshold, None, method=self.method, why="the caption is not in the world's vocabulary")
        try:
            readings = read_clip(frames, fps=fps, max_objects=max(2, len(named)))
        except ClipReadError as exc:
            return result(None, threshold, None, method=self.method, why=str(exc))
        if not readings:  # black, faded or empty frames: the pixels' fault, found by the other dimensions
            return result(None, threshold, None, method=self.method, why="no object could be read in the frames")
        score = score_against(readings, {"objects": named})
        accuracy = score["accuracy"] if score["accuracy"] is not None else 0.0
        read = [r.attributes() for r in readings]
        return result(accuracy, threshold, accuracy < threshold,
                      f"the frames show {_describe(read) or 'no object'}, the caption says {_describe(named)}",
                      method=self.method, read=read, named=named)


class ClipAgreement:
    method = "clip"

    def __init__(self, folder, cfg: CaptionCheck, *, device: str = "cpu"):
        from reelm.eval.clip_score import ClipScorer

        self.cfg = cfg
        self.scorer = ClipScorer(folder, device=device)
        self.model = str(self.scorer.folder)

    def __call__(self, frames: np.ndarray, fps: float | None, caption: str | None) -> dict:
        threshold = self.cfg.min_clip_similarity
        if not caption:
            return result(None, threshold, None, method=self.method, why="no caption")
        picks = np.unique(np.linspace(0, len(frames) - 1, min(FRAMES, len(frames))).round().astype(int))
        text = self.scorer.text_embeddings([caption])[0]
        cosines = (self.scorer.image_embeddings(frames[picks]) @ text).double().numpy()
        value = float(cosines.mean())
        return result(value, threshold, value < threshold,
                      f"CLIP similarity {value:.3f} < {threshold:g}", method=self.method, model=self.model,
                      frames=picks.tolist(), per_frame=[round(float(c), 4) for c in cosines])


def _describe(objects: list[dict]) -> str:
    return " and ".join(" ".join(str(o[k]) for k in ("color", "shape", "motion") if o.get(k)) for o in objects)
