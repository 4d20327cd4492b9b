"""``reelm data audit``: score every clip of a source, find near-duplicates, write the cleaned dataset and a report.

    OUT/audit_config.json     the settings used (a resumed run must use the same)
    OUT/parts/part-R-of-N.jsonl   each process's records, appended clip by clip (what a resume reads)
    OUT/audit.jsonl           one record a clip, in source order, duplicates decided
    OUT/summary.json          counts per verdict and per reason, the thresholds, seconds (this run's, and
                              every clip's scoring summed over runs: clip_seconds)
    OUT/clean.jsonl           a manifest of the clips that passed (what tokenize / tokenizer train / eval read)
    OUT/split.jsonl           the same, with clips dropped only for a cut kept as their pieces between cuts
    OUT/report.html           the summary, each dimension's worst clips and histogram, the duplicate groups

Rows are split across processes by index (``index % world_size == rank``, torchrun's ``RANK`` and
``WORLD_SIZE``); each appends its records to its own part file and flushes every line, so a killed
run resumes where it stopped (a torn last line is cut off) without re-scoring what it finished.
When every part is complete, rank 0 merges them. Memory stays flat in the number of clips but for
one signature (~1 KB) and one value per dimension a clip, which the duplicate search and the
histograms need.
"""

from __future__ import annotations

import heapq
import json
import os
import time
from collections import Counter
from pathlib import Path

from reelm.core.config import from_dict, to_dict
from reelm.core.errors import ReelmError
from reelm.data.sources import SyntheticSource, open_source
from reelm.eval.audit.clip_audit import audit_clip, decide
from reelm.eval.audit.audit_config import DIMENSIONS, AuditConfig
from reelm.eval.audit.dimensions import FAIL, result
from reelm.eval.audit.duplicates import find_duplicates

WORST = 8  # clips per dimension the report shows


class AuditError(ReelmError):
    """An audit that cannot run or resume: settings differing from the folder's, parts missing."""


def open_audit_source(data, cfg: AuditConfig):
    world = cfg.world.world_config(cfg.clip, seed=cfg.seed) if str(data) == "synthetic" else None
    return open_source(data, num_clips=cfg.num_clips, world_cfg=world, start=cfg.world.start, **cfg.source.kwargs())


def _settings(data, cfg: AuditConfig, clip_model) -> dict:
    return {"data": str(data), "config": to_dict(cfg), "clip_model": None if clip_model is None else str(clip_model)}


def _check_settings(out: Path, settings: dict) -> None:
    path = out / "audit_config.json"
    if path.exists():
        saved = json.loads(path.read_text())
        if saved != settings:
            changed = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
            raise AuditError(f"{out}: audited before with other settings ({', '.join(changed)} differ); "
                             f"resume with the same ones or choose a new --out")
    else:
        from reelm.core.atomic import write_json

        write_json(path, settings)


def _finished(path: Path) -> set[int]:
    """The indices of the complete records of a part file; a torn last line (from a kill) is cut off the file."""
    done, good = set(), 0
    if not path.exists():
        return done
    with open(path, "rb") as fh:
        for line in fh:
            if not line.endswith(b"\n"):
                break
            try:
                done.add(int(json.loads(line)["index"]))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                break
            good += len(line)
    if good < path.stat().st_size:
        with open(path, "r+b") as fh:
            fh.truncate(good)
    return done


def _stream_part(path: Path):
    """``(index, record)`` of a complete part file, one line at a time (a part is written in index order)."""
    with open(path) as fh:
        for line in fh:
            record = json.loads(line)
            yield int(record["index"]), record


