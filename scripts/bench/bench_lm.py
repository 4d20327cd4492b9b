"""Benchmark LM training throughput: reelm's DeepSpeed path against a bare PyTorch loop, and MFU.

For each preset, on the same batches (blocks of random video codes of a token layout of
``--vocab-size`` ids) and from the same initial weights:

- ``deepspeed``: the engine and step function ``reelm lm train`` uses (``prepare_batch``, ``build_engine``,
  ``train_step``: ZeRO stage of ``--deepspeed-config``, gradient clipping, per-task loss
  accounting), in-process on 1 rank;
- ``bare``: the same Hugging Face model with a plain forward (``labels=``), backward,
  gradient clipping and fused ``torch.optim.AdamW`` step.

With ``--data SHARDS`` the batches are packed blocks of those shards instead (the loader of
``reelm lm train``, the demo's task mixture), and ``--split on`` (or ``both``) adds the same
paths fed one document a row (suffix ``_split``: ``reelm.data.packing.split_documents``, as
``reelm lm train`` does under SDPA); ``--video-positions`` builds the model as the demo's.
``--attention train`` (or ``both``) builds the models with the attention ``reelm lm train``
picks for the precision (suffix ``_trainattn`` where that is not plain SDPA:
``reelm.lm.model.training_attention``, fp32 SDPA for short, narrow rows in bf16 on CPUs).

Each path runs eager and with its decoder layers compiled (``deepspeed_compiled``,
``bare_compiled``; ``reelm lm train`` compiles them by default on CPUs); ``--compile off`` or
``on`` keeps one of the two. ``--precision bf16`` (or ``both``) adds the same paths in bf16
mixed precision (suffix ``_bf16``: DeepSpeed's ``torch_autocast`` section, as ``reelm lm
train`` uses on CPUs with native bf16, and ``torch.autocast`` in the bare loop), each measured
against the bf16 matmul peak.

The paths run interleaved: every batch goes through each, the order reversing from step to
step, so that a drift in the machine's speed during the run falls on all alike and their
ratios are fair ones. Warm-up steps are excluded; tokens/s is the median over the timed steps.
Achieved FLOP/s is the median of the timed steps' model FLOPs (a step's rows x length tokens,
at ``flops_per_token`` of that length: 6 x non-embedding parameters + LM head + causal
attention) over the median step time, reported as a fraction of this machine's peak (fp32 or
bf16), measured in the same run before and after the presets as the median of large
``torch.mm`` timings on all threads (the higher reading counts). Tokens/s counts the blocks'
tokens, padding included, whether the path splits them or not, so the paths' tokens/s compare
as seconds per batch. The minor page faults of every step are reported too: glibc malloc is
set to keep freed memory as ``reelm lm train`` sets it on CPUs (``--malloc default`` leaves
glibc as it is), and the faults show when the allocator has warmed up.
Prints one JSON object.

Usage::

    python scripts/bench/bench_lm.py --presets tiny,small --block-size 1024 --micro-batch 4
    python scripts/bench/bench_lm.py --presets tiny --data runs/demo/shards --video-positions --block-size 512 \
        --micro-batch 8 --compile on --precision bf16 --split both      # the demo's LM step, packed vs split
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import platform
import resource
import statistics
import sys
import time


def bench_layout(vocab_size: int):
    """A token layout of ``vocab_size`` ids: a small caption BPE, the special tokens, the rest video codes."""
    from reelm.data.text_tokenizer import train_text_tokenizer
    from reelm.data.token_layout import SPECIAL_TOKENS, TokenLayout

    text = train_text_tokenizer([f"a {c} square moves {d}" for c in ("red", "blue") for d in ("up", "down")],
                                vocab_size=300)
    codebook = vocab_size - text.get_vocab_size() - len(SPECIAL_TOKENS)
    return TokenLayout.build(text, codebook_size=codebook, latent_hw=(1, 1))


def make_batches(count: int, micro_batch: int, block_size: int, layout, seed: int) -> list[dict]:
    """Loader batches (one document of random video codes per block)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        ids = torch.randint(layout.code_offset, layout.vocab_size, (micro_batch, block_size), generator=generator)
        labels = ids.clone()
        labels[:, 0] = -100
        batches.append({
            "input_ids": ids,
            "labels": labels,
            "position_ids": torch.arange(block_size).expand(micro_batch, -1).contiguous(),
            "task_index": torch.zeros_like(ids),
        })
    return batches


