"""The whole path on real clips, as a user with a folder of videos would walk it; each stage timed, every score
said against what it was measured.

On the folder of real clips ``--media`` (default ``$REELM_TEST_MEDIA``; ``../shared/media`` in this
project: two ASL gestures in MKV, a 40-second MP4, a UCF-101 GIF), in a work folder:

1. ``reelm tokenizer train`` on the folder as it is (no captions);
2. ``reelm eval reconstruct`` of that tokenizer on held-out real clips (the last 10 s of the long
   video, which training's manifest never shows the LM) — PSNR / SSIM against those clips;
3. ``reelm data tokenize`` of a manifest of absolute paths with captions (``train.jsonl``, written
   here as a user would: one row per video, the long one cut at 30 s by ``end``);
4. ``reelm lm train`` (pretrain a tiny LM), then a fine-tune of it with ``--init-from`` and a LoRA
   fine-tune with ``--init-from --lora 8``;
5. ``reelm lm export`` of the fine-tune and of the LoRA run (merged);
6. ``reelm generate`` from a prompt file, two samples a prompt, per-sample seeds (checked: made
   again one video per batch, each sample has the same frames);
7. ``reelm eval generate --reference-data heldout.jsonl``: the reference recorded (kind, path,
   clip count, hash); FVD / FID need ``--i3d`` / ``--inception`` weights, without which the
   summary says they were not computed — nothing falls back to the synthetic world.

Commands run in this process through ``reelm.cli.main`` (what the ``reelm`` script calls). Prints
one JSON object: each stage's command, seconds and result. Usage::

    python scripts/bench/real_clips_walkthrough.py --work /tmp/walk [--i3d i3d.pt] [--inception DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

CAPTIONS = {  # what a user's manifest would say of each clip
    "bottle-detection.mp4": "water bottles stand on a table",
    "milk.mkv": "a person signs milk in American Sign Language",
    "thanks.mkv": "a person signs thanks in American Sign Language",
    "cricket.gif": "a cricket player plays a shot",
}
HELD_OUT_FROM = 30.0  # seconds: the long video's end is held out of training, for the reference clips
HELD_OUT_CLIPS, HELD_OUT_STEP = 8, 1.25  # eight rows of 1.25 s from 30 s on: a 9-frame clip at 8 fps needs 1.125 s
PROMPTS = ["water bottles stand on a table", "a person signs thanks in American Sign Language"]


def manifests(media: Path, work: Path) -> tuple[Path, Path]:
    """``train.jsonl`` (absolute paths, captions; the long video up to 30 s) and ``heldout.jsonl`` (its end)."""
    train, held = [], []
    for name, caption in CAPTIONS.items():
        path = (media / name).resolve()
        if not path.is_file():
            continue
        row = {"video": str(path), "caption": caption}
        if name == "bottle-detection.mp4":
            train.append({**row, "end": HELD_OUT_FROM})
            held += [{**row, "start": HELD_OUT_FROM + HELD_OUT_STEP * i, "end": HELD_OUT_FROM + HELD_OUT_STEP * (i + 1)}
                     for i in range(HELD_OUT_CLIPS)]  # one clip a row
        else:
            train.append(row)
    for rows, file in ((train, "train.jsonl"), (held, "heldout.jsonl")):
        (work / file).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return work / "train.jsonl", work / "heldout.jsonl"


def stage(record: dict, name: str, args: list[str]) -> float:
    from reelm.cli import main

    began = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # the commands' own lines: stdout carries only the JSON
        code = main(args)
    seconds = time.perf_counter() - began
    record[name] = {"command": "reelm " + " ".join(args), "seconds": round(seconds, 1)}
    if code != 0:
        raise SystemExit(f"real_clips_walkthrough: stage {name} failed (exit {code}): reelm {' '.join(args)}")
    return seconds


def lm_metrics(run: Path) -> dict:
    from reelm.core.checkpoint_format import read_meta, resolve_checkpoint

    meta = read_meta(resolve_checkpoint(run), "lm")
    metrics = meta.get("metrics") or {}
    return {"step": meta.get("step"), "train_loss": metrics.get("loss"), "lora": meta.get("lora", {}).get("rank"),
            "clips": (meta.get("data") or {}).get("clips")}


def val_loss(run: Path) -> float | None:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    val = [line["loss"] for line in lines if line.get("split") == "val"]
    return val[-1] if val else None


def folder_mb(folder: Path) -> float:
    return round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--media", default=os.environ.get("REELM_TEST_MEDIA"), help="folder of real clips "
                        "(default: $REELM_TEST_MEDIA)")
    parser.add_argument("--work", required=True, help="a new folder for every run and output")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--num-frames", type=int, default=9)
    parser.add_argument("--tokenizer-steps", type=int, default=300)
    parser.add_argument("--lm-steps", type=int, default=300)
    parser.add_argument("--finetune-steps", type=int, default=100)
    parser.add_argument("--clips-per-video", type=int, default=8)
    parser.add_argument("--lm-set", action="append", default=[], metavar="KEY=VALUE",
                        help="more --set settings for the three LM runs (e.g. compile=false)")
    parser.add_argument("--i3d", help="I3D weights for FVD against the held-out clips")
    parser.add_argument("--inception", help="Inception weights for FID against the held-out clips")
    args = parser.parse_args(argv)
    if not args.media or not Path(args.media).is_dir():
        print(f"real_clips_walkthrough: --media {args.media!r}: give the folder of real clips (or set "
              "REELM_TEST_MEDIA)", file=sys.stderr)
        return 2
    media, work = Path(args.media), Path(args.work)
    if work.exists() and any(work.iterdir()):
        print(f"real_clips_walkthrough: --work {work}: not empty; give a new folder", file=sys.stderr)
        return 2
    work.mkdir(parents=True, exist_ok=True)
    train_rows, held_rows = manifests(media, work)
    (work / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    clip = ["--size", str(args.size), "--num-frames", str(args.num_frames)]
    lm = ["--set", "block_size=512", "--set", "micro_batch_size=4", "--set", "val_every=25", "--no-progress",
          *[word for setting in args.lm_set for word in ("--set", setting)]]
    record: dict = {"media": str(media.resolve()), "videos": sorted(p.name for p in media.iterdir()
                                                                    if p.suffix in (".mp4", ".mkv", ".gif")),
                    "stages": {}}
    stages = record["stages"]
    stage(stages, "tokenizer_train", ["tokenizer", "train", "--preset", "tiny", "--data", str(media), *clip,
                                      "--steps", str(args.tokenizer_steps), "--out", str(work / "tok"),
                                      "--no-progress"])
    last = json.loads((work / "tok" / "metrics.jsonl").read_text().splitlines()[-1])
    stages["tokenizer_train"]["result"] = {k: last.get(k) for k in ("step", "loss", "psnr")}
    stage(stages, "tokenizer_eval_heldout", ["eval", "reconstruct", "--tokenizer", str(work / "tok"), "--data",
                                             str(held_rows), *clip, "--out", str(work / "eval-tok")])
    stages["tokenizer_eval_heldout"]["result"] = _summary(work / "eval-tok")
    stage(stages, "data_tokenize", ["data", "tokenize", "--video-tokenizer", str(work / "tok"), "--data",
                                    str(train_rows), *clip, "--clips-per-video", str(args.clips_per_video),
                                    "--temporal-crop", "random", "--out", str(work / "shards"), "--no-progress"])
    part = json.loads(next((work / "shards").glob("summary-part-*.json")).read_text())
    stages["data_tokenize"]["result"] = {k: part[k] for k in ("rows", "clips", "skipped", "skipped_by_reason")}
    stage(stages, "lm_pretrain", ["lm", "train", "--preset", "tiny", "--data", str(work / "shards"), "--steps",
                                  str(args.lm_steps), "--out", str(work / "lm"), *lm])
    stages["lm_pretrain"]["result"] = {**lm_metrics(work / "lm"), "val_loss": val_loss(work / "lm")}
    for name, extra in (("lm_finetune", []), ("lm_lora", ["--lora", "8"])):
        stage(stages, name, ["lm", "train", "--init-from", str(work / "lm"), *extra, "--data", str(work / "shards"),
                             "--steps", str(args.finetune_steps), "--out", str(work / name), *lm])
        stages[name]["result"] = {**lm_metrics(work / name), "val_loss": val_loss(work / name),
                                  "checkpoint_mb": folder_mb(sorted((work / name).glob("step-*"))[-1])}
    for name, run in (("export", "lm_finetune"), ("export_lora_merged", "lm_lora")):
        stage(stages, name, ["lm", "export", str(work / run), "--out", str(work / name)])
        stages[name]["result"] = {"mb": folder_mb(work / name)}
    samples = work / "samples" / "s.mp4"
    stage(stages, "generate", ["generate", "--prompts", str(work / "prompts.txt"), "--num-samples", "2", "--seed",
                               "0", "--model", str(work / "export"), "-o", str(samples), "--no-progress"])
    again = work / "again" / "s.mp4"
    stage(stages, "generate_again_one_by_one", [  # the same prompts and seed, one video per batch
        "generate", "--prompts", str(work / "prompts.txt"), "--num-samples", "2", "--seed", "0", "--batch-size", "1",
        "--model", str(work / "export"), "-o", str(again), "--no-progress"])
    sidecars = [json.loads(p.read_text()) for p in sorted(samples.parent.glob("*.json"))]
    repeat = [json.loads(p.read_text()) for p in sorted(again.parent.glob("*.json"))]
    stages["generate"]["result"] = {
        "videos": len(sidecars), "sample_seeds": [s["sample_seed"] for s in sidecars],
        "same_frames_when_made_again": [a["frames_sha256"] == b["frames_sha256"] for a, b in zip(sidecars, repeat)]}
    weights = [*(["--i3d", args.i3d] if args.i3d else []), *(["--inception", args.inception] if args.inception else [])]
    stage(stages, "eval_generate", ["eval", "generate", "--model", str(work / "export"), "--prompts",
                                    str(work / "prompts.txt"), "--num-samples", "2", "--reference-data",
                                    str(held_rows), "--reference", "16", *weights, "--out", str(work / "eval-gen")])
    summary = json.loads((work / "eval-gen" / "summary.json").read_text())
    stages["eval_generate"]["result"] = {"distribution": summary.get("distribution"),
                                         "protocol_reference": summary.get("protocol", {}).get("reference_data")}
    record["total_seconds"] = round(sum(s["seconds"] for s in stages.values()), 1)
    print(json.dumps(record, indent=2, default=str))
    return 0


def _summary(folder: Path) -> dict:
    summary = json.loads((folder / "summary.json").read_text())
    keep = ("psnr", "ssim", "lpips", "clips", "skipped", "source", "metrics")
    return {k: v for k, v in summary.items() if k in keep}


if __name__ == "__main__":
    sys.exit(main())
