"""``reelm lm ...``: pretrain the multimodal LM under DeepSpeed (one process, or one per device via a launcher)."""

from __future__ import annotations

import argparse

from reelm.commands import (add_config_flags, add_device_flag, add_group, add_progress_flag, add_report_flag,
                            add_set_flag, report_to)
from reelm.core.errors import ReelmError
from reelm.lm.ds_config import SHIPPED_CONFIGS

SAMPLE_PROMPTS = 2  # --log-samples: prompts drawn from the shards' captions when none are given


def register(subparsers) -> None:
    group = add_group(subparsers, "lm", "The multimodal LM: DeepSpeed pretraining on pre-tokenized shards.")
    parser = group.add_parser(
        "train",
        help="Pretrain the LM on shards; checkpoints (Hugging Face loadable) go to RUN/step-*/.",
        description="Pretrain the LM on pre-tokenized shards under DeepSpeed. Run it bare for one process, or "
        "through 'deepspeed --num_gpus N $(command -v reelm) lm train ...' or "
        "'torchrun --nproc_per_node N $(command -v reelm) lm train ...' for N. Every checkpoint "
        "RUN/step-NNNNNN/ loads with AutoModelForCausalLM.from_pretrained.",
    )
    parser.add_argument("--preset", metavar="P", help="model preset: tiny, small, base, large "
                        "(required for a new run; on --resume the checkpoint's)")
    parser.add_argument("--data", required=True, metavar="SHARDS", help="shard folder from 'reelm data tokenize'")
    parser.add_argument("--out", required=True, metavar="RUN", help="run folder for checkpoints and metrics")
    parser.add_argument("--steps", type=int, metavar="N", help="optimizer steps in all (same as --set steps=N); "
                        "with --resume on a finished run: continue it to N steps")
    parser.add_argument("--resume", action="store_true",
                        help="continue from RUN's latest complete checkpoint exactly (same settings and process "
                        "count; logging and checkpoint intervals may change)")
    parser.add_argument("--init-from", metavar="MODEL", help="fine-tune: start from this LM model folder's weights "
                        "and model config (a run or step folder, e.g. the demo's), with a new optimizer and schedule; "
                        "the shards must share its token layout")
    parser.add_argument("--lora", type=int, metavar="RANK", help="with --init-from: train LoRA adapters of this rank "
                        "(peft) on the attention projections, the model frozen (same as --set lora.rank=RANK; "
                        "lora.alpha, lora.target_modules too); checkpoints hold the adapter and name the base")
    parser.add_argument("--deepspeed-config", metavar="zeroN|PATH",
                        help=f"one of {', '.join(SHIPPED_CONFIGS)} (shipped; default zero<zero_stage>, and "
                        "zero_stage=auto is zero0 on one process, zero2 on several) or a DeepSpeed JSON file whose "
                        "\"auto\" values reelm fills in")
    add_set_flag(parser, "lr=1e-3, micro_batch_size=4, mixture.t2v=1, model.num_layers=2")
    add_config_flags(parser, "sections preset, model, train")
    parser.add_argument("--peak-flops", type=float, metavar="FLOPS",
                        help="one device's peak FLOP/s for MFU (default: measured at start with large matmuls)")
    add_report_flag(parser)
    parser.add_argument("--log-samples", action="store_true",
                        help="at each checkpoint, generate a text-to-video sample per --sample-prompts prompt with it "
                        "and log them to the --report-to trackers (a contact sheet and a GIF)")
    parser.add_argument("--sample-prompts", nargs="+", metavar="TEXT",
                        help=f"the prompts of --log-samples, which they imply (default: the first {SAMPLE_PROMPTS} "
                        "captions of the shards)")
    parser.add_argument("--stop-at", type=int, metavar="STEP",
                        help="end this invocation after STEP with a checkpoint; --resume continues")
    add_device_flag(parser)
    add_progress_flag(parser)
    parser.set_defaults(func=train_main)

    parser = group.add_parser(
        "export", help="Write a slim model folder for inference (no optimizer state) with a model card.",
        description="Export a run's latest checkpoint (or a step folder) to a new folder holding what inference "
        "needs: weights, Hugging Face config, text tokenizer, token layout, video tokenizer, clip spec, and a "
        "README.md model card saying how the model was trained; files readable by others.")
    parser.add_argument("model", metavar="RUN", help="LM run folder (its latest checkpoint) or a step-NNNNNN folder")
    parser.add_argument("--out", required=True, metavar="DIR", help="the new folder to write")
    parser.set_defaults(func=export_main)