def audit_dataset(data, out: str | Path, cfg: AuditConfig | None = None, *, clip_model=None, device: str = "cpu",
                  progress: bool = True) -> dict | None:
    """Audit ``data`` into ``out`` (see the module docstring); the summary on rank 0, None on other ranks."""
    from reelm.core.atomic import output_folder
    from reelm.core.distributed import barrier, init_distributed
    from reelm.core.progress import progress_bar
    from reelm.eval.audit.caption_agreement import ClipAgreement, ReaderAgreement

    cfg = cfg or AuditConfig()
    began = time.perf_counter()
    dist = init_distributed("cpu")
    out = Path(out)
    output_folder(out / "audit.jsonl", error=AuditError)  # OUT made, or one line saying why not
    source = open_audit_source(data, cfg)
    settings = _settings(data, cfg, clip_model)
    if dist.is_main:
        _check_settings(out, settings)
    barrier()
    if not dist.is_main:
        _check_settings(out, settings)
    check = ClipAgreement(clip_model, cfg.caption, device=device) if clip_model else ReaderAgreement(cfg.caption)
    parts = out / "parts"
    parts.mkdir(exist_ok=True)
    mine = parts / f"part-{dist.rank:05d}-of-{dist.world_size:05d}.jsonl"
    done = _finished(mine)
    todo = [i for i in range(dist.rank, len(source), dist.world_size) if i not in done]
    bar = progress_bar(len(todo) + len(done), initial=len(done), desc=f"audit {source.name}", unit="clip",
                       enabled=progress and dist.is_main)
    with open(mine, "a") as fh:
        for index in todo:
            clip_began = time.perf_counter()
            record = audit_clip(source, source.row(index), cfg, caption_check=check)
            record["audit_s"] = round(time.perf_counter() - clip_began, 4)  # summed over every run in the summary
            fh.write(json.dumps(record, separators=(",", ":")) + "\n")
            fh.flush()
            bar.update(1)
        os.fsync(fh.fileno())
    bar.close()
    barrier()
    if not dist.is_main:
        return None
    return finish(out, source, cfg, seconds=time.perf_counter() - began, world_size=dist.world_size,
                  resumed=bool(done))


def finish(out: Path, source, cfg: AuditConfig, *, seconds: float, world_size: int, resumed: bool = False) -> dict:
    """Merge the parts: duplicates, ``audit.jsonl``, manifests, ``summary.json``, ``report.html``."""
    from reelm.core.atomic import atomic_file, write_json

    files = sorted((out / "parts").glob(f"part-*-of-{world_size:05d}.jsonl"))
    signatures: dict[int, list] = {}
    for path in files:
        _finished(path)
        for index, record in _stream_part(path):
            signatures[index] = record.get("signature") or []
    missing = [i for i in range(len(source)) if i not in signatures]
    if missing:
        raise AuditError(f"{out}: {len(missing)} of {len(source)} clips not audited yet (first: {missing[0]}); "
                         f"re-run the same command to finish")
    duplicates = find_duplicates(signatures, cfg.duplicate) if cfg.duplicate.frames else {}
    del signatures
    counts, reasons, flags = Counter(), Counter(), Counter()
    values: dict[str, list] = {name: [] for name in DIMENSIONS}
    worst: dict[str, list] = {name: [] for name in DIMENSIONS}
    kept, clip_seconds = 0, 0.0
    with atomic_file(out / "audit.jsonl") as tmp_audit, atomic_file(out / "clean.jsonl") as tmp_clean, \
            atomic_file(out / "split.jsonl") as tmp_split:
        with open(tmp_audit, "w") as fa, open(tmp_clean, "w") as fc, open(tmp_split, "w") as fs:
            for index, record in heapq.merge(*(_stream_part(path) for path in files), key=lambda ir: ir[0]):
                if index in duplicates and record.get("dimensions", {}).get("duplicate"):
                    d = duplicates[index]
                    of = source.row(d["of"]).video
                    record["dimensions"]["duplicate"] = result(
                        d["bits"], record["dimensions"]["duplicate"]["threshold"], True,
                        f"a near-duplicate of clip {d['of']} ({of}): {d['bits']:.1f} bits, {d['color']:.1f} levels",
                        of=d["of"], of_video=of, bits=d["bits"], color=d["color"])
                    decide(record, cfg)
                record.pop("signature", None)
                clip_seconds += record.pop("audit_s", None) or 0.0  # timing stays out of audit.jsonl: runs agree
                fa.write(json.dumps(record, separators=(",", ":")) + "\n")
                counts[record["verdict"]] += 1
                reasons.update(record["reasons"])
                flags.update(record["flags"])
                _collect(record, values, worst)
                row = source.row(index)
                if record["verdict"] == "keep":
                    kept += 1
                    fc.write(_manifest_line(row, source))
                    fs.write(_manifest_line(row, source))
                elif record["reasons"] == ["cut"]:
                    for piece in _pieces(record, cfg):
                        fs.write(_manifest_line(row, source, *piece))
    summary = {
        "data": source.name, "clips": len(source), "kept": kept, "dropped": counts["drop"],
        "verdicts": dict(counts), "drop_reasons": dict(reasons.most_common()), "flags": dict(flags.most_common()),
        "duplicates": len(duplicates), "thresholds": to_dict(cfg), "seconds": round(seconds, 2),
        # a resumed run scored only what an earlier one left: its rate would say nothing (None); clip_seconds sums
        # every clip's scoring over all runs
        "resumed": resumed, "clips_per_second": round(len(source) / seconds, 3) if seconds and not resumed else None,
        "clip_seconds": round(clip_seconds, 2),
        "processes": world_size, "audit": str(out / "audit.jsonl"), "clean_manifest": str(out / "clean.jsonl"),
        "split_manifest": str(out / "split.jsonl"),
        "synthetic": isinstance(source, SyntheticSource),
    }
    from reelm.eval.reports.audit_report import write_audit_report

    summary["report"] = str(write_audit_report(out, summary, values, worst, source, cfg))
    write_json(out / "summary.json", summary)
    return summary


