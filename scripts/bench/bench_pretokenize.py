"""Benchmark pre-tokenization (``reelm data tokenize``) in fp32 and bf16; prints JSON.

On the demo's clips (its world and clip spec: 9 frames of 64 x 64 at 8 fps) and a video
tokenizer (``--video-tokenizer``, e.g. a demo's ``runs/demo/tokenizer``; default a random
``tiny``, whose codes say nothing about agreement), it measures:

1. where a clip's time goes: rendering (the synthetic source's rows cut into clips, as the
   row reader does) and encoding a batch, each alone, fp32 and bf16 encoding interleaved;
2. ``tokenize_dataset`` end to end, fp32 and bf16 runs interleaved (clips/s, median of
   ``--repeats``);
3. how many codes bf16 encoding changes: the two runs' shards compared row by row (the
   fraction of codes and of clips that differ).

``--compile`` adds the same with the encoder compiled (``fp32_compiled``, ``bf16_compiled``;
``reelm data tokenize --compile``): the encode section times it after its first batch (the
compilation, reported apart), the end-to-end runs include it.

Usage: python scripts/bench/bench_pretokenize.py --video-tokenizer runs/demo/tokenizer [--clips 256] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path


def render_clips(spec, world, count: int, seed: int) -> tuple[list, float]:
    """``count`` clips of the synthetic source as ``tokenize_dataset`` reads them, and the seconds it took."""
    from reelm.data.row_reader import RowReader
    from reelm.data.sources import open_source

    source = open_source("synthetic", num_clips=count, world_cfg=world.world_config(spec, seed=seed), start=world.start)
    reader = RowReader(source, spec, seed)
    began = time.perf_counter()
    clips = [clip for index in range(count) for clip in reader(index)[1]]
    return clips, time.perf_counter() - began


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video-tokenizer", type=Path, default=None,
                        help="a video tokenizer folder (default: a random tiny one)")
    parser.add_argument("--clips", type=int, default=256, help="clips per run (default: 256)")
    parser.add_argument("--batch-size", type=int, default=32, help="clips per forward, as the demo (default: 32)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each precision, interleaved (default: 3)")
    parser.add_argument("--compile", action="store_true", help="add the paths with the encoder compiled")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from reelm.core.device import autocast, native_bf16
    from reelm.data.shards import load_shards
    from reelm.data.video_read import frames_to_tensor
    from reelm.demo.demo_config import DemoConfig
    from reelm.tokenizer.model import PRESETS, VideoTokenizer
    from reelm.tokenizer.pretokenize import TokenizeConfig, tokenize_dataset
    from reelm.tokenizer.tokenizer_checkpoint import load_tokenizer, save_tokenizer

    demo = DemoConfig()
    cpu = torch.device("cpu")
    result = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "native_bf16": native_bf16(cpu),
              "clips": args.clips, "batch_size": args.batch_size,
              "clip": "the demo's: 9 frames, 64x64, 8 fps, its world"}
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = args.video_tokenizer
        if tokenizer is None:
            torch.manual_seed(0)
            tokenizer = Path(tmp) / "vtok"
            save_tokenizer(VideoTokenizer(PRESETS["tiny"]()).eval(), tokenizer)
        result["tokenizer"] = str(args.video_tokenizer or "tiny (random weights)")

        clips, render_s = render_clips(demo.clip, demo.world, args.clips, demo.seed)
        variants = {"fp32": (False, False), "bf16": (True, False)}
        if args.compile:
            variants.update({"fp32_compiled": (False, True), "bf16_compiled": (True, True)})
        batches = [torch.stack([frames_to_tensor(c.frames) for c in clips[i:i + args.batch_size]])
                   for i in range(0, len(clips) - args.batch_size + 1, args.batch_size)]  # full batches: one shape
        models, compile_s = {}, {}
        for name, (bf16, compiled) in variants.items():
            models[name] = load_tokenizer(tokenizer).eval()
            if compiled:
                models[name].encoder = torch.compile(models[name].encoder, dynamic=False)
                began = time.perf_counter()
                with torch.no_grad(), autocast(cpu, bf16):
                    models[name].encode(batches[0])
                compile_s[name] = round(time.perf_counter() - began, 1)
        encode_s = {name: [] for name in variants}
        with torch.no_grad():
            for r in range(args.repeats + 1):  # the first round warms up
                for name in (list(variants) if r % 2 == 0 else list(variants)[::-1]):
                    began = time.perf_counter()
                    for video in batches:
                        with autocast(cpu, variants[name][0]):
                            models[name].encode(video)
                    if r:
                        encode_s[name].append(time.perf_counter() - began)
        encoded = len(batches) * args.batch_size
        result["render_clips_per_s"] = round(len(clips) / render_s, 1)
        result["encode_clips_per_s"] = {name: round(encoded / statistics.median(t), 1) for name, t in encode_s.items()}
        if compile_s:
            result["first_compiled_batch_s"] = compile_s

        cfg = {name: TokenizeConfig(clip=demo.clip, world=demo.world, num_clips=args.clips, chunk_rows=args.clips,
                                    batch_size=args.batch_size, text_vocab_size=demo.text_vocab_size, seed=demo.seed,
                                    precision="bf16" if bf16 else "fp32", compile=compiled)
               for name, (bf16, compiled) in variants.items()}
        rates = {name: [] for name in variants}
        for r in range(args.repeats):
            for name in (list(variants) if r % 2 == 0 else list(variants)[::-1]):
                torch._dynamo.reset()  # every compiled run compiles anew, as a fresh command would
                began = time.perf_counter()
                summary = tokenize_dataset("synthetic", tokenizer, Path(tmp) / f"{name}{r}", cfg[name], progress=False)
                rates[name].append(summary["clips"] / (time.perf_counter() - began))
        result["tokenize_clips_per_s_runs"] = {name: [round(x, 1) for x in v] for name, v in rates.items()}
        result["tokenize_clips_per_s"] = {name: round(statistics.median(v), 1) for name, v in rates.items()}
        rate = result["tokenize_clips_per_s"]
        result["over_fp32"] = {name: round(rate[name] / rate["fp32"], 3) for name in variants if name != "fp32"}

        def codes_of(name):
            return sorted(((row["row"], row["clip"]), np.asarray(row["codes"]))
                          for row in load_shards(Path(tmp) / f"{name}0").dataset)

        exact = codes_of("fp32")
        result["codes_differing_from_fp32"] = {}
        for name in variants:
            if name == "fp32":
                continue
            other = codes_of(name)
            assert [key for key, _ in exact] == [key for key, _ in other], "the runs kept different clips"
            differing = [int((x != y).sum()) for (_, x), (_, y) in zip(exact, other)]
            total = sum(len(x) for _, x in exact)
            result["codes_differing_from_fp32"][name] = {
                "fraction": round(sum(differing) / total, 5), "codes": sum(differing), "of": total,
                "clips_with_any": sum(d > 0 for d in differing), "clips": len(differing)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