def shard_batches(shards, count: int, micro_batch: int, block_size: int) -> list[dict]:
    """``count`` loader batches of ``shards`` as ``reelm lm train`` packs them, under the demo's task mixture."""
    from reelm.data.lm_data import LoaderConfig, PackedLoader
    from reelm.demo.demo_config import demo_lm_training

    mixture = demo_lm_training().mixture
    loader = PackedLoader(shards.dataset, shards.layout, LoaderConfig(block_size=block_size, batch_size=micro_batch,
                                                                      seed=0, mixture=mixture))
    return [loader.next_batch() for _ in range(count)]


def time_interleaved(steps: dict, batches: list[dict], warmup: int) -> dict[str, tuple[list[float], list[int]]]:
    """Each batch through every path of ``steps`` in turn, the order reversing from batch to batch.

    Per path: the seconds of each step after the warm-up, and the minor page faults of every
    step (warm-up included).
    """
    names = list(steps)
    timings: dict[str, list[float]] = {name: [] for name in names}
    faults: dict[str, list[int]] = {name: [] for name in names}
    for i, batch in enumerate(batches):
        for name in (names if i % 2 == 0 else names[::-1]):
            faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            start = time.perf_counter()
            steps[name](batch)
            if i >= warmup:
                timings[name].append(time.perf_counter() - start)
            faults[name].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before)
    return {name: (timings[name], faults[name]) for name in names}


COMPILE_MODES = {"off": (False,), "on": (True,), "both": (False, True)}
PRECISION_MODES = {"fp32": (False,), "bf16": (True,), "both": (False, True)}
SPLIT_MODES = {"off": (False,), "on": (True,), "both": (False, True)}