def _collect(record: dict, values: dict, worst: dict) -> None:
    """The dimension values the histograms need, and each dimension's failing clips with the largest excess."""
    for name, r in record.get("dimensions", {}).items():
        value = r.get("value")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values[name].append(float(value))
        if r["verdict"] == FAIL:
            key = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0
            if name in ("static", "caption"):
                key = -key  # lower is worse
            entry = (key, -record["index"], {"index": record["index"], "video": record["video"],
                                             "caption": record.get("caption"), "result": r,
                                             "info": record.get("info"), "start": record.get("start")})
            heapq.heappush(worst[name], entry) if len(worst[name]) < WORST else heapq.heappushpop(worst[name], entry)


def _manifest_line(row, source, start: float | None = None, end: float | None = None) -> str:
    """One row of a manifest the sources read back: an absolute ``video`` (a source's paths are relative to where
    the audit ran, the manifest's to its own folder), its ``caption``, the window."""
    video = row.video if isinstance(source, SyntheticSource) or not row.video else os.path.abspath(row.video)
    entry = {"video": video, "caption": row.caption}
    start = row.start if start is None else start
    end = row.end if end is None else end
    if start is not None:
        entry["start"] = round(start, 4)
    if end is not None:
        entry["end"] = round(end, 4)
    if row.attributes is not None:
        entry["attributes"] = row.attributes
    return json.dumps(entry, separators=(",", ":")) + "\n"


def _pieces(record: dict, cfg: AuditConfig) -> list[tuple[float, float]]:
    """The windows between a clip's cuts long enough for one clip of the spec, in the source's seconds."""
    info = record.get("info") or {}
    fps = info.get("fps")
    if not fps:
        return []
    offset = record.get("start") or 0.0
    frames = [0] + [c["frame"] for c in record["dimensions"]["cut"]["evidence"]["cuts"]] + [info["frames"]]
    need = cfg.clip.num_frames / cfg.clip.fps
    return [(offset + a / fps, offset + b / fps) for a, b in zip(frames[:-1], frames[1:]) if (b - a) / fps >= need]
