"""``reelm tokenizer ...``: train the video tokenizer, encode / decode / reconstruct videos."""

from __future__ import annotations

import argparse
import dataclasses

from reelm.commands import (
    add_config_flags,
    add_device_flag,
    add_group,
    add_progress_flag,
    add_report_flag,
    add_source_flags,
    add_set_flag,
    add_world_flags,
    report_to,
    source_settings,
    world_options,
)


def register(subparsers) -> None:
    group = add_group(subparsers, "tokenizer", "The causal video tokenizer: train, encode, decode, reconstruct.")

    p = group.add_parser("train", help="Train a tokenizer (synthetic world by default).",
                         description="Train the causal video tokenizer; checkpoints go to OUT/step-NNNNNN/.")
    p.add_argument("--preset", help="tiny | small | base (not needed with --resume)")
    p.add_argument("--steps", type=int, help="total training steps (on --resume: the checkpoint's, or more to "
                   "continue a finished run)")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--data", help="'synthetic' (default), a folder of videos/images, or a manifest")
    p.add_argument("--resume", action="store_true", help="continue the run in OUT from its latest checkpoint")
    p.add_argument("--init-from", metavar="TOKENIZER", help="fine-tune: start from this tokenizer's weights and model "
                   "config (a run or checkpoint folder, e.g. a model folder's video_tokenizer/), with a new optimizer "
                   "and schedule; its training settings are the base for --set")
    p.add_argument("--batch-size", type=int, help="clips per step (default 4)")
    p.add_argument("--data-workers", type=int, metavar="N", help="processes decoding clips ahead of the training "
                   "step (default 0: decoded between steps; same clips either way; --set data_workers=N)")
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (default 100)")
    p.add_argument("--size", type=int, help="clip side in pixels (default: 64; same as --set clip.size=N)")
    p.add_argument("--num-frames", type=int, help="frames per clip, 1 + 4k (default: 17; --set clip.num_frames=N)")
    p.add_argument("--fps", type=float, help="clip frame rate (default: 8; --set clip.fps=R)")
    add_world_flags(p, scope=" (with --data synthetic)")
    p.add_argument("--stop-at", type=int, metavar="STEP",
                   help="end this invocation after STEP with a checkpoint; --resume continues")
    add_set_flag(p, "model.quantizer.kind=fsq, lr=3e-4, clip.size=128, loss.recon_weight=2")
    add_config_flags(p, "sections preset, model, train")
    add_source_flags(p)
    add_report_flag(p)
    add_device_flag(p)
    add_progress_flag(p)
    p.set_defaults(func=train_main)

    p = group.add_parser("encode", help="Encode a video (or image) into a codes file.",
                         description="Encode VIDEO into a (t, h, w) code grid, streaming in causal chunks.")
    _common(p, "VIDEO", "codes file to write (.npz)")
    p.set_defaults(func=encode_main)

    p = group.add_parser("decode", help="Decode a codes file into a video.",
                         description="Decode CODES (.npz from 'reelm tokenizer encode') into an MP4 or GIF, "
                         "streaming chunk by chunk.")
    p.add_argument("codes", metavar="CODES")
    p.add_argument("--tokenizer", required=True, help="run folder or checkpoint folder")
    p.add_argument("-o", "--output", required=True, help="video to write (.mp4 or .gif)")
    p.add_argument("--fps", type=float, help="frame rate of the output (default: the codes file's)")
    add_device_flag(p)
    add_progress_flag(p)
    p.set_defaults(func=decode_main)

    p = group.add_parser("reconstruct", help="Encode + decode a video; print PSNR and SSIM.",
                         description="Round-trip VIDEO through the tokenizer, write the reconstruction and a "
                         "side-by-side contact sheet (OUTPUT with .png), print PSNR and SSIM. Streams: memory does "
                         "not grow with the video's length.")
    _common(p, "VIDEO", "reconstructed video to write (.mp4 or .gif)")
    p.set_defaults(func=reconstruct_main)


def _common(p: argparse.ArgumentParser, what: str, output_help: str) -> None:
    p.add_argument("video", metavar=what)
    p.add_argument("--tokenizer", required=True, help="run folder (latest checkpoint) or checkpoint folder")
    p.add_argument("-o", "--output", required=True, help=output_help)
    p.add_argument("--fps", type=float, help="resample to this frame rate (default: native)")
    p.add_argument("--size", type=int, help="resize the shorter side to this (default: native)")
    p.add_argument("--max-frames", type=int, help="read at most this many frames")
    add_device_flag(p)
    add_progress_flag(p)


