"""Best of N story windows: which critic, if any, finds the continuation that keeps the object. Prints JSON.

Every continuation window of every held-out story is sampled N times (``iter_story``'s
``candidates``) and a critic keeps one. The critics:

- ``first``: sample 0, what a story without candidates makes (the baseline);
- ``seam``: the least mean pixel change from the last frame before to the window's first frame;
- ``warp_chain``: the least motion-compensated error (each 8 x 8 block's best shift within 3 px) from
  frame to frame across the window;
- ``warp_anchor``: the same error of each new frame against the last frame before (16 x 16 blocks, 6 px);
- ``outline_last``: the object's outline kept: each new frame's foreground mask (pixels far from the
  frame's border color) against the last frame before's, at the shift within 6 px that overlaps them
  best (the highest mean IoU); it assumes a plain background, as the world's scenes have;
- ``outline_chain``: that mean IoU plus the mean IoU from frame to frame across the window (3 px), which
  also sees an outline smeared for a frame or two;
- ``outline``: the shipped critic (:mod:`reelm.generation.story_critics`): the frame-to-frame term plus each
  new frame's outline against the story's first frame's, centroids aligned (a reference that does not drift);
- ``template``: the object's soft silhouette (each pixel's distance from the border's color, 0 to 1 between
  ``TEMPLATE_LOW`` and the object's typical distance) in a patch sampled around its centroid at sub-pixel
  precision, against the story's first frame's: the mean soft Dice over the new frames (no threshold and no
  whole-pixel alignment, the finer cousin of ``outline``'s identity term);
- ``caption``: the LM's own caption likelihood of the segment's prompt given the window's codes;
- ``likelihood``: the LM's likelihood of the window's new codes given its context and the prompt;
- ``pmi``: that likelihood over the one without the prompt (how much the prompt explains the window);
- ``oracle``: the first candidate whose object the eval's own reader reads with the same shape and
  color on both sides of the seam. It reads with the judge's eyes, so it is no generator's critic: it
  bounds what choosing among N samples can give.

    python scripts/bench/bench_story_rerank.py --model runs/demo/lm --candidates 4 --out runs/rerank
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

CRITICS = ("first", "seam", "warp_chain", "warp_anchor", "outline_last", "outline_chain", "outline", "template",
           "caption", "likelihood", "pmi", "oracle")
TEMPLATE_LOW = 20.0  # RGB distance from the border's color below which a pixel is no part of the object
TEMPLATE_RADIUS = 10  # pixels each side of the centroid the silhouettes are compared over


def silhouette(frame: np.ndarray) -> np.ndarray:
    """``(H, W)`` in [0, 1]: how much each pixel of ``frame`` is object, by its distance from the border's median
    color, scaled so that the object's typical (75th percentile) foreground pixel is 1."""
    from reelm.generation.story_critics import FOREGROUND_DISTANCE, border_distance

    distance = border_distance(frame)
    if not (distance > FOREGROUND_DISTANCE).any():
        return np.zeros_like(distance)
    typical = np.percentile(distance[distance > FOREGROUND_DISTANCE], 75)
    return np.clip((distance - TEMPLATE_LOW) / max(typical - TEMPLATE_LOW, 1.0), 0.0, 1.0)


def centered_patch(alpha: np.ndarray) -> np.ndarray | None:
    """The silhouette around its own centroid, bilinear at sub-pixel offsets (None when it is empty)."""
    from scipy import ndimage

    total = alpha.sum()
    if total <= 0:
        return None
    ys, xs = np.indices(alpha.shape)
    cy, cx = (alpha * ys).sum() / total, (alpha * xs).sum() / total
    grid = np.mgrid[-TEMPLATE_RADIUS:TEMPLATE_RADIUS + 1, -TEMPLATE_RADIUS:TEMPLATE_RADIUS + 1].astype(np.float32)
    return ndimage.map_coordinates(alpha, [grid[0] + cy, grid[1] + cx], order=1, mode="constant")


def template_score(reference: np.ndarray | None, frames: np.ndarray) -> float:
    """Mean soft Dice of each frame's centered silhouette against ``reference``, the story's first frame's
    :func:`centered_patch` (0 where either is empty)."""
    scores = []
    for frame in frames:
        patch = centered_patch(silhouette(frame))
        if reference is None or patch is None:
            scores.append(0.0)
            continue
        scores.append(1.0 - np.abs(reference - patch).sum() / (reference.sum() + patch.sum()))
    return float(np.mean(scores))


