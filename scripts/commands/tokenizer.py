"""``reelm tokenizer ...``: train the video tokenizer, encode / decode / reconstruct videos."""

from __future__ import annotations

import argparse

from reelm.commands import add_device_flag, add_group, add_progress_flag, add_set_flag, add_world_flags, world_settings


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
    p.add_argument("--batch-size", type=int, help="clips per step (default 4)")
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (default 100)")
    p.add_argument("--size", type=int, help="clip side in pixels (default: 64; same as --set clip.size=N)")
    p.add_argument("--num-frames", type=int, help="frames per clip, 1 + 4k (default: 17; --set clip.num_frames=N)")
    p.add_argument("--fps", type=float, help="clip frame rate (default: 8; --set clip.fps=R)")
    add_world_flags(p, scope=" (with --data synthetic)")
    p.add_argument("--stop-at", type=int, metavar="STEP",
                   help="end this invocation after STEP with a checkpoint; --resume continues")
    add_set_flag(p, "model.quantizer.kind=fsq, lr=3e-4, clip.size=128, loss.recon_weight=2")
    add_device_flag(p)
    add_progress_flag(p)
    p.set_defaults(func=train_main)

    p = group.add_parser("encode", help="Encode a video (or image) into a codes file.",
                         description="Encode VIDEO into a (t, h, w) code grid, streaming in causal chunks.")
    _common(p, "VIDEO", "codes file to write (.npz)")
    p.set_defaults(func=encode_main)

    p = group.add_parser("decode", help="Decode a codes file into a video.",
                         description="Decode CODES (.npz from 'reelm tokenizer encode') into an MP4 or GIF.")
    p.add_argument("codes", metavar="CODES")
    p.add_argument("--tokenizer", required=True, help="run folder or checkpoint folder")
    p.add_argument("-o", "--output", required=True, help="video to write (.mp4 or .gif)")
    p.add_argument("--fps", type=float, help="frame rate of the output (default: the codes file's)")
    add_device_flag(p)
    p.set_defaults(func=decode_main)

    p = group.add_parser("reconstruct", help="Encode + decode a video; print PSNR and SSIM.",
                         description="Round-trip VIDEO through the tokenizer, write the reconstruction and a "
                         "side-by-side contact sheet (OUTPUT with .png), print PSNR and SSIM.")
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


def train_main(args: argparse.Namespace) -> int:
    from reelm.checkpoint import list_checkpoints
    from reelm.tokenizer.train import resolve_configs, saved_configs, train

    overrides = list(args.overrides)
    for flag, key in (("steps", "steps"), ("batch_size", "batch_size"), ("checkpoint_every", "checkpoint_every")):
        if getattr(args, flag) is not None:
            overrides.append(f"{key}={getattr(args, flag)}")
    for flag in ("size", "num_frames", "fps"):
        if getattr(args, flag) is not None:
            overrides.append(f"clip.{flag}={getattr(args, flag)}")
    overrides += [f"world.{setting}" for setting in world_settings(args)]
    if args.data is not None:
        overrides.append(f"data={args.data}")
    saved = saved_configs(args.out) if args.resume and list_checkpoints(args.out) else None
    model_cfg, train_cfg = resolve_configs(args.preset, overrides, saved)
    last = train(model_cfg, train_cfg, args.out, resume=args.resume, progress=args.progress, device=args.device,
                 stop_at=args.stop_at)
    if last is not None:
        print(f"reelm tokenizer train: checkpoint {last}")
    return 0


def _encode(args: argparse.Namespace):
    """The tokenizer of ``--tokenizer`` on its device, and the codes + metadata of ``args.video``."""
    from reelm.device import resolve_device
    from reelm.tokenizer.checkpoint import load_tokenizer
    from reelm.tokenizer.video_codec import encode_video

    device = resolve_device(args.device)
    model = load_tokenizer(args.tokenizer).to(device)
    codes, meta = encode_video(model, args.video, fps=args.fps, size=args.size, max_frames=args.max_frames,
                               device=device)
    return model, device, codes, meta


def encode_main(args: argparse.Namespace) -> int:
    from reelm.tokenizer.codes_file import save_codes

    _, _, codes, meta = _encode(args)
    save_codes(args.output, codes, meta)
    t, h, w = codes.shape
    print(f"reelm tokenizer encode: {meta['frames']} frames {meta['height']}x{meta['width']} -> codes {t}x{h}x{w} "
          f"-> {args.output}")
    return 0


def decode_main(args: argparse.Namespace) -> int:
    from reelm.data.video_write import write_video
    from reelm.device import resolve_device
    from reelm.tokenizer.checkpoint import check_identity, load_tokenizer
    from reelm.tokenizer.codes_file import load_codes
    from reelm.tokenizer.video_codec import decode_codes

    codes, meta = load_codes(args.codes)
    device = resolve_device(args.device)
    model = load_tokenizer(args.tokenizer).to(device)
    check_identity(meta["tokenizer"], model, source=str(args.codes))
    frames = decode_codes(model, codes, device=device)
    fps = args.fps or meta.get("fps") or 8.0
    write_video(args.output, frames, fps)
    print(f"reelm tokenizer decode: codes {'x'.join(map(str, codes.shape))} -> {len(frames)} frames -> {args.output}")
    return 0


def reconstruct_main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from reelm.data.contact_sheet import contact_sheet
    from reelm.data.video_read import read_video
    from reelm.data.video_write import write_video
    from reelm.eval.metrics import psnr, ssim
    from reelm.tokenizer.video_codec import decode_codes, frame_geometry

    model, device, codes, meta = _encode(args)
    recon = decode_codes(model, codes, device=device)
    _, crop = frame_geometry(args.video, args.size, model.spatial_downsample)
    original = read_video(args.video, fps=args.fps, num_frames=len(recon), size=args.size, crop=crop)
    fps = meta["fps"] or 8.0
    write_video(args.output, recon, fps)
    sheet = contact_sheet([original, recon], Path(args.output).with_suffix(".png"), labels=["original", "reconstruction"])
    print(f"reelm tokenizer reconstruct: {len(recon)} frames {crop[0]}x{crop[1]}, codes {'x'.join(map(str, codes.shape))}: "
          f"PSNR {psnr(original, recon):.2f} dB, SSIM {ssim(original, recon):.4f} -> {args.output}, {sheet}")
    return 0