def bench_preset(name: str, args) -> dict:
    import torch

    from reelm.lm.deepspeed_setup import build_engine
    from reelm.lm.ds_config import load_deepspeed_config, resolve_deepspeed_config
    from reelm.lm.flops import flops_per_token, non_embedding_parameters
    from reelm.lm.loss_meter import LossMeter
    from reelm.data.packing import split_documents
    from reelm.data.shards import load_shards
    from reelm.lm.model import build_model, compile_layers, layout_grid, preset, training_attention
    from reelm.core.device import autocast
    from reelm.lm.train import LMTrainConfig, prepare_batch, train_step

    lm_cfg = dataclasses.replace(preset(name), video_positions=args.video_positions)
    cfg = LMTrainConfig(micro_batch_size=args.micro_batch, block_size=args.block_size, steps=10**6, warmup_steps=0,
                      zero_stage=int(args.deepspeed_config[-1]))
    count = args.warmup + args.steps
    if args.data:
        shards = load_shards(args.data)
        layout = shards.layout
        batches = shard_batches(shards, count, args.micro_batch, args.block_size)
    else:
        layout = bench_layout(args.vocab_size)
        batches = make_batches(count, args.micro_batch, args.block_size, layout, seed=0)
    tokens = args.micro_batch * args.block_size

    def ds_config(bf16: bool) -> dict:
        return resolve_deepspeed_config(load_deepspeed_config(args.deepspeed_config), cfg, world_size=1, bf16=bf16,
                                        device_type="cpu")

    def fresh_model(compiled: bool, attn: str = "sdpa"):
        torch.manual_seed(0)
        model = build_model(lm_cfg, layout.vocab_size, bos_id=layout.bos_id, eos_id=layout.eos_id,
                            pad_id=layout.pad_id, attn_implementation=attn, grid=layout_grid(layout))
        if compiled:
            compile_layers(model)  # as reelm lm train does with compile=true
        return model.train()

    def deepspeed_step(compiled: bool, bf16: bool, split: bool, attn: str):
        engine, _ = build_engine(fresh_model(compiled, attn), cfg, ds_config(bf16))
        engine.train()
        meter = LossMeter("cpu")
        return lambda batch: train_step(engine, [prepare_batch(batch, layout, "cpu", split=split)], meter)

    def bare_step(compiled: bool, bf16: bool, split: bool, attn: str):
        model = fresh_model(compiled, attn)
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                                      weight_decay=cfg.weight_decay, fused=True)  # the kernel reelm's optimizer uses

        def step(batch):
            if split:
                batch = split_documents(batch, layout.pad_id)
            with autocast(torch.device("cpu"), bf16):  # reelm.core.device's, as the tokenizer trainer uses it
                loss = model(input_ids=batch["input_ids"], labels=batch["labels"],
                             position_ids=batch["position_ids"], use_cache=False).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        return step

    probe = fresh_model(False)
    result = {"non_embedding_parameters": non_embedding_parameters(probe), "vocab_size": probe.config.vocab_size,
              "flops_per_token": flops_per_token(probe, args.block_size)}

    def model_flops(batch: dict) -> float:
        """The model FLOPs of one step on ``batch`` as fed: rows x length tokens at that length's attention."""
        rows, length = batch["input_ids"].shape
        return rows * length * flops_per_token(probe, length)

    packed_flops = [model_flops(batch) for batch in batches[args.warmup:]]
    split_flops = [model_flops(split_documents(batch, layout.pad_id)) for batch in batches[args.warmup:]]
    del probe
    steps = {}
    for split in SPLIT_MODES[args.split]:
        for bf16 in PRECISION_MODES[args.precision]:
            chosen = training_attention("cpu", bf16=bf16)
            attentions = {"sdpa": ["sdpa"], "train": [chosen], "both": sorted({"sdpa", chosen})}[args.attention]
            for attn in attentions:
                for compiled in COMPILE_MODES[args.compile]:
                    suffix = (("_compiled" if compiled else "") + ("_bf16" if bf16 else "")
                              + ("_split" if split else "") + ("_trainattn" if attn != "sdpa" else ""))
                    steps["deepspeed" + suffix] = deepspeed_step(compiled, bf16, split, attn)
                    steps["bare" + suffix] = bare_step(compiled, bf16, split, attn)
    measured = time_interleaved(steps, batches, args.warmup)
    del steps
    gc.collect()

    for path, (timings, faults) in measured.items():
        tokens_per_s = tokens / statistics.median(timings)  # the blocks' tokens, padding included, split or not
        flops = split_flops if "_split" in path else packed_flops
        result[path] = {
            "tokens_per_s": round(tokens_per_s, 1),
            "step_s_median": round(statistics.median(timings), 4),
            "step_s_all": [round(t, 4) for t in timings],
            "achieved_flops": round(statistics.median(flops) / statistics.median(timings)),
            "page_faults_per_step": faults,
        }

    def ratio(a: str, b: str) -> float:
        return round(result[a]["tokens_per_s"] / result[b]["tokens_per_s"], 4)

    for suffix in ("", "_compiled", "_bf16", "_compiled_bf16"):
        for variant in ("", "_split", "_trainattn", "_split_trainattn"):
            if f"deepspeed{suffix}{variant}" in result:
                result[f"deepspeed{suffix}{variant}_over_bare{suffix}{variant}"] = ratio(
                    f"deepspeed{suffix}{variant}", f"bare{suffix}{variant}")
            if variant and f"deepspeed{suffix}{variant}" in result and f"deepspeed{suffix}" in result:
                result[f"{variant[1:]}_over_packed_sdpa{suffix}"] = {
                    path: ratio(f"{path}{suffix}{variant}", path + suffix) for path in ("deepspeed", "bare")}
    if args.compile == "both":
        result["compiled_over_eager"] = {path: ratio(path + "_compiled", path) for path in ("deepspeed", "bare")
                                         if path in result}
        if args.precision != "fp32":
            result["compiled_over_eager_bf16"] = {path: ratio(f"{path}_compiled_bf16", f"{path}_bf16")
                                                  for path in ("deepspeed", "bare")}
    if args.precision == "both":
        result["bf16_over_fp32"] = {path: ratio(f"{path}_bf16", path) for path in
                                    ("deepspeed", "bare", "deepspeed_compiled", "bare_compiled") if path in result}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="tiny,small", help="comma-separated LM presets (default: tiny,small)")
    parser.add_argument("--block-size", type=int, default=1024, help="tokens per block (default: 1024)")
    parser.add_argument("--micro-batch", type=int, default=4, help="blocks per step (default: 4)")
    parser.add_argument("--vocab-size", type=int, default=8192, help="LM vocabulary (default: 8192)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per path (default: 10)")
    parser.add_argument("--warmup", type=int, default=5,
                        help="untimed warm-up steps per path; the allocator takes 3 to 5 to warm up (default: 5)")
    parser.add_argument("--deepspeed-config", default="zero2", choices=("zero0", "zero1", "zero2", "zero3"),
                        help="shipped DeepSpeed config of the DeepSpeed path (default: zero2, as reelm lm train)")
    parser.add_argument("--malloc", default="caching", choices=("caching", "default"),
                        help="caching: glibc malloc keeps freed memory, as reelm lm train sets it on CPUs "
                             "(reelm.core.cpu_allocator); default: glibc's defaults (default: caching)")
    parser.add_argument("--compile", default="both", choices=tuple(COMPILE_MODES),
                        help="torch.compile each decoder layer, as reelm lm train does on CPUs: off, on, or both "
                             "(eager and compiled paths interleaved in one run) (default: both)")
    parser.add_argument("--precision", default="fp32", choices=tuple(PRECISION_MODES),
                        help="fp32, bf16 (mixed precision, as reelm lm train on CPUs with native bf16) or both "
                             "(interleaved in one run) (default: fp32)")
    parser.add_argument("--data", default=None,
                        help="pre-tokenized shards (reelm data tokenize, a demo's shards/): packed blocks of them "
                             "under the demo's task mixture instead of random codes")
    parser.add_argument("--video-positions", action="store_true",
                        help="build the model with video positions, as the demo's LM")
    parser.add_argument("--split", default="off", choices=tuple(SPLIT_MODES),
                        help="feed the model one document a row (as reelm lm train under SDPA): off, on, or both "
                             "(interleaved in one run) (default: off)")
    parser.add_argument("--attention", default="sdpa", choices=("sdpa", "train", "both"),
                        help="sdpa; train: the attention reelm lm train picks (fp32 SDPA for narrow heads in bf16 "
                             "on CPUs); both, interleaved (default: sdpa)")
    parser.add_argument("--peak-size", type=int, default=2048, help="matmul size for the peak (default: 2048)")
    parser.add_argument("--peak-repeats", type=int, default=10, help="timed matmuls for the peak (default: 10)")
    args = parser.parse_args(argv)

    import torch

    from reelm.core.cpu_allocator import keep_freed_memory, user_chose_allocator
    from reelm.core.distributed import init_distributed
    from reelm.lm.flops import measure_peak_flops

    malloc = "glibc defaults"
    if args.malloc == "caching":
        malloc = "caching (reelm.core.cpu_allocator)" if keep_freed_memory() else (
            f"glibc defaults: tuning not applied ({user_chose_allocator() or 'not glibc'})")
    with contextlib.redirect_stdout(sys.stderr):  # DeepSpeed prints its op builds; stdout is the JSON's
        init_distributed("cpu", need_group=True)

    dtypes = {"fp32": torch.float32, **({"bf16": torch.bfloat16} if args.precision != "fp32" else {})}

    def measure_peaks() -> dict[str, float]:
        return {name: measure_peak_flops("cpu", dtype, size=args.peak_size, repeats=args.peak_repeats)
                for name, dtype in dtypes.items()}

    peaks_start = measure_peaks()
    with contextlib.redirect_stdout(sys.stderr):  # deepspeed.initialize builds its comm op (and says so) too
        presets = {name: bench_preset(name, args) for name in args.presets.split(",")}
    peaks_end = measure_peaks()
    # The machine showed it can do the higher of the two readings: divide by that (the stricter fraction).
    peaks = {name: max(peaks_start[name], peaks_end[name]) for name in dtypes}
    peak = peaks["fp32"]
    for result in presets.values():
        for path in [key for key, value in result.items() if isinstance(value, dict) and "achieved_flops" in value]:
            path_peak = peaks["bf16" if "_bf16" in path else "fp32"]
            result[path]["fraction_of_peak"] = round(result[path]["achieved_flops"] / path_peak, 4)
    report = {
        "machine": {"processor": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__},
        "peak_fp32_flops": round(peak),
        "peak_method": f"the higher of two readings (before and after the presets), each the median of "
                       f"{args.peak_repeats} fp32 torch.mm {args.peak_size}x{args.peak_size}",
        "peak_fp32_flops_readings": [round(peaks_start["fp32"]), round(peaks_end["fp32"])],
        **({"peak_bf16_flops": round(peaks["bf16"]),
            "peak_bf16_flops_readings": [round(peaks_start["bf16"]), round(peaks_end["bf16"])]} if "bf16" in peaks else {}),
        "settings": {"block_size": args.block_size, "micro_batch": args.micro_batch, "steps": args.steps,
                     "warmup": args.warmup, "deepspeed_config": args.deepspeed_config, "compile": args.compile,
                     "dtype": "float32", "precision": args.precision, "data": args.data or "random codes",
                     "video_positions": args.video_positions, "split": args.split, "attention_paths": args.attention,
                     "attention": "sdpa" if args.attention == "sdpa" else "sdpa and reelm lm train's choice",
                     "malloc": malloc,
                     "order": "interleaved: each batch through every path, the order reversing each step"},
        "presets": presets,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