def train_main(args: argparse.Namespace) -> int:
    from reelm.commands.run_configs import print_run_configs, run_configs
    from reelm.core.checkpoint_format import list_checkpoints
    from reelm.core.distributed import shutdown_distributed
    from reelm.lm.model import preset
    from reelm.lm.train import LMTrainConfig, init_model_config, saved_configs, train

    overrides = list(args.overrides) + ([f"steps={args.steps}"] if args.steps is not None else []) + \
        ([f"lora.rank={args.lora}"] if args.lora is not None else [])
    saved = saved_configs(args.out) if args.resume and list_checkpoints(args.out) else None
    if saved is None and args.init_from is not None:
        saved = (init_model_config(args.init_from), LMTrainConfig())
        overrides.append(f"init_from={args.init_from}")
    model_cfg, train_cfg = run_configs(args.preset, overrides, saved=saved, choices="tiny, small, base or large",
                                       config_file=args.config,
                                       presets=lambda name: (preset(name), LMTrainConfig()))
    if args.print_config:
        print_run_configs(args.preset, args.config, model_cfg, train_cfg)
        return 0
    trackers = report_to(args)
    on_checkpoint = None
    if args.log_samples or args.sample_prompts:
        if not trackers:
            raise ReelmError("--log-samples needs a tracker to log to: add --report-to tensorboard (or wandb, trackio)")
        on_checkpoint = _sample_logger(args.sample_prompts or _shard_captions(args.data, SAMPLE_PROMPTS), args.device)
    try:
        result = train(args.data, args.out, model=model_cfg, config=train_cfg,
                       deepspeed_config=args.deepspeed_config, resume=args.resume, peak_flops=args.peak_flops,
                       report_to=trackers, stop_at=args.stop_at, progress=args.progress,
                       device=args.device, on_checkpoint=on_checkpoint)
    finally:
        shutdown_distributed()
    if result.rank == 0:
        loss = result.metrics.get("loss")
        summary = f", train loss {loss:.4f}" if loss is not None else ""
        print(f"step {result.step}{summary}: {result.checkpoint} "
              "(loads with AutoModelForCausalLM.from_pretrained and PreTrainedTokenizerFast.from_pretrained)")
    return 0


def _shard_captions(data: str, count: int) -> list[str]:
    """The first ``count`` distinct non-empty captions of the shards in ``data``."""
    from reelm.data.shards import load_shards

    captions: list[str] = []
    for row in load_shards(data).dataset.select_columns(["caption"]):
        if row["caption"] and row["caption"] not in captions:
            captions.append(row["caption"])
            if len(captions) == count:
                break
    if not captions:
        raise ReelmError(f"{data}: the shards hold no caption to sample from; give --sample-prompts TEXT ...")
    return captions


def _sample_logger(prompts: list[str], device: str):
    """``--log-samples``: the ``on_checkpoint`` of :func:`reelm.lm.train.train` that generates one sample per prompt
    with the checkpoint just written and logs them as a contact sheet and a GIF."""

    def log_samples(step: int, folder, trackers) -> None:
        import numpy as np

        from reelm.data.contact_sheet import render_sheet
        from reelm.generation import VideoPipeline

        pipe = VideoPipeline.from_pretrained(folder, device=device)
        videos = pipe(prompts, seed=0).videos  # (T, H, W, 3) uint8 each
        caption = " | ".join(prompts)
        sheet = render_sheet(videos, labels=[p if len(p) <= 40 else p[:37] + "..." for p in prompts])
        trackers.image("samples/sheet", np.asarray(sheet), step, caption=caption)
        trackers.video("samples/video", np.concatenate(videos, axis=2), step, fps=pipe.model.clip.fps,
                       caption=caption)  # (T, H, N*W, 3)

    return log_samples


def export_main(args: argparse.Namespace) -> int:
    from reelm.lm.model_export import export_model

    out = export_model(args.model, args.out)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"reelm lm export: {out} ({size / 1e6:.1f} MB; README.md, model.safetensors, video_tokenizer/, ...); "
          f"reelm generate --model {out} ...")
    return 0