def warp_error(before: np.ndarray, after: np.ndarray, *, shift: int, block: int) -> float:
    """Squared error of ``after`` predicted from ``before`` with each block's best shift within ``shift`` pixels."""
    padded = np.pad(before.astype(np.float32), ((shift, shift), (shift, shift), (0, 0)), mode="edge")
    after = after.astype(np.float32)
    h, w = after.shape[:2]
    best = None
    for dy in range(2 * shift + 1):
        for dx in range(2 * shift + 1):
            error = ((after - padded[dy:dy + h, dx:dx + w]) ** 2).sum(-1)
            error = error.reshape(h // block, block, w // block, block).sum((1, 3))
            best = error if best is None else np.minimum(best, error)
    return float(best.sum())


def target_nll(pipe, sequences) -> np.ndarray:
    """Each sequence's summed NLL over its target (equal lengths: a window's candidates)."""
    ids = torch.from_numpy(np.stack([s.input_ids for s in sequences])).to(pipe.model.device)
    with torch.inference_mode():
        logp = torch.log_softmax(pipe.model.lm(input_ids=ids).logits.float()[:, :-1], -1)
    picked = logp.gather(2, ids[:, 1:, None])[..., 0].cpu()
    mask = torch.from_numpy(np.stack([s.loss_mask for s in sequences]))[:, 1:]
    return -(picked * mask).sum(1).numpy()


def make_critic(name: str, pipe):
    from reelm.data.token_layout import Task
    from reelm.eval.adherence import read_clip
    from reelm.generation.story_critics import foreground, outline, shifted_iou

    layout, fps = pipe.layout, pipe.model.clip.fps

    def window_nll(w, text):
        k = w.context_latent_frames
        return target_nll(pipe, [layout.sequence(Task.V2V, text=text, context=g[:k], video=g[k:]) for g in w.codes])

    def first(w):
        return 0

    def seam(w):
        last = w.before[-1].astype(np.float32)
        return int(np.argmin([np.abs(f[0].astype(np.float32) - last).mean() for f in w.frames]))

    def warp_chain(w):
        return int(np.argmin([sum(warp_error(a, b, shift=3, block=8) for a, b in zip([w.before[-1], *f[:-1]], f))
                              for f in w.frames]))

    def warp_anchor(w):
        return int(np.argmin([sum(warp_error(w.before[-1], b, shift=6, block=16) for b in f) for f in w.frames]))

    def outline_last(w):
        last = foreground(w.before[-1])
        return int(np.argmax([np.mean([shifted_iou(last, foreground(b), shift=6) for b in f]) for f in w.frames]))

    def outline_chain(w):
        last, scores = foreground(w.before[-1]), []
        for f in w.frames:
            masks = [foreground(b) for b in f]
            scores.append(np.mean([shifted_iou(last, m, shift=6) for m in masks]) +
                          np.mean([shifted_iou(a, b, shift=3) for a, b in zip([last, *masks[:-1]], masks)]))
        return int(np.argmax(scores))

    def template(w):
        reference = centered_patch(silhouette(w.first if w.first is not None else w.before[0]))
        return int(np.argmax([template_score(reference, f) for f in w.frames]))

    def caption(w):
        text = layout.encode_text(w.prompt)
        return int(np.argmin(target_nll(pipe, [layout.sequence(Task.V2T, text=text, video=g) for g in w.codes])))

    def likelihood(w):
        return int(np.argmin(window_nll(w, layout.encode_text(w.prompt))))

    def pmi(w):
        return int(np.argmax(window_nll(w, None) - window_nll(w, layout.encode_text(w.prompt))))

    def oracle(w):
        before = read_clip(w.before[-4:], fps, 1)
        for i, f in enumerate(w.frames):
            after = read_clip(f[:4], fps, 1)
            if before and after and (after[0].shape, after[0].color) == (before[0].shape, before[0].color):
                return i
        return 0

    critics = dict(first=first, seam=seam, warp_chain=warp_chain, warp_anchor=warp_anchor, outline_last=outline_last,
                   outline_chain=outline_chain, outline=outline, template=template, caption=caption,
                   likelihood=likelihood, pmi=pmi, oracle=oracle)
    return critics[name]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True, help="a folder: each critic's story eval goes to OUT/CRITIC")
    p.add_argument("--candidates", type=int, default=4)
    p.add_argument("--num-stories", type=int, default=64)
    p.add_argument("--critics", default=",".join(CRITICS), help=f"comma-separated, of {', '.join(CRITICS)}")
    args = p.parse_args(argv)
    critics = [c for c in args.critics.split(",") if c]
    unknown = sorted(set(critics) - set(CRITICS))
    if unknown:
        p.error(f"--critics: unknown {', '.join(unknown)}; choose from {', '.join(CRITICS)}")

    from reelm.eval.story_eval import StoryEvalConfig, evaluate_stories
    from reelm.generation import VideoPipeline

    pipe = VideoPipeline.from_pretrained(args.model, device="cpu")
    results = {}
    for name in critics:
        cfg = StoryEvalConfig(num_stories=args.num_stories, candidates=args.candidates, baseline=False)
        summary = evaluate_stories(pipe, Path(args.out) / name, cfg, progress=False, choose=make_critic(name, pipe))
        results[name] = {"continuity": summary["continuity"], "by_boundary": {k: v["share"] for k, v in
                                                                            summary["by_boundary"].items()},
                         "broken": summary["broken"], "boundary_psnr": summary["boundary_psnr"],
                         "segments": {k: v["accuracy"] for k, v in summary["adherence"]["attributes"].items()
                                      if v["total"]},
                         "seconds": summary["timings"]["seconds"]}
        print(json.dumps({name: results[name]}), flush=True)
    print(json.dumps({"model": str(args.model), "candidates": args.candidates, "stories": args.num_stories,
                      "critics": results}, indent=1))


if __name__ == "__main__":
    main()
