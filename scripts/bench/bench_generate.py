"""Benchmark token generation: reelm's engine against plain ``model.generate()``, guidance and batching.

For each preset, one random-weight LM over a token layout of ``--text-vocab`` text ids
(a word-level tokenizer, no training), the special tokens and ``--codebook`` video codes on
a ``--latent-hw`` grid, and one t2v prompt (a caption of ``--caption-ids`` text ids):

- ``reelm``: :class:`reelm.lm.engine.GenerationEngine` generating one constrained video of
  ``--frames`` latent frames (``frames * h * w`` codes, ``<eov>``, ``<eos>``) at batch 1;
- ``hf_generate``: the same model's ``generate()`` producing the same number of tokens
  (sampling, top-k, its default dynamic cache, no constraints, ``min_new_tokens`` so it
  never stops early);
- ``reelm_cfg``: the engine with classifier-free guidance (``--cfg-scale``; the
  unconditional rows in the same batch);
- ``reelm_batch`` (presets of ``--batch-presets``): ``--batch`` prompts of different
  caption lengths in one call, and ``reelm_samples``: ``--batch`` samples of the one prompt;
- optional (``--paths``): ``reelm_layers`` (the engine stepping through the model's own
  decoder layers instead of its lean step), ``hf_generate_static`` (``generate()`` with
  ``cache_implementation="static"``), and the engine reading fewer bytes a step, against the fp32
  ``generate()``: ``reelm_bf16`` / ``reelm_bf16_batch`` over a bf16 copy of the weights (its KV
  cache is bf16 too), ``reelm_fp16`` / ``reelm_fp16_batch`` and ``reelm_int8`` / ``reelm_int8_batch``
  over the fp32 model with the decode step's weights packed in fp16 or int8
  (:mod:`reelm.lm.decode_weights`; fp32 cache). For each of these the report also gives the share
  of tokens it samples as the fp32 engine does under the same seeds (``bf16_token_agreement``, ...).

The paths run interleaved, the order reversing from repeat to repeat, after one untimed
warm-up each, so a drift in the machine's speed falls on all alike; the figures are medians
over ``--repeats``; each ratio comes twice: of the medians, and (``_paired``) the median
over rounds of the ratio within a round, which a drift between rounds does not move. Each
call is timed whole (prefill and decode). The report also holds
the bytes a video step reads (the weights, with the head's code rows only, in each format, and
the mean cached keys and values of one row) and a measured read bandwidth: their quotient bounds
the tokens/s of any decoder reading that many bytes on this machine (``read_bound_tokens_per_s``,
at batch 1 and at ``--batch`` rows).

Prints one JSON object, assembled from the sections of ``SECTIONS``.

``--video-positions`` benchmarks the LMs with video positions (the demo's) instead of plain Llamas.

Usage::

    python scripts/bench/bench_generate.py --presets tiny,small --threads 1 [--video-positions]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

DEFAULT_PATHS = ("reelm", "hf_generate", "reelm_cfg", "reelm_batch", "reelm_samples")
VARIANTS = ("bf16", "fp16", "int8")  # bf16: a bf16 copy of the model; fp16, int8: the decode step's weights packed
BATCH_PATHS = ("reelm_batch", "reelm_samples", *(f"reelm_{v}_batch" for v in VARIANTS))
OPTIONAL_PATHS = ("reelm_layers", "hf_generate_static", *(f"reelm_{v}{b}" for v in VARIANTS for b in ("", "_batch")))


def bench_layout(text_vocab: int, codebook: int, latent_hw: tuple[int, int]):
    """A token layout of a word-level text vocabulary of ``text_vocab`` ids and ``codebook`` codes."""
    from tokenizers import Tokenizer, models

    from reelm.data.token_layout import TokenLayout

    words = {f"w{i}": i for i in range(text_vocab - 1)}
    words["[UNK]"] = text_vocab - 1
    text = Tokenizer(models.WordLevel(words, unk_token="[UNK]"))
    return TokenLayout.build(text, codebook_size=codebook, latent_hw=latent_hw)


def time_interleaved(paths: dict[str, Callable[[], int]], repeats: int) -> dict[str, tuple[list[float], int]]:
    """Each path once untimed, then ``repeats`` rounds of every path, the order reversing from round to round.

    A path returns the tokens it generated; per path: the seconds of each timed call and
    its token count (the same every call).
    """
    names = list(paths)
    tokens = {name: paths[name]() for name in names}
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for i in range(repeats):
        for name in (names if i % 2 == 0 else names[::-1]):
            start = time.perf_counter()
            count = paths[name]()
            seconds[name].append(time.perf_counter() - start)
            if count != tokens[name]:
                raise RuntimeError(f"{name}: generated {count} tokens, {tokens[name]} before")
    return {name: (seconds[name], tokens[name]) for name in names}


def read_bandwidth(megabytes: int = 256, repeats: int = 5) -> dict[str, float]:
    """Bytes per second of two single passes over a large fp32 tensor (medians of ``repeats``): a sum, and a
    matrix-vector product (the read of a decode step's projections); ``best`` is the faster of the two."""
    import torch

    data = torch.ones(megabytes * 2**20 // 4)
    matrix, vector = data.view(-1, 1024), torch.ones(1024)
    figures = {}
    for name, read in (("sum", data.sum), ("matrix_vector", lambda: torch.mv(matrix, vector))):
        read()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            read()
            times.append(time.perf_counter() - start)
        figures[name] = round(data.numel() * 4 / statistics.median(times))
    figures["best"] = max(figures.values())
    return figures


def token_agreement(reference, other, requests, sampling, seeds) -> float:
    """The share of generated tokens ``other`` samples as ``reference`` does, call for call under the same seeds
    (position by position: a first difference usually changes what follows)."""
    same = total = 0
    for seed in seeds:
        a = reference.generate(requests, sampling=sampling, seed=seed).ids
        b = other.generate(requests, sampling=sampling, seed=seed).ids
        width = min(a.shape[1], b.shape[1])
        same += int((a[:, :width] == b[:, :width]).sum())
        total += a.size
    return round(same / total, 4)


def bench_preset(name: str, args, paths: list[str]) -> dict:
    import copy

    import numpy as np
    import torch

    from reelm.lm.decode_weights import bytes_per_weight
    from reelm.lm.engine import GenerationEngine, Request
    from reelm.lm.flops import non_embedding_parameters
    import dataclasses

    from reelm.lm.model import build_model, layout_grid, preset
    from reelm.lm.sampling import Sampling

    layout = bench_layout(args.text_vocab, args.codebook, args.latent_hw)
    torch.manual_seed(0)
    cfg = dataclasses.replace(preset(name), video_positions=args.video_positions)
    model = build_model(cfg, layout.vocab_size, bos_id=layout.bos_id, eos_id=layout.eos_id,
                        pad_id=layout.pad_id, attn_implementation="sdpa", grid=layout_grid(layout)).eval()
    caption = np.arange(args.caption_ids) % layout.text_vocab_size
    prompt = layout.prompt("t2v", text=caption)
    request = Request(prompt, frames=args.frames)
    batch = [Request(layout.prompt("t2v", text=caption[: max(1, args.caption_ids - 2 * i)]), frames=args.frames)
             for i in range(args.batch)]
    sampling = Sampling(temperature=args.temperature, top_k=args.top_k)
    engine = GenerationEngine(model, layout)
    layers = GenerationEngine(model, layout, step="layers")
    variants = {}  # the engines reading fewer bytes a step, by variant
    for variant in VARIANTS:
        if {f"reelm_{variant}", f"reelm_{variant}_batch"} & set(paths):
            variants[variant] = (GenerationEngine(copy.deepcopy(model).to(torch.bfloat16), layout) if variant == "bf16"
                                 else GenerationEngine(model, layout, weights=variant))
    tokens_per_video = args.frames * layout.codes_per_frame + 2
    prompt_ids = torch.from_numpy(prompt)[None]
    seeds = iter(range(10**9))

    def reelm(chosen, requests, cfg_scale=1.0, num_samples=1):
        return lambda: chosen.generate(requests, sampling=sampling, cfg_scale=cfg_scale, num_samples=num_samples,
                                       seed=next(seeds)).stats.tokens

    def hf_generate(**kwargs):
        def run():
            with torch.inference_mode():
                out = model.generate(prompt_ids, do_sample=True, top_k=args.top_k, temperature=args.temperature,
                                     max_new_tokens=tokens_per_video, min_new_tokens=tokens_per_video, **kwargs)
            return out.shape[1] - prompt_ids.shape[1]
        return run

    available = {
        "reelm": reelm(engine, [request]),
        "hf_generate": hf_generate(),
        "reelm_cfg": reelm(engine, [request], args.cfg_scale),
        "reelm_batch": reelm(engine, batch),
        "reelm_samples": reelm(engine, [request], num_samples=args.batch),
        "reelm_layers": reelm(layers, [request]),
        "hf_generate_static": hf_generate(cache_implementation="static"),
    }
    for variant, variant_engine in variants.items():
        available[f"reelm_{variant}"] = reelm(variant_engine, [request])
        available[f"reelm_{variant}_batch"] = reelm(variant_engine, batch)
    chosen = {path: available[path] for path in paths if path not in BATCH_PATHS or name in args.batch_presets}
    measured = time_interleaved(chosen, args.repeats)

    head = model.get_output_embeddings().weight
    config = model.config
    weights = non_embedding_parameters(model) + layout.codebook_size * head.shape[1]
    kv_bytes = 2 * config.num_hidden_layers * config.num_key_value_heads * (config.hidden_size //
                                                                              config.num_attention_heads)
    kv_row = kv_bytes * head.element_size() * (len(prompt) + tokens_per_video // 2)
    step_bytes = {fmt: int(weights * bytes_per_weight(fmt, head.dtype)) for fmt in ("model", "fp16", "int8")}
    step_bytes["bf16"] = weights * 2
    result = {
        "non_embedding_parameters": non_embedding_parameters(model),
        "vocab_size": model.config.vocab_size,
        "decode_step": engine.generate([Request(prompt, frames=1)], seed=0).stats.step,
        "weight_bytes_per_video_step": step_bytes["model"],
        "weight_bytes_per_video_step_by_format": step_bytes,
        "kv_bytes_per_row_step_mean": kv_row,
    }
    if args.bandwidth:
        kv_of = {"bf16": kv_row // 2}  # the bf16 copy's cache is bf16; the packed formats keep an fp32 cache
        bound = {}
        for fmt, nbytes in step_bytes.items():
            row = kv_of.get(fmt, kv_row)
            bound[fmt] = {"batch_1": round(args.bandwidth / (nbytes + row), 1),
                          f"batch_{args.batch}": round(args.batch * args.bandwidth / (nbytes + args.batch * row), 1)}
        result["read_bound_tokens_per_s"] = bound
    for path, (seconds, tokens) in measured.items():
        median = statistics.median(seconds)
        result[path] = {"tokens": tokens, "seconds_median": round(median, 6),
                        "seconds_all": [round(s, 6) for s in seconds], "tokens_per_s": round(tokens / median, 3)}

    def ratio(a: str, b: str, key: str) -> float | None:
        return round(result[a][key] / result[b][key], 4) if a in result and b in result else None

    def paired(a: str, b: str, of: str = "tokens_per_s") -> float | None:
        """The median over rounds of a's tokens/s (or seconds) over b's in the same round."""
        if a not in measured or b not in measured:
            return None
        (seconds_a, tokens_a), (seconds_b, tokens_b) = measured[a], measured[b]
        if of == "seconds":
            return round(statistics.median(sa / sb for sa, sb in zip(seconds_a, seconds_b)), 4)
        return round(statistics.median(tokens_a * sb / (tokens_b * sa) for sa, sb in zip(seconds_a, seconds_b)), 4)

    ratios = {
        "reelm_over_hf_generate": ("reelm", "hf_generate"),
        "batch_over_single_tokens_per_s": ("reelm_batch", "reelm"),
        "samples_over_single_tokens_per_s": ("reelm_samples", "reelm"),
        "lean_over_layers": ("reelm", "reelm_layers"),
        "hf_static_over_dynamic": ("hf_generate_static", "hf_generate"),
    }
    for variant in VARIANTS:
        ratios[f"reelm_{variant}_over_hf_generate"] = (f"reelm_{variant}", "hf_generate")
        ratios[f"reelm_{variant}_over_reelm"] = (f"reelm_{variant}", "reelm")
        ratios[f"{variant}_batch_over_{variant}_single_tokens_per_s"] = (f"reelm_{variant}_batch", f"reelm_{variant}")
        ratios[f"{variant}_batch_over_fp32_batch_tokens_per_s"] = (f"reelm_{variant}_batch", "reelm_batch")
    for key, (a, b) in ratios.items():
        result[key] = ratio(a, b, "tokens_per_s")
        result[key + "_paired"] = paired(a, b)
    for variant, variant_engine in variants.items():
        if f"reelm_{variant}" in paths and args.agreement_seeds:
            result[f"{variant}_token_agreement"] = token_agreement(engine, variant_engine, [request], sampling,
                                                                   seeds=range(args.agreement_seeds))
    result["cfg_over_unguided_time"] = ratio("reelm_cfg", "reelm", "seconds_median")
    result["cfg_over_unguided_time_paired"] = paired("reelm_cfg", "reelm", of="seconds")
    return {key: value for key, value in result.items() if value is not None}


def section_presets(args) -> dict:
    paths = [p for p in args.paths.split(",") if p]
    unknown = sorted(set(paths) - set(DEFAULT_PATHS) - set(OPTIONAL_PATHS))
    if unknown:
        raise SystemExit(f"--paths: unknown {unknown}; choose from {list(DEFAULT_PATHS + OPTIONAL_PATHS)}")
    results = {}
    for name in [p for p in args.presets.split(",") if p]:
        print(f"bench_generate: preset {name}", file=sys.stderr)
        results[name] = bench_preset(name, args, paths)
    return results


def section_bandwidth(args) -> dict:
    figures = args.bandwidth_figures or read_bandwidth()
    return {"read_bytes_per_s": figures["best"], "read_bytes_per_s_by_probe": figures}


def section_end_to_end(args) -> dict:
    """Seconds from ``reelm generate`` on the command line to a finished MP4 (new process each time: start-up,
    model load, generation, decoding, writing the video, its contact sheet and sidecar), with random ``tiny``
    weights at 64 x 64 x 17 frames (5 latent frames of 8 x 8 codes)."""
    import subprocess
    import tempfile

    import torch

    from reelm.data.text_tokenizer import train_text_tokenizer
    from reelm.data.token_layout import TokenLayout
    from reelm.lm.lm_checkpoint import export_lm
    from reelm.lm.model import build_model, preset
    from reelm.tokenizer.tokenizer_checkpoint import save_tokenizer, tokenizer_identity
    from reelm.tokenizer.model import PRESETS, VideoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        torch.manual_seed(0)
        video_tokenizer = VideoTokenizer(PRESETS["tiny"]()).eval()
        save_tokenizer(video_tokenizer, root / "tok")
        words = ["red", "green", "blue", "circle", "square", "moves", "to", "the", "left", "right", "up", "down"]
        text = train_text_tokenizer([" ".join(words[i:] + words[:i]) for i in range(len(words))] * 4, vocab_size=300)
        layout = TokenLayout.build(text, codebook_size=video_tokenizer.codebook_size, latent_hw=(8, 8),
                                   video_tokenizer=tokenizer_identity(video_tokenizer))
        model = build_model(preset("tiny"), layout.vocab_size, bos_id=layout.bos_id, eos_id=layout.eos_id,
                            pad_id=layout.pad_id)
        clip = {"num_frames": 17, "fps": 8.0, "size": 64, "temporal_crop": "center", "clips_per_video": 1}
        folder = export_lm(root / "model", model, layout, preset("tiny"), video_tokenizer=root / "tok", clip=clip)
        command = [str(Path(sys.executable).parent / "reelm"), "generate", "a red circle moves to the left",
                   "--model", str(folder), "-o", str(root / "out.mp4"), "--no-progress", "--device", "cpu"]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        seconds = []
        for _ in range(args.repeats):
            began = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, env=env)
            seconds.append(time.perf_counter() - began)
        sidecar = json.loads((root / "out.json").read_text())
    return {"command": "reelm generate PROMPT --model FOLDER -o out.mp4 (tiny LM, tiny tokenizer, random weights)",
            "seconds_to_mp4_median": statistics.median(seconds), "seconds": seconds,
            "generate_s_in_process": sidecar["timings"]["total_s"], "tokens": sidecar["tokens"]}


SECTIONS: dict[str, Callable[[argparse.Namespace], dict]] = {
    "presets": section_presets,
    "bandwidth": section_bandwidth,
    "end_to_end": section_end_to_end,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="tiny,small", help="comma-separated LM presets (default: tiny,small)")
    parser.add_argument("--frames", type=int, default=5, help="latent frames per video (default: 5)")
    parser.add_argument("--latent-hw", default="16,16", help="latent grid h,w (default: 16,16: 1282 tokens a video)")
    parser.add_argument("--text-vocab", type=int, default=4000, help="text ids in the layout (default: 4000)")
    parser.add_argument("--codebook", type=int, default=1024, help="video codes in the layout (default: 1024)")
    parser.add_argument("--caption-ids", type=int, default=16, help="text ids in the prompt's caption (default: 16)")
    parser.add_argument("--top-k", type=int, default=100, help="top-k of every path (default: 100)")
    parser.add_argument("--temperature", type=float, default=1.0, help="temperature of every path (default: 1)")
    parser.add_argument("--cfg-scale", type=float, default=3.0, help="guidance scale of reelm_cfg (default: 3)")
    parser.add_argument("--batch", type=int, default=8,
                        help="prompts of reelm_batch, samples of reelm_samples (default: 8)")
    parser.add_argument("--batch-presets", default="tiny",
                        help="presets that run reelm_batch and reelm_samples (default: tiny)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per path (default: 5)")
    parser.add_argument("--paths", default=",".join(DEFAULT_PATHS),
                        help=f"comma-separated paths (default: {','.join(DEFAULT_PATHS)}; "
                             f"optional: {','.join(OPTIONAL_PATHS)})")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    parser.add_argument("--agreement-seeds", type=int, default=8, metavar="N",
                        help="seeds of the token agreement of each variant with fp32 (default: 8; 0: none; on these "
                        "random weights it says little: bench_decode_weights.py measures it on a trained model)")
    parser.add_argument("--video-positions", action="store_true",
                        help="LMs with video positions (reelm.lm.model.VideoLlamaForCausalLM), as the demo trains")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated report sections (default: {','.join(SECTIONS)})")
    args = parser.parse_args(argv)
    args.latent_hw = tuple(int(v) for v in args.latent_hw.split(","))
    args.batch_presets = [p for p in args.batch_presets.split(",") if p]

    import torch
    import transformers

    from reelm.core.device import cpu_name

    torch.set_num_threads(args.threads)
    report = {
        "settings": {
            "frames": args.frames, "latent_hw": list(args.latent_hw),
            "tokens_per_video": args.frames * args.latent_hw[0] * args.latent_hw[1] + 2,
            "text_vocab": args.text_vocab, "codebook": args.codebook, "caption_ids": args.caption_ids,
            "top_k": args.top_k, "temperature": args.temperature, "cfg_scale": args.cfg_scale, "batch": args.batch,
            "batch_presets": args.batch_presets, "repeats": args.repeats,
            "dtype": "float32 (reelm_bf16: bfloat16 weights and cache; reelm_fp16, reelm_int8: the decode step's "
                     "weights packed, fp32 cache)",
            "video_positions": args.video_positions,
        },
        "environment": {
            "threads": torch.get_num_threads(), "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "cpu": cpu_name(), "cores": os.cpu_count(),
            "load_average_start": list(os.getloadavg()),
        },
    }
    sections = [s for s in args.sections.split(",") if s]
    # measured first, alone, so that the presets can state each path's bound
    args.bandwidth_figures = read_bandwidth() if "bandwidth" in sections else None
    args.bandwidth = args.bandwidth_figures["best"] if args.bandwidth_figures else None
    for name in sections:
        if name not in SECTIONS:
            raise SystemExit(f"--sections: unknown {name!r}; choose from {list(SECTIONS)}")
        with contextlib.redirect_stdout(sys.stderr):  # generate() may import DeepSpeed, which logs to stdout
            report[name] = SECTIONS[name](args)
    report["environment"]["load_average_end"] = list(os.getloadavg())
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
