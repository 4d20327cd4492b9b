"""From one clip's signals to its verdict on every dimension, with the evidence: which frames, where.

Each dimension's result is ``{"value", "threshold", "verdict", "evidence", "reason"}``:
``verdict`` is ``pass``, ``fail`` or ``n/a`` (the dimension does not apply, e.g. motion in a
still image); ``reason`` is one line a person reads ("frozen 0.62 s from 1.25 s"); ``evidence``
holds frame indices (and seconds) or rows and columns. Frame indices are those of the
analysed stream (the clip's own frames, from its start or the manifest's ``start``).
"""

from __future__ import annotations

import numpy as np

from reelm.eval.audit.audit_config import AuditConfig
from reelm.eval.audit.signals import FrameSignals

PASS, FAIL, NA = "pass", "fail", "n/a"
CUT_WINDOW = 4  # frame pairs each side whose median is a cut's "usual change nearby"
CUT_FLOOR = 0.02  # ... never taken below this (a still clip's first motion is not a cut)


def result(value, threshold, failed: bool | None, reason: str = "", **evidence) -> dict:
    """One dimension's result (``failed`` None: not applicable)."""
    verdict = NA if failed is None else (FAIL if failed else PASS)
    return {"value": _round(value), "threshold": threshold, "verdict": verdict, "reason": reason if failed else "",
            "evidence": evidence}


def _round(value):
    return round(float(value), 4) if isinstance(value, (float, np.floating)) else value


def _seconds(frame: int, fps: float | None) -> float | None:
    return round(frame / fps, 3) if fps else None