def train_main(args: argparse.Namespace) -> int:
    from reelm.commands.run_configs import print_run_configs, run_configs
    from reelm.core.config import resolve_preset
    from reelm.core.checkpoint_format import list_checkpoints
    from reelm.tokenizer.model import PRESETS
    from reelm.tokenizer.train import init_configs, saved_configs, train, training_preset

    overrides = list(args.overrides)
    for flag, key in (("steps", "steps"), ("batch_size", "batch_size"), ("checkpoint_every", "checkpoint_every"),
                      ("data_workers", "data_workers")):
        if getattr(args, flag) is not None:
            overrides.append(f"{key}={getattr(args, flag)}")
    for flag in ("size", "num_frames", "fps"):
        if getattr(args, flag) is not None:
            overrides.append(f"clip.{flag}={getattr(args, flag)}")
    if args.data is not None:
        overrides.append(f"data={args.data}")
    overrides += source_settings(args)
    saved = saved_configs(args.out) if args.resume and list_checkpoints(args.out) else None
    if saved is None and args.init_from is not None:
        saved = init_configs(args.init_from)
        overrides.append(f"init_from={args.init_from}")
    model_cfg, train_cfg = run_configs(args.preset, overrides, saved=saved, choices="tiny, small or base",
                                       config_file=args.config,
                                       presets=lambda name: (resolve_preset(PRESETS, name, "tokenizer"),
                                                             training_preset(name)))
    train_cfg = dataclasses.replace(train_cfg, world=world_options(args, base=train_cfg.world))
    if args.print_config:
        print_run_configs(args.preset, args.config, model_cfg, train_cfg)
        return 0
    result = train(args.out, model=model_cfg, config=train_cfg, resume=args.resume, progress=args.progress,
                   device=args.device, stop_at=args.stop_at, report_to=report_to(args))
    if result.checkpoint is not None:
        print(f"reelm tokenizer train: checkpoint {result.checkpoint}")
    return 0


def _check_video_args(args: argparse.Namespace) -> None:
    """The input and the reading flags, checked before a model is loaded."""
    from reelm.data.video_read import probe
    from reelm.core.errors import ReelmError

    for flag in ("fps", "size", "max_frames"):
        value = getattr(args, flag)
        if value is not None and not value > 0:
            raise ReelmError(f"--{flag.replace('_', '-')} {value}: must be positive")
    probe(args.video)


def _resized(args: argparse.Namespace, meta: dict) -> str:
    """Says so when native-size frames were resized to fit the tokenizer (too small, or too large)."""
    if args.size is None and meta.get("size") is not None:
        return f" (resized: shorter side {meta['size']} px, to fit the tokenizer; --size N chooses)"
    return ""


def _model(args: argparse.Namespace):
    from reelm.core.device import resolve_device
    from reelm.tokenizer.tokenizer_checkpoint import load_tokenizer

    device = resolve_device(args.device)
    return load_tokenizer(args.tokenizer).to(device), device


def encode_main(args: argparse.Namespace) -> int:
    from reelm.core.progress import progress_bar
    from reelm.tokenizer.codes_file import check_codes_path, save_codes
    from reelm.tokenizer.video_codec import encode_video

    check_codes_path(args.output)
    _check_video_args(args)
    model, device = _model(args)
    with progress_bar(desc="encode", unit="frame", enabled=args.progress) as bar:
        codes, meta = encode_video(model, args.video, fps=args.fps, size=args.size, max_frames=args.max_frames,
                                   device=device, progress=bar.update)
    save_codes(args.output, codes, meta)
    t, h, w = codes.shape
    print(f"reelm tokenizer encode: {meta['frames']} frames {meta['height']}x{meta['width']}{_resized(args, meta)} "
          f"-> codes {t}x{h}x{w} -> {args.output}")
    return 0


def decode_main(args: argparse.Namespace) -> int:
    from reelm.core.progress import progress_bar
    from reelm.data.video_write import check_video_path, open_video
    from reelm.core.errors import ReelmError
    from reelm.tokenizer.tokenizer_checkpoint import check_identity
    from reelm.tokenizer.codes_file import load_codes
    from reelm.tokenizer.video_codec import iter_decoded

    check_video_path(args.output)
    if args.fps is not None and not args.fps > 0:
        raise ReelmError(f"--fps {args.fps}: must be positive")
    codes, meta = load_codes(args.codes)
    model, device = _model(args)
    check_identity(meta["tokenizer"], model, source=str(args.codes))
    fps = args.fps or meta.get("fps") or 8.0
    total = model.pixel_frames(len(codes))
    with progress_bar(total, desc="decode", unit="frame", enabled=args.progress) as bar, \
            open_video(args.output, fps) as video:
        for frames in iter_decoded(model, codes, device=device):
            video.write(frames)
            bar.update(len(frames))
    print(f"reelm tokenizer decode: codes {'x'.join(map(str, codes.shape))} -> {video.frames} frames "
          f"-> {args.output}")
    return 0


def reconstruct_main(args: argparse.Namespace) -> int:
    from reelm.data.video_write import check_video_path
    from reelm.eval.roundtrip import reconstruct_file

    check_video_path(args.output)
    _check_video_args(args)
    model, device = _model(args)
    result = reconstruct_file(model, args.video, args.output, fps=args.fps, size=args.size,
                              max_frames=args.max_frames, device=device, progress=args.progress)
    t, h, w = result.codes_shape
    ssim = f"{result.ssim:.4f}" if result.ssim is not None else "n/a (frames smaller than its 11x11 window)"
    print(f"reelm tokenizer reconstruct: {result.frames} frames {result.height}x{result.width}"
          f"{_resized(args, {'size': result.size})}, codes {t}x{h}x{w}: "
          f"PSNR {result.psnr:.2f} dB, SSIM {ssim} -> {result.video}, {result.sheet}")
    return 0