def spec_check(cfg: AuditConfig, *, fps: float | None, duration: float | None, width: int, height: int,
               frames: int, still: bool) -> dict:
    """Duration, frame rate and resolution against ``cfg.clip``."""
    spec = cfg.clip
    need = spec.num_frames / spec.fps
    problems = []
    if min(width, height) < spec.size:
        problems.append(f"{width}x{height} is smaller than the clip side {spec.size}")
    if not still:
        if fps is not None and fps < spec.fps * cfg.spec.min_fps_share:
            problems.append(f"{fps:g} fps is below the clip rate {spec.fps:g}")
        if duration is not None and duration + 0.5 / spec.fps < need:
            problems.append(f"{duration:.2f} s is shorter than a clip's {need:.2f} s")
    value = {"fps": fps, "duration": None if duration is None else round(duration, 3), "width": width,
             "height": height, "frames": frames}
    threshold = {"fps": spec.fps * cfg.spec.min_fps_share, "duration": round(need, 3), "side": spec.size}
    return result(value, threshold, bool(problems), "; ".join(problems))


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` of each run of True."""
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def _blank_pairs(cfg: AuditConfig, s: FrameSignals) -> np.ndarray:
    """Per frame pair, whether either frame shows almost nothing (spans under ``exposure.min_range``)."""
    blank = np.asarray(s.spread) < cfg.exposure.min_range
    return blank[1:] | blank[:-1]


def frozen_runs(cfg: AuditConfig, s: FrameSignals) -> list[tuple[int, int]]:
    """``[start, end)`` frame-pair runs in which no 8 x 8 cell changes by ``frozen.max_change``, at least
    ``frozen.min_seconds`` long; black or faded frames repeat too, and are exposure's finding, not a freeze."""
    if s.count < 2:
        return []
    min_pairs = _min_frozen_pairs(cfg, s)
    still = (np.asarray(s.motion) < cfg.frozen.max_change) & ~_blank_pairs(cfg, s)
    return [(a, b) for a, b in _runs(still) if b - a >= min_pairs]


def _min_frozen_pairs(cfg: AuditConfig, s: FrameSignals) -> int:
    return max(2, int(np.ceil(cfg.frozen.min_seconds * s.fps))) if s.fps else 2


def motion_checks(cfg: AuditConfig, s: FrameSignals, runs: list[tuple[int, int]], cuts: list[int]) -> dict:
    """Frozen segments and still clips, from the frame-pair motion, its frozen ``runs`` (:func:`frozen_runs`) and
    the frames the clip ``cuts`` at: a run that fills a whole shot between cuts is a still shot, not a stall."""
    if s.count < 2:
        return {"frozen": result(None, cfg.frozen.max_change, None), "static": result(None, cfg.static.min_motion, None)}
    motion = np.asarray(s.motion)
    blank = _blank_pairs(cfg, s)
    if blank.all():  # every frame blank: nothing shows that could move or freeze (exposure's finding)
        return {"frozen": result(None, cfg.frozen.max_change, None), "static": result(None, cfg.static.min_motion, None)}
    moving = motion.copy()
    if moving[0] < cfg.static.first_pair_motion:  # the encoder settling after its keyframe (StaticCheck)
        moving[0] = 0.0
    shown = moving[~blank]  # a fade-in from black is no motion of the scene
    most = float(shown.max())
    still = most < cfg.static.min_motion  # no pair of frames changes: nothing to freeze
    static = result(most, cfg.static.min_motion, still,
                    f"nothing moves (largest frame change {most:.2f} < {cfg.static.min_motion:g})",
                    mean=round(float(shown.mean()), 4))
    # shot k's pairs are [starts[k], ends[k]): the pair that crosses a cut (frame c - 1 -> c) belongs to none
    shots = set(zip([0] + list(cuts), [c - 1 for c in cuts] + [len(motion)])) if cuts else set()
    segments = [run for run in runs if run not in shots]
    frozen_frames = sum(b - a for a, b in segments)
    share = frozen_frames / s.count
    failed = None if still else (bool(segments) and share > cfg.frozen.max_share)
    evidence = [{"frames": [a, b], "start_s": _seconds(a, s.fps), "seconds": _seconds(b - a, s.fps)} for a, b in segments]
    reason = ""
    if segments:
        a, b = max(segments, key=lambda ab: ab[1] - ab[0])
        reason = (f"frozen {b - a} frames" + (f" ({(b - a) / s.fps:.2f} s)" if s.fps else "")
                  + f" from frame {a}" + (f" ({a / s.fps:.2f} s)" if s.fps else ""))
    frozen = result(round(share, 4), {"max_change": cfg.frozen.max_change, "min_pairs": _min_frozen_pairs(cfg, s),
                                      "max_share": cfg.frozen.max_share}, failed, reason, segments=evidence,
                    # the frames that repeat the one before them
                    frames=[f for a, b in segments for f in range(a + 1, b + 1)][:64],
                    still_shots=[[a, b] for a, b in runs if (a, b) in shots])
    return {"frozen": frozen, "static": static}


def exposure_check(cfg: AuditConfig, s: FrameSignals) -> dict:
    c = cfg.exposure
    mean, spread = np.asarray(s.mean), np.asarray(s.spread)
    flat = spread < c.min_range
    black = flat & (mean < c.black_level)
    white = flat & (mean > c.white_level)
    flat &= ~black & ~white
    bad = black | white | flat
    share = float(bad.mean()) if len(bad) else 0.0
    kinds = [name for name, mask in (("black", black), ("white", white), ("faded", flat)) if mask.any()]
    frames = np.flatnonzero(bad).tolist()
    reason = f"{len(frames)} of {len(bad)} frames {'/'.join(kinds)}" + (
        f" from {frames[0] / s.fps:.2f} s" if frames and s.fps else "")
    return result(round(share, 4), c.max_share, share > c.max_share, reason, frames=frames[:64], kinds=kinds,
                  darkest=round(float(mean.min()), 2) if len(mean) else None,
                  lowest_range=round(float(spread.min()), 2) if len(spread) else None)


def flicker_check(cfg: AuditConfig, s: FrameSignals) -> dict:
    if len(s.common) < 2:
        return result(None, cfg.flicker.max_flicker, None)
    common = np.asarray(s.common)
    reversal = np.abs(np.diff(common)) / 2  # per frame t (pairs t-1->t, t->t+1), only where the sign flips
    flips = np.sign(common[1:]) != np.sign(common[:-1])
    reversal = np.where(flips, reversal, 0.0)
    value = float(np.median(reversal))
    frames = (np.flatnonzero(reversal > cfg.flicker.max_flicker) + 1).tolist()
    return result(value, cfg.flicker.max_flicker, value > cfg.flicker.max_flicker,
                  f"brightness flips by {value:.1f} levels a frame (median)", frames=frames[:64],
                  worst=round(float(reversal.max()), 3))


def blur_check(cfg: AuditConfig, s: FrameSignals) -> dict:
    if not s.blur:
        return result(None, cfg.blur.max_blur, None)
    values = np.asarray([v for _, v in s.blur])
    value = float(np.median(values))
    order = np.argsort(-values)
    worst = [s.blur[i][0] for i in order[:8]]
    return result(value, cfg.blur.max_blur, value > cfg.blur.max_blur,
                  f"blurred: median blur {value:.2f} > {cfg.blur.max_blur:g}", frames=sorted(worst),
                  sampled=len(values), sharpest=round(float(values.min()), 3))


def cut_check(cfg: AuditConfig, s: FrameSignals, runs: list[tuple[int, int]]) -> dict:
    """Scene cuts, given the clip's frozen ``runs`` (:func:`frozen_runs`): where a freeze ends, the picture jumps
    by the motion the freeze held back, so that jump is a cut only if the colours change by ``min_score`` too."""
    if len(s.cut) < 1:
        return result(None, cfg.cut.min_score, None)
    score = np.asarray(s.cut)
    across = np.asarray(s.cut_across)
    colour = np.asarray(s.cut_colour)
    blank = _blank_pairs(cfg, s)  # a fade from black is exposure's finding, not a cut
    released = {b for _, b in runs}  # the first pair that moves after each frozen run
    cuts = []
    for i, value in enumerate(score):  # pair i: frame i -> i + 1
        if value < cfg.cut.min_score or blank[i] or (i in released and colour[i] < cfg.cut.min_score):
            continue
        around = np.concatenate([score[max(0, i - CUT_WINDOW):i], score[i + 1:i + 1 + CUT_WINDOW]])
        usual = max(CUT_FLOOR, float(np.median(around))) if len(around) else CUT_FLOOR
        if value < cfg.cut.min_ratio * usual:
            continue
        # a flash (one odd frame) is no cut: across it, the frames before and after match again
        entering = i < len(across) and across[i] < cfg.cut.min_score  # frame i + 1 is the odd one
        leaving = i >= 1 and across[i - 1] < cfg.cut.min_score  # frame i is the odd one
        if entering or leaving:
            continue
        cuts.append({"frame": i + 1, "score": round(float(value), 3), "ratio": round(float(value / usual), 2),
                     "time_s": _seconds(i + 1, s.fps)})
    reason = ", ".join(f"cut at frame {c['frame']}" + (f" ({c['time_s']:.2f} s)" if c["time_s"] is not None else "")
                       for c in cuts[:3]) + ("; split there" if cuts else "")
    return result(round(float(score.max()), 4), {"min_score": cfg.cut.min_score, "min_ratio": cfg.cut.min_ratio},
                  bool(cuts), reason, cuts=cuts, frames=[c["frame"] for c in cuts])


def _bar(lines: dict, count: int, cfg: AuditConfig) -> tuple[int, int]:
    """Bar lines at the start and end of one axis."""
    flat = (lines["max_mean"] <= cfg.bars.max_level) & (lines["max_spread"] <= cfg.bars.max_level)
    content = lines["content"] / max(count, 1)  # share of a line's pixels showing content, averaged over frames
    n = len(flat)

    def run(order):
        length = 0
        for i in order:
            if not flat[i]:
                break
            length += 1
        if length == 0 or length >= n // 2:
            return 0
        inner = order[length] if length < n else None
        return length if inner is not None and content[inner] >= 0.5 else 0  # bars stand next to content

    first, last = run(list(range(n))), run(list(range(n - 1, -1, -1)))
    if not first or not last or 2 * min(first, last) < max(first, last):
        return 0, 0  # bars come in pairs of about the same size
    return first, last


def bars_check(cfg: AuditConfig, s: FrameSignals) -> dict:
    if s.shape is None:
        return result(None, cfg.bars.max_share, None)
    height, width = s.shape
    top, bottom = _bar(s.rows, s.count, cfg)
    left, right = _bar(s.cols, s.count, cfg)
    rows, cols = (top + bottom) / height, (left + right) / width
    value = max(rows, cols)
    kinds = [k for k, v in (("letterbox", rows), ("pillarbox", cols)) if v > cfg.bars.max_share]
    reason = "; ".join(
        [f"letterbox: rows 0-{top - 1} and {height - bottom}-{height - 1} of {height} ({rows:.0%})"] * (rows > cfg.bars.max_share)
        + [f"pillarbox: columns 0-{left - 1} and {width - right}-{width - 1} of {width} ({cols:.0%})"] * (cols > cfg.bars.max_share))
    return result(round(value, 4), cfg.bars.max_share, bool(kinds), reason, kinds=kinds,
                  top=top, bottom=bottom, left=left, right=right, height=height, width=width)


def pixel_dimensions(cfg: AuditConfig, s: FrameSignals) -> dict:
    """Every dimension measured from the pixels alone."""
    runs = frozen_runs(cfg, s)
    cut = cut_check(cfg, s, runs)
    return {**motion_checks(cfg, s, runs, cut["evidence"].get("frames", [])), "exposure": exposure_check(cfg, s),
            "flicker": flicker_check(cfg, s), "blur": blur_check(cfg, s), "cut": cut, "bars": bars_check(cfg, s)}
